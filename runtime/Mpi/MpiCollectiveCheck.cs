using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// Every collective over every axis of a mesh and over all of them, for each dtype, at a small size (reduced from
/// one allgather) and a large one (shared out), through the processes of an MPI job against the in-process world of
/// the whole mesh in this process: all_reduce (sum; max with NaNs), reduce_scatter, all_gather and all_to_all along
/// the first and last dimensions, and collective_permute (a ring and a single pair). Every result must equal the
/// in-process one bit for bit. What <c>mpirun ... mplrun BUNDLE --check-collectives</c> runs, on the bundle's mesh.
/// </summary>
internal static class MpiCollectiveCheck
{
    private sealed record Case(string Name, Func<ICommunicator<NDArray>, NDArray, NDArray> Run);

    /// <summary>Runs every case on <paramref name="link"/>'s devices and in process; the cases run and, per case
    /// that differs on one of this process's devices, the first difference.</summary>
    public static (int Cases, List<string> Failures) Run(MpiLink link, DeviceMesh mesh, TimeSpan timeout)
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var dtype in new[] { DType.F32, DType.F16, DType.BF16, DType.I32 })
        foreach (long[] shape in new[] { new long[] { 4, 8, 8 }, [8, 64, 80] })
        {
            var cases = Cases(mesh, shape).ToList();
            count += cases.Count;
            var inputs = Enumerable.Range(0, mesh.DeviceCount).Select(d => Input(dtype, shape, d)).ToArray();
            NDArray[] RunAll(ICommunicator<NDArray> comm)
            {
                var x = inputs[comm.Rank];
                var noNan = NoNan(x);
                return [.. cases.Select(c => c.Run(comm, c.Name.Contains("max") ? x : noNan))];
            }
            NDArray[][] expected;
            using (var host = new InProcessWorld(mesh, timeout))
                expected = host.Run((rank, comm) => RunAll(comm));
            link.StartStep();
            NDArray[][] got;
            using (var world = new InProcessWorld<NDArray>(mesh, timeout, HostArrayOps.Instance, link))
                got = world.Run((rank, comm) => RunAll(comm));
            for (int c = 0; c < cases.Count; c++)
            for (int d = link.First; d < link.First + link.Count; d++)
                if (Difference(expected[d][c], got[d - link.First][c]) is { } why)
                {
                    failures.Add($"{dtype.Name()}{Shape(shape)} {cases[c].Name} on device {d}: {why}");
                    break;
                }
        }
        return (count, failures);
    }

    private static IEnumerable<Case> Cases(DeviceMesh mesh, long[] shape)
    {
        var site = new CollectiveSite("check", "", 0);
        int last = shape.Length - 1;
        var sets = mesh
            .AxisNames.Select(a => new[] { a })
            .Append([.. mesh.AxisNames])
            .DistinctBy(s => string.Join(",", s));
        foreach (var axes in sets)
        {
            string g = string.Join(",", axes);
            long n = mesh.Product(axes);
            if (n == 1)
                continue;
            yield return new($"all_reduce(sum) over {g}", (c, x) => c.AllReduce(x, axes, ReduceKind.Sum, site));
            yield return new($"all_reduce(max) over {g}", (c, x) => c.AllReduce(x, axes, ReduceKind.Max, site));
            foreach (int d in new[] { 0, last })
            {
                yield return new($"all_gather(dim {d}) over {g}", (c, x) => c.AllGather(x, axes, d, site));
                if (shape[d] % n != 0)
                    continue;
                yield return new($"reduce_scatter(dim {d}) over {g}", (c, x) => c.ReduceScatter(x, axes, d, site));
                yield return new(
                    $"all_to_all(split {d}, concat {last - d}) over {g}",
                    (c, x) => c.AllToAll(x, axes, d, last - d, site)
                );
            }
        }
        int devices = mesh.DeviceCount;
        (int, int)[] ring = [.. Enumerable.Range(0, devices).Select(d => (d, (d + 1) % devices))];
        yield return new("collective_permute(ring)", (c, x) => c.CollectivePermute(x, ring, site));
        yield return new(
            $"collective_permute(0->{devices - 1})",
            (c, x) => c.CollectivePermute(x, [(0, devices - 1)], site)
        );
    }

    // Values that differ by device and element, exact in every dtype; NaNs on device 1 (for the max).
    private static NDArray Input(DType dtype, long[] shape, int device)
    {
        int n = (int)NDArray.ShapeSize(shape);
        if (dtype == DType.I32)
            return NDArray.FromInts(shape, [.. Enumerable.Range(0, n).Select(i => (i * 31 + device * 17) % 201 - 100)]);
        var f = new float[n];
        for (int i = 0; i < n; i++)
            f[i] = dtype.Round(MathF.Sin(i * 0.37f + device * 1.3f) * (1 + (i % 5)));
        if (device == 1)
            f[3] = f[n / 2] = float.NaN;
        return NDArray.FromFloats(dtype, shape, f);
    }

    private static NDArray NoNan(NDArray x) =>
        x.F == null ? x : NDArray.FromFloats(x.DType, x.Shape, [.. x.F.Select(v => float.IsNaN(v) ? 0.5f : v)]);

    private static string? Difference(NDArray e, NDArray a)
    {
        if (e.TypeString != a.TypeString)
            return $"in process {e.TypeString}, over MPI {a.TypeString}";
        for (long i = 0; i < e.Size; i++)
            if (
                e.F != null
                    ? BitConverter.SingleToInt32Bits(e.F[i]) != BitConverter.SingleToInt32Bits(a.F![i])
                    : e.I![i] != a.I![i]
            )
                return $"[{i}] in process {e.GetDouble(i)}, over MPI {a.GetDouble(i)}";
        return null;
    }

    private static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";
}
