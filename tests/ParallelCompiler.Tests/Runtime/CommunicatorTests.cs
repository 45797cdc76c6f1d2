using System.Diagnostics;
using ParallelCompiler.Runtime.Distributed;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>
/// The device mesh, the in-process communicator and the simulated device. Each collective runs on a few small meshes
/// and every device's result is checked against one computed element by element from all devices' inputs.
/// </summary>
public sealed partial class CommunicatorTests
{
    // Long enough never to fire in a passing test; the failure tests use their own short one.
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(20);

    private static CollectiveSite Site(string op, long step = 0) => new(op, "test.mpl:1:1", step);

    private static DeviceMesh Mesh(string spec) =>
        spec.Length == 0
            ? DeviceMesh.Single
            : new DeviceMesh(
                spec.Split(',').Select(a => a.Split('=')[0]).ToArray(),
                spec.Split(',').Select(a => int.Parse(a.Split('=')[1])).ToArray()
            );

    private static string[] Axes(string list) => list.Length == 0 ? [] : list.Split(',');

    // Device r's input: distinct from every other device's and from every other element.
    private static NDArray Input(int rank, long[] shape)
    {
        var v = new float[NDArray.ShapeSize(shape)];
        for (int i = 0; i < v.Length; i++)
            v[i] = rank * 1000 + i;
        return NDArray.FromFloats(shape, v);
    }

    private static T[] RunAll<T>(DeviceMesh mesh, Func<int, ICommunicator<NDArray>, T> body)
    {
        using var world = new InProcessWorld(mesh, Patient);
        return world.Run(body);
    }

    // ---- element-by-element references, independent of ArrayOps ----

