using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// Every collective over every group of a 2x2 mesh, for each dtype, on GPU arrays against the host communicator:
/// all_reduce (sum and max, NaN included; f16 and bf16 rounded after every addition), all_gather, reduce_scatter
/// and all_to_all along each dimension, collective_permute, and a ring of sends and receives. What
/// <c>mplrun --check-collectives</c> runs on a GPU node (one shared GPU, and NCCL with four GPUs), and the tests run
/// on emulated GPUs.
/// </summary>
public static class CollectiveSelfTest
{
    /// <summary>The mesh the check runs on: a=2, b=2.</summary>
    public static DeviceMesh Mesh { get; } = new(["a", "b"], [2, 2]);

    private sealed record Case(
        string Name,
        Func<ICommunicator<NDArray>, NDArray, NDArray> Host,
        Func<ICommunicator<GpuArray>, GpuArray, GpuArray> Gpu
    );

    /// <summary>
    /// Runs every case on <paramref name="world"/> (over <see cref="Mesh"/>) and on the host; returns the cases
    /// run and, per case that differs, its first difference. Results must agree within 1e-6 relative.
    /// </summary>
    public static (int Cases, IReadOnlyList<string> Failures) Run(IDeviceWorld<GpuArray> world)
    {
        using var host = new InProcessWorld(Mesh, TimeSpan.FromSeconds(60));
        var rng = new Random(7);
        var failures = new List<string>();
        int count = 0;
        foreach (var dtype in new[] { DType.F32, DType.F16, DType.BF16, DType.I32 })
        {
            // A NaN on devices 1 and 2 only, at different places, so that every group of a max meets a NaN beside a
            // number.
            var inputs = Enumerable
                .Range(0, 4)
                .Select(k =>
                    RandomArray(
                        dtype,
                        [4, 4, 8],
                        rng,
                        nanAt: dtype == DType.I32
                            ? null
                            : k switch
                            {
                                1 => 3,
                                2 => 5,
                                _ => null,
                            }
                    )
                )
                .ToArray();
            foreach (var c in Cases())
            {
                count++;
                // NaN only where max reduces it; a sum would spread it everywhere.
                var xs = c.Name.Contains("max")
                    ? inputs
                    : inputs
                        .Select(x =>
                            x.F == null
                                ? x
                                : NDArray.FromFloats(
                                    x.DType,
                                    x.Shape,
                                    x.F.Select(v => float.IsNaN(v) ? 0.5f : v).ToArray()
                                )
                        )
                        .ToArray();
                var expected = host.Run((rank, comm) => c.Host(comm, xs[rank]));
                var got = world.Run(
                    (device, comm) =>
                    {
                        var x = device.CopyIn(xs[comm.Rank]);
                        var y = c.Gpu(comm, x);
                        var result = device.CopyOut(y);
                        device.Release(x);
                        device.Release(y);
                        return result;
                    }
                );
                for (int rank = 0; rank < 4; rank++)
                {
                    var (e, a) = (expected[rank], got[rank]);
                    string? why =
                        e.TypeString != a.TypeString ? $"host {e.TypeString}, GPU {a.TypeString}"
                        : ArrayOps.WorstRelativeDifference(e, a) is var (err, i) && err > 1e-6
                            ? $"[{i}] host {e.GetDouble(i)}, GPU {a.GetDouble(i)}"
                        : null;
                    if (why == null)
                        continue;
                    failures.Add($"{dtype.Name()} {c.Name} on device {rank}: {why}");
                    break;
                }
            }
        }
        return (count, failures);
    }

    private static IEnumerable<Case> Cases()
    {
        var site = new CollectiveSite("check", "", 0);
        foreach (var axes in new[] { new[] { "a" }, new[] { "b" }, new[] { "a", "b" }, new[] { "b", "a" } })
        {
            string g = string.Join(",", axes);
            yield return new(
                $"all_reduce(sum) over {g}",
                (c, x) => c.AllReduce(x, axes, ReduceKind.Sum, site),
                (c, x) => c.AllReduce(x, axes, ReduceKind.Sum, site)
            );
            yield return new(
                $"all_reduce(max) over {g}",
                (c, x) => c.AllReduce(x, axes, ReduceKind.Max, site),
                (c, x) => c.AllReduce(x, axes, ReduceKind.Max, site)
            );
            for (int dim = 0; dim < 3; dim++)
            {
                int d = dim;
                yield return new(
                    $"all_gather(dim {d}) over {g}",
                    (c, x) => c.AllGather(x, axes, d, site),
                    (c, x) => c.AllGather(x, axes, d, site)
                );
                yield return new(
                    $"reduce_scatter(dim {d}) over {g}",
                    (c, x) => c.ReduceScatter(x, axes, d, site),
                    (c, x) => c.ReduceScatter(x, axes, d, site)
                );
                yield return new(
                    $"all_to_all(split {d}, concat {2 - d}) over {g}",
                    (c, x) => c.AllToAll(x, axes, d, 2 - d, site),
                    (c, x) => c.AllToAll(x, axes, d, 2 - d, site)
                );
            }
        }
        (int, int)[] pairs = [(0, 1), (1, 3), (3, 0)];
        yield return new(
            "collective_permute",
            (c, x) => c.CollectivePermute(x, pairs, site),
            (c, x) => c.CollectivePermute(x, pairs, site)
        );
        // A ring: each device sends to the next and receives from the previous.
        yield return new("send/recv ring", (c, x) => Ring(c, x, site), (c, x) => Ring(c, x, site));
    }

    private static T Ring<T>(ICommunicator<T> c, T x, CollectiveSite site)
        where T : class, IArray
    {
        c.Send(x, (c.Rank + 1) % 4, site, 3);
        return c.Recv((c.Rank + 3) % 4, x.DType, x.Shape, site, 3);
    }

    private static NDArray RandomArray(DType t, long[] shape, Random rng, int? nanAt)
    {
        long n = NDArray.ShapeSize(shape);
        if (t == DType.I32)
            return NDArray.FromInts(shape, Enumerable.Range(0, (int)n).Select(_ => rng.Next(-1000, 1000)).ToArray());
        var v = Enumerable.Range(0, (int)n).Select(_ => t.Round((float)(rng.NextDouble() * 4 - 2))).ToArray();
        if (nanAt is int i)
            v[i] = float.NaN;
        return NDArray.FromFloats(t, shape, v);
    }
}
