using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Gpu;
using Xunit;

namespace ParallelCompiler.Tests.Support;

/// <summary>
/// Every collective over every group of a 2x2 mesh, for each dtype, on the GPU arrays of a world (one shared GPU,
/// or a GPU per device through NCCL; emulated or real) against the host communicator: all_reduce (sum and max,
/// NaN included; f16 and bf16 rounded after every addition), all_gather, reduce_scatter and all_to_all along each
/// dimension, collective_permute, and a ring of sends and receives.
/// </summary>
public static class GpuCollectiveCheck
{
    /// <summary>The mesh the check runs on: a=2, b=2.</summary>
    public static DeviceMesh Mesh { get; } = new(["a", "b"], [2, 2]);

    /// <summary>Runs every case on <paramref name="world"/> (over <see cref="Mesh"/>) and on the host; fails on the first difference.</summary>
    public static void Run(IDeviceWorld<GpuArray> world)
    {
        var timeout = TimeSpan.FromSeconds(30);
        var mesh = Mesh;
        using var host = new InProcessWorld(mesh, timeout);
        var rng = new Random(7);
        var cases = new List<(string Name, Func<ICommunicator<NDArray>, NDArray, NDArray> Host, Func<ICommunicator<GpuArray>, GpuArray, GpuArray> Gpu)>();
        var site = new CollectiveSite("test", "", 0);
        foreach (var axes in new[] { new[] { "a" }, new[] { "b" }, new[] { "a", "b" }, new[] { "b", "a" } })
        {
            string g = string.Join(",", axes);
            cases.Add(($"all_reduce(sum) over {g}", (c, x) => c.AllReduce(x, axes, ReduceKind.Sum, site), (c, x) => c.AllReduce(x, axes, ReduceKind.Sum, site)));
            cases.Add(($"all_reduce(max) over {g}", (c, x) => c.AllReduce(x, axes, ReduceKind.Max, site), (c, x) => c.AllReduce(x, axes, ReduceKind.Max, site)));
            for (int d = 0; d < 3; d++)
            {
                int dim = d;
                cases.Add(($"all_gather(dim {dim}) over {g}", (c, x) => c.AllGather(x, axes, dim, site), (c, x) => c.AllGather(x, axes, dim, site)));
                cases.Add(($"reduce_scatter(dim {dim}) over {g}", (c, x) => c.ReduceScatter(x, axes, dim, site), (c, x) => c.ReduceScatter(x, axes, dim, site)));
                cases.Add(($"all_to_all(split {dim}, concat {2 - dim}) over {g}", (c, x) => c.AllToAll(x, axes, dim, 2 - dim, site), (c, x) => c.AllToAll(x, axes, dim, 2 - dim, site)));
            }
        }
        (int, int)[] pairs = [(0, 1), (1, 3), (3, 0)];
        cases.Add(("collective_permute", (c, x) => c.CollectivePermute(x, pairs, site), (c, x) => c.CollectivePermute(x, pairs, site)));
        // A ring of sends: each device sends to the next and receives from the previous.
        NDArray HostRing(ICommunicator<NDArray> c, NDArray x) { c.Send(x, (c.Rank + 1) % 4, site, 3); return c.Recv((c.Rank + 3) % 4, x.DType, x.Shape, site, 3); }
        GpuArray GpuRing(ICommunicator<GpuArray> c, GpuArray x) { c.Send(x, (c.Rank + 1) % 4, site, 3); return c.Recv((c.Rank + 3) % 4, x.DType, x.Shape, site, 3); }
        cases.Add(("send/recv ring", HostRing, GpuRing));

        foreach (var dtype in new[] { DType.F32, DType.F16, DType.BF16, DType.I32 })
        {
            var inputs = Enumerable.Range(0, 4).Select(_ => RandomArray(dtype, [4, 4, 8], rng, nan: dtype != DType.I32)).ToArray();
            foreach (var (name, onHost, onGpu) in cases)
            {
                // NaN only where max reduces it; a sum would spread it everywhere.
                var xs = name.Contains("max") ? inputs : inputs.Select(x => x.F == null ? x : NDArray.FromFloats(x.DType, x.Shape, x.F.Select(v => float.IsNaN(v) ? 0.5f : v).ToArray())).ToArray();
                var expected = host.Run((rank, c) => onHost(c, xs[rank]));
                var got = world.Run((device, c) =>
                {
                    var x = device.CopyIn(xs[c.Rank]);
                    var y = onGpu(c, x);
                    var result = device.CopyOut(y);
                    device.Release(x);
                    device.Release(y);
                    return result;
                });
                for (int rank = 0; rank < 4; rank++) SameArrays(expected[rank], got[rank], $"{dtype.Name()} {name} on device {rank}");
            }
        }
    }

    private static NDArray RandomArray(DType t, long[] shape, Random rng, bool nan = false)
    {
        long n = NDArray.ShapeSize(shape);
        if (t == DType.I32) return NDArray.FromInts(shape, Enumerable.Range(0, (int)n).Select(_ => rng.Next(-1000, 1000)).ToArray());
        var v = Enumerable.Range(0, (int)n).Select(_ => t.Round((float)(rng.NextDouble() * 4 - 2))).ToArray();
        if (nan && n > 3) v[3] = float.NaN;
        return NDArray.FromFloats(t, shape, v);
    }

    private static void SameArrays(NDArray expected, NDArray actual, string what)
    {
        Assert.Equal(expected.TypeString, actual.TypeString);
        for (long i = 0; i < expected.Size; i++)
        {
            double x = expected.GetDouble(i), y = actual.GetDouble(i);
            Assert.True(double.IsNaN(x) ? double.IsNaN(y) : Math.Abs(x - y) <= 1e-6 * Math.Max(1, Math.Abs(x)), $"{what}[{i}]: host {x}, GPU {y}");
        }
    }
}