    private static long[] Unravel(long flat, long[] shape)
    {
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            idx[d] = flat % shape[d];
            flat /= shape[d];
        }
        return idx;
    }

    private static long Ravel(long[] idx, long[] shape)
    {
        long flat = 0;
        for (int d = 0; d < shape.Length; d++)
            flat = flat * shape[d] + idx[d];
        return flat;
    }

    private static NDArray Build(DType dtype, long[] shape, Func<long[], double> at)
    {
        var r = NDArray.Zeros(dtype, shape);
        for (long i = 0; i < r.Size; i++)
        {
            double v = at(Unravel(i, shape));
            if (r.F != null)
                r.F[i] = (float)v;
            else
                r.I![i] = (int)v;
        }
        return r;
    }

    private static double At(NDArray x, long[] idx) => x.GetDouble(Ravel(idx, x.Shape));

    private static NDArray RefSum(IReadOnlyList<NDArray> xs) =>
        Build(xs[0].DType, xs[0].Shape, idx => xs.Sum(x => At(x, idx)));

    private static NDArray RefMax(IReadOnlyList<NDArray> xs) =>
        Build(xs[0].DType, xs[0].Shape, idx => xs.Max(x => At(x, idx)));

    private static NDArray RefConcat(IReadOnlyList<NDArray> xs, int dim)
    {
        var shape = (long[])xs[0].Shape.Clone();
        shape[dim] = xs.Sum(x => x.Shape[dim]);
        return Build(
            xs[0].DType,
            shape,
            idx =>
            {
                var src = (long[])idx.Clone();
                int p = 0;
                while (src[dim] >= xs[p].Shape[dim])
                    src[dim] -= xs[p++].Shape[dim];
                return At(xs[p], src);
            }
        );
    }

    private static NDArray RefChunk(NDArray x, int dim, int n, int i)
    {
        var shape = (long[])x.Shape.Clone();
        shape[dim] /= n;
        return Build(
            x.DType,
            shape,
            idx =>
            {
                var src = (long[])idx.Clone();
                src[dim] += i * shape[dim];
                return At(x, src);
            }
        );
    }

    private static void Same(NDArray expected, NDArray actual)
    {
        Assert.Equal(expected.DType, actual.DType);
        Assert.Equal(expected.Shape, actual.Shape);
        if (expected.F != null)
            Assert.Equal(expected.F, actual.F!);
        else
            Assert.Equal(expected.I!, actual.I!);
    }

    // No device's result may share storage with its input or with another device's result.
    private static void Distinct(NDArray[] inputs, NDArray[] results)
    {
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        foreach (var x in inputs)
            seen.Add((object?)x.F ?? x.I!);
        foreach (var r in results)
            Assert.True(seen.Add((object?)r.F ?? r.I!), "a result aliases another array");
    }

    // ---- the mesh ----

    private static readonly DeviceMesh Mesh232 = new(["dp", "tp", "sp"], [2, 3, 2]);

    [Fact]
    public void Mesh_numbers_devices_row_major()
    {
        Assert.Equal(12, Mesh232.DeviceCount);
        Assert.Equal([1, 0, 1], Mesh232.Coords(7));
        Assert.Equal([0, 2, 1], Mesh232.Coords(5));
        for (int r = 0; r < 12; r++)
            Assert.Equal(r, Mesh232.RankOf(Mesh232.Coords(r)));
        Assert.Equal(3, Mesh232.Size("tp"));
        Assert.Equal(6L, Mesh232.Product(["sp", "tp"]));
        Assert.Equal(1L, Mesh232.Product([]));
        Assert.Equal("dp=2,tp=3,sp=2", Mesh232.ToString());
        Assert.Equal("dp=1, tp=0, sp=1", Mesh232.Describe(7));
    }

    [Theory]
    [InlineData(7, "tp", new[] { 7, 9, 11 })]
    [InlineData(7, "dp", new[] { 1, 7 })]
    [InlineData(4, "sp", new[] { 4, 5 })]
    [InlineData(7, "sp,dp", new[] { 0, 6, 1, 7 })]
    [InlineData(7, "dp,sp", new[] { 0, 1, 6, 7 })]
    [InlineData(2, "sp,tp", new[] { 0, 2, 4, 1, 3, 5 })]
    [InlineData(7, "", new[] { 7 })]
    [InlineData(3, "dp,tp,sp", new[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 })]
    public void Mesh_groups_are_ordered_over_the_axes_as_given(int rank, string axes, int[] expected)
    {
        Assert.Equal(expected, Mesh232.Group(rank, Axes(axes)));
        Assert.Equal(Array.IndexOf(expected, rank), Mesh232.IndexInGroup(rank, Axes(axes)));
        foreach (int member in expected)
            Assert.Equal(expected, Mesh232.Group(member, Axes(axes)));
    }

    [Fact]
    public void Mesh_rejects_bad_axes_and_shapes()
    {
        var e = Assert.Throws<ArgumentException>(() => Mesh232.Size("pp"));
        Assert.Contains("'pp'", e.Message);
        Assert.Contains("[dp, tp, sp]", e.Message);
        Assert.Throws<ArgumentException>(() => Mesh232.Group(0, ["tp", "tp"]));
        Assert.Throws<ArgumentException>(() => new DeviceMesh(["a", "a"], [2, 2]));
        Assert.Throws<ArgumentException>(() => new DeviceMesh(["a"], [0]));
        Assert.Throws<ArgumentException>(() => new DeviceMesh(["a", "b"], [2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Mesh232.Coords(12));
        Assert.Throws<ArgumentOutOfRangeException>(() => Mesh232.RankOf([2, 0, 0]));
    }

    [Fact]
    public void Single_mesh_has_one_device_and_no_axes()
    {
        Assert.Equal(1, DeviceMesh.Single.DeviceCount);
        Assert.Empty(DeviceMesh.Single.AxisNames);
        Assert.Empty(DeviceMesh.Single.Coords(0));
        Assert.Equal(0, DeviceMesh.Single.RankOf([]));
        Assert.Equal([0], DeviceMesh.Single.Group(0, []));
    }

    // ---- collectives ----

    /// <summary>Meshes and the axes a collective spans: one axis, the other one, both in mesh order and
    /// reversed.</summary>
    public static TheoryData<string, string> Groups =>
        new()
        {
            { "x=2", "x" },
            { "a=2,b=2", "a" },
            { "a=2,b=2", "b" },
            { "a=2,b=2", "a,b" },
            { "a=2,b=2", "b,a" },
            { "a=2,b=3", "a" },
            { "a=2,b=3", "b" },
            { "a=2,b=3", "b,a" },
            { "a=2,b=3", "a,b" },
        };

    private static readonly long[] Shape = [12, 2]; // 12 splits among every group size used here

    private static void CheckCollective(
        string meshSpec,
        string axesList,
        Func<ICommunicator<NDArray>, NDArray, IReadOnlyList<string>, NDArray> collective,
        Func<NDArray[], int, NDArray> expected,
        Func<int, NDArray>? input = null
    )
    {
        var mesh = Mesh(meshSpec);
        var axes = Axes(axesList);
        input ??= r => Input(r, Shape);
        var inputs = Enumerable.Range(0, mesh.DeviceCount).Select(input).ToArray();
        var results = RunAll(mesh, (r, comm) => collective(comm, inputs[r], axes));
        for (int r = 0; r < mesh.DeviceCount; r++)
        {
            var group = mesh.Group(r, axes).Select(g => inputs[g]).ToArray();
            Same(expected(group, mesh.IndexInGroup(r, axes)), results[r]);
        }
        Distinct(inputs, results);
    }

    [Theory]
    [MemberData(nameof(Groups))]
    public void AllReduce_sums_over_the_group(string mesh, string axes) =>
        CheckCollective(
            mesh,
            axes,
            (c, x, ax) => c.AllReduce(x, ax, ReduceKind.Sum, Site("dist.all_reduce")),
            (g, _) => RefSum(g)
        );

    [Theory]
    [MemberData(nameof(Groups))]
    public void AllReduce_max_of_ints(string mesh, string axes) =>
        CheckCollective(
            mesh,
            axes,
            (c, x, ax) => c.AllReduce(x, ax, ReduceKind.Max, Site("dist.all_reduce")),
            (g, _) => RefMax(g),
            r => NDArray.FromInts([3], [r * 7 % 5, -r, r % 2])
        );

    [Theory]
    [MemberData(nameof(Groups))]
    public void AllGather_concatenates_in_group_order(string mesh, string axes) =>
        CheckCollective(
            mesh,
            axes,
            (c, x, ax) => c.AllGather(x, ax, 1, Site("dist.all_gather")),
            (g, _) => RefConcat(g, 1)
        );

    [Theory]
    [MemberData(nameof(Groups))]
    public void ReduceScatter_keeps_the_members_chunk_of_the_sum(string mesh, string axes) =>
        CheckCollective(
            mesh,
            axes,
            (c, x, ax) => c.ReduceScatter(x, ax, 0, Site("dist.reduce_scatter")),
            (g, i) => RefChunk(RefSum(g), 0, g.Length, i)
        );

    [Theory]
    [MemberData(nameof(Groups))]
    public void AllToAll_exchanges_chunks(string mesh, string axes) =>
        CheckCollective(
            mesh,
            axes,
            (c, x, ax) => c.AllToAll(x, ax, 0, 1, Site("dist.all_to_all")),
            (g, i) => RefConcat(g.Select(x => RefChunk(x, 0, g.Length, i)).ToArray(), 1)
        );

    [Fact]
    public void AllToAll_along_one_dim()
    {
        CheckCollective(
            "x=3",
            "x",
            (c, x, ax) => c.AllToAll(x, ax, -2, 0, Site("dist.all_to_all")),
            (g, i) => RefConcat(g.Select(x => RefChunk(x, 0, g.Length, i)).ToArray(), 0)
        );
    }

    [Fact]
    public void Collectives_run_in_sequence_and_on_different_groups()
    {
        var mesh = Mesh("dp=2,tp=2");
        var results = RunAll(
            mesh,
            (r, c) =>
            {
                var x = Input(r, [2, 2]);
                var y = c.AllReduce(x, ["tp"], ReduceKind.Sum, Site("dist.all_reduce", 0));
                var z = c.AllGather(y, ["dp"], 0, Site("dist.all_gather", 1));
                return c.AllReduce(z, ["tp"], ReduceKind.Sum, Site("dist.all_reduce", 2));
            }
        );
        var inputs = Enumerable.Range(0, 4).Select(r => Input(r, [2, 2])).ToArray();
        var tpSums = Enumerable
            .Range(0, 4)
            .Select(r => RefSum(mesh.Group(r, ["tp"]).Select(g => inputs[g]).ToArray()))
            .ToArray();
        var gathered = Enumerable
            .Range(0, 4)
            .Select(r => RefConcat(mesh.Group(r, ["dp"]).Select(g => tpSums[g]).ToArray(), 0))
            .ToArray();
        for (int r = 0; r < 4; r++)
            Same(RefSum(mesh.Group(r, ["tp"]).Select(g => gathered[g]).ToArray()), results[r]);
    }

    [Fact]
    public void Many_devices_do_not_starve()
    {
        var mesh = Mesh("dp=8,tp=8");
        var results = RunAll(
            mesh,
            (r, c) =>
            {
                var x = NDArray.FromInts([1], [r]);
                for (int i = 0; i < 5; i++)
                    x = c.AllReduce(x, ["tp"], ReduceKind.Max, Site("dist.all_reduce", i));
                return c.AllReduce(x, ["dp", "tp"], ReduceKind.Sum, Site("dist.all_reduce", 5)).I![0];
            }
        );
        // Each tp group's max is its dp row's last rank, 8 * dp + 7; summed over all 64 devices.
        int expected = Enumerable.Range(0, 64).Sum(r => r / 8 * 8 + 7);
        Assert.All(results, v => Assert.Equal(expected, v));
    }

    [Theory]
    [InlineData("x=1,y=2", "x")]
    [InlineData("", "")]
    [InlineData("x=2", "")]
    public void Single_member_groups_return_a_copy_at_once(string meshSpec, string axesList)
    {
        var mesh = Mesh(meshSpec);
        var axes = Axes(axesList);
        using var world = new InProcessWorld(mesh, Patient);
        // One device alone: any wait would hang until the timeout, which this test would notice.
        var comm = world.Communicator(0);
        var x = Input(0, [4, 2]);
        var sw = Stopwatch.StartNew();
        foreach (
            var r in new[]
            {
                comm.AllReduce(x, axes, ReduceKind.Sum, Site("dist.all_reduce")),
                comm.AllGather(x, axes, 0, Site("dist.all_gather")),
                comm.ReduceScatter(x, axes, 1, Site("dist.reduce_scatter")),
                comm.AllToAll(x, axes, 0, 1, Site("dist.all_to_all")),
            }
        )
        {
            Same(x, r);
            Assert.NotSame(x.F, r.F);
        }
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void CollectivePermute_moves_blocks_between_devices()
    {
        var mesh = Mesh("x=2,y=2");
        (int, int)[] pairs = [(0, 1), (1, 2), (2, 0)];
        var inputs = Enumerable.Range(0, 4).Select(r => Input(r, [3])).ToArray();
        var results = RunAll(mesh, (r, c) => c.CollectivePermute(inputs[r], pairs, Site("dist.collective_permute")));
        Same(inputs[2], results[0]);
        Same(inputs[0], results[1]);
        Same(inputs[1], results[2]);
        Same(NDArray.Zeros(DType.F32, [3]), results[3]);
        Distinct(inputs, results);
    }

    [Fact]
    public void CollectivePermute_on_one_device()
    {
        using var world = new InProcessWorld(DeviceMesh.Single, Patient);
        var x = Input(0, [2]);
        Same(x, world.Communicator(0).CollectivePermute(x, [(0, 0)], Site("dist.collective_permute")));
        Same(
            NDArray.Zeros(DType.F32, [2]),
            world.Communicator(0).CollectivePermute(x, [], Site("dist.collective_permute"))
        );
    }

    [Theory]
    [InlineData(0, 1, 0, 2)]
    [InlineData(0, 1, 2, 1)]
    [InlineData(0, 4, 1, 0)]
    public void CollectivePermute_rejects_bad_pairs_before_waiting(int s1, int t1, int s2, int t2)
    {
        using var world = new InProcessWorld(Mesh("x=4"), Patient);
        var e = Assert.Throws<CollectiveException>(() =>
            world
                .Communicator(0)
                .CollectivePermute(Input(0, [1]), [(s1, t1), (s2, t2)], Site("dist.collective_permute"))
        );
        Assert.Contains("device 0 (x=0) in dist.collective_permute", e.Message);
    }

    [Fact]
    public void Send_and_recv_keep_order_per_pair()
    {
        var mesh = Mesh("x=3");
        var results = RunAll<int[]>(
            mesh,
            (r, c) =>
            {
                switch (r)
                {
                    case 0:
                        for (int i = 0; i < 3; i++)
                            c.Send(NDArray.FromInts([1], [i]), 2, Site("dist.send", i));
                        return Array.Empty<int>();
                    case 1:
                        for (int i = 0; i < 3; i++)
                            c.Send(NDArray.FromInts([1], [10 + i]), 2, Site("dist.send", i));
                        return Array.Empty<int>();
                    default:
                        // Receive from 1 first, so that 0's messages wait in their own queue meanwhile.
                        var got = new List<int>();
                        for (int i = 0; i < 3; i++)
                            got.Add(c.Recv(1, DType.I32, [1], Site("dist.recv", i)).I![0]);
                        for (int i = 0; i < 3; i++)
                            got.Add(c.Recv(0, DType.I32, [1], Site("dist.recv", 3 + i)).I![0]);
                        return got.ToArray();
                }
            }
        );
        Assert.Equal([10, 11, 12, 0, 1, 2], results[2]);
    }
}
