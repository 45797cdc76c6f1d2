using ParallelCompiler.Runtime.Distributed;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>The in-process communicator against results computed directly from every device's input.</summary>
public class CommunicatorTests
{
    private static readonly CollectiveSite Site = new("test", "here", 7);

    /// <summary>Device r's input: a [2, 6] array whose element i is 100 r + i.</summary>
    private static NDArray Input(int rank) => NDArray.FromFloats([2, 6], Enumerable.Range(0, 12).Select(i => 100f * rank + i).ToArray());

    private static T[] RunAll<T>(DeviceMesh mesh, Func<int, ICommunicator, T> body, double timeoutSeconds = 10)
    {
        using var world = new InProcessWorld(mesh, TimeSpan.FromSeconds(timeoutSeconds));
        return world.Run(body);
    }

    [Fact]
    public void MeshRanksAndGroupsAreRowMajor()
    {
        var mesh = new DeviceMesh(["a", "b", "c"], [2, 3, 2]);
        Assert.Equal(12, mesh.DeviceCount);
        Assert.Equal([1, 2, 1], mesh.Coords(11));
        Assert.Equal(9, mesh.RankOf([1, 1, 1]));
        Assert.Equal([1, 3, 5], mesh.Group(3, ["b"]));
        Assert.Equal([1, 7, 3, 9, 5, 11], mesh.Group(3, ["b", "a"]));
        Assert.Equal(3, mesh.IndexInGroup(9, ["b", "a"]));
        Assert.Equal(6, mesh.Product(["b", "c"]));
        Assert.Throws<ArgumentException>(() => mesh.Size("zz"));
    }

    [Theory]
    [InlineData(new[] { 2 }, new[] { "x" })]
    [InlineData(new[] { 2, 2 }, new[] { "y" })]
    [InlineData(new[] { 2, 3 }, new[] { "y", "x" })]
    [InlineData(new[] { 2, 3 }, new[] { "x" })]
    public void CollectivesMatchTheirDefinitions(int[] sizes, string[] axes)
    {
        var mesh = new DeviceMesh(new[] { "x", "y" }.Take(sizes.Length).ToArray(), sizes);
        var results = RunAll(mesh, (rank, comm) => new[]
        {
            comm.AllReduce(Input(rank), axes, ReduceKind.Sum, Site),
            comm.AllReduce(Input(rank), axes, ReduceKind.Max, Site),
            comm.AllGather(Input(rank), axes, 1, Site),
            comm.ReduceScatter(Input(rank), axes, 1, Site),
            comm.AllToAll(Input(rank), axes, 1, 0, Site),
        });
        for (int rank = 0; rank < mesh.DeviceCount; rank++)
        {
            var group = mesh.Group(rank, axes);
            int n = group.Length, me = Array.IndexOf(group, rank);
            var sum = ArrayOps.Sum(group.Select(Input).ToArray());
            Assert.Equal(sum.F, results[rank][0].F);
            Assert.Equal(Input(group.Max()).F, results[rank][1].F);
            Assert.Equal(ArrayOps.Concat(group.Select(Input).ToArray(), 1).F, results[rank][2].F);
            Assert.Equal(ArrayOps.Split(sum, 1, n)[me].F, results[rank][3].F);
            Assert.Equal(ArrayOps.Concat(group.Select(g => ArrayOps.Split(Input(g), 1, n)[me]).ToArray(), 0).F, results[rank][4].F);
        }
    }

    [Fact]
    public void PermuteSendAndReceive()
    {
        var mesh = new DeviceMesh(["x"], [3]);
        var results = RunAll(mesh, (rank, comm) =>
        {
            var p = comm.CollectivePermute(Input(rank), [(0, 1), (1, 2)], Site);
            if (rank == 0) { comm.Send(Input(10), 2, Site); comm.Send(Input(11), 2, Site); }
            var first = rank == 2 ? comm.Recv(0, DType.F32, [2, 6], Site) : null;
            var second = rank == 2 ? comm.Recv(0, DType.F32, [2, 6], Site) : null;
            return (p, first, second);
        });
        Assert.All(results[0].p.F!, v => Assert.Equal(0f, v));
        Assert.Equal(Input(0).F, results[1].p.F);
        Assert.Equal(Input(1).F, results[2].p.F);
        Assert.Equal(Input(10).F, results[2].first!.F);
        Assert.Equal(Input(11).F, results[2].second!.F);
    }

    [Fact]
    public void MismatchedCollectivesFailAtOnce()
    {
        var mesh = new DeviceMesh(["x"], [2]);
        var e = Assert.Throws<CollectiveException>(() => RunAll(mesh, (rank, comm) =>
            rank == 0 ? comm.AllReduce(Input(rank), ["x"], ReduceKind.Sum, Site) : comm.AllGather(Input(rank), ["x"], 0, Site)));
        Assert.Contains("mismatched collectives", e.Message);
        Assert.Contains("all_reduce", e.Message);
        Assert.Contains("all_gather", e.Message);
    }

    [Fact]
    public void AMissingMemberIsReportedAfterTheTimeout()
    {
        var mesh = new DeviceMesh(["x"], [2]);
        var e = Assert.Throws<CollectiveTimeoutException>(() => RunAll(mesh, (rank, comm) =>
            rank == 0 ? comm.AllReduce(Input(rank), ["x"], ReduceKind.Sum, new CollectiveSite("dist.all_reduce", "m.mpl:3:4", 12)) : null, 0.3));
        Assert.Contains("device 0 (x=0)", e.Message);
        Assert.Contains("dist.all_reduce at step 12 (m.mpl:3:4)", e.Message);
        Assert.Contains("device(s) 1 never arrived", e.Message);
    }

    [Fact]
    public void AFailingDeviceStopsTheOthers()
    {
        var mesh = new DeviceMesh(["x"], [4]);
        var e = Assert.Throws<InvalidOperationException>(() => RunAll(mesh, (rank, comm) =>
            rank == 2 ? throw new InvalidOperationException("boom") : comm.AllReduce(Input(rank), ["x"], ReduceKind.Sum, Site), 30));
        Assert.Equal("boom", e.Message);
    }
}
