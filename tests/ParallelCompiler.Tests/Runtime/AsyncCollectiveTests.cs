using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>
/// Started collectives on simulated devices: a device goes on after the start and blocks only at the wait, a bucket
/// gives every array what its own collective would, bit for bit, and a start takes its place among the group's
/// collectives where it is issued.
/// </summary>
public sealed class AsyncCollectiveTests
{
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(20);

    private static CollectiveSite Site(string op) => new(op, "test.mpl:1:1", 0);

    private static NDArray Input(int rank, int n, int salt = 0)
    {
        var v = new float[n];
        for (int i = 0; i < v.Length; i++)
            v[i] = 0.1f * (rank + 1) + 0.37f * i + salt;
        return NDArray.FromFloats([n], v);
    }

    /// <summary>Device 1 starts the all-reduce only after a message that device 0 sends after its own start: a
    /// blocking all-reduce on device 0 never lets the message go, so the run times out.</summary>
    [Fact]
    public void AStartedAllReduceLetsTheDeviceGoOn()
    {
        var mesh = new DeviceMesh(["x"], [2]);
        NDArray Body(int rank, ICommunicator<NDArray> comm, bool async)
        {
            var x = Input(rank, 5);
            if (rank == 0)
            {
                if (!async)
                    return comm.AllReduce(x, ["x"], ReduceKind.Sum, Site("all_reduce"));
                var pending = comm.StartAllReduce([x], ["x"], ReduceKind.Sum, Site("all_reduce_start"));
                comm.Send(x, 1, Site("send"));
                return pending.Wait()[0];
            }
            comm.Recv(0, DType.F32, [5], Site("recv"));
            return comm.StartAllReduce([x], ["x"], ReduceKind.Sum, Site("all_reduce_start")).Wait()[0];
        }
        using (var world = new InProcessWorld(mesh, Patient))
        {
            var results = world.Run((r, c) => Body(r, c, async: true));
            var expected = Input(0, 5).F!.Zip(Input(1, 5).F!, (a, b) => a + b).ToArray();
            Assert.All(results, r => Assert.Equal(expected, r.F!));
        }
        using (var world = new InProcessWorld(mesh, TimeSpan.FromMilliseconds(300)))
            Assert.Throws<CollectiveTimeoutException>(() => world.Run((r, c) => Body(r, c, async: false)));
    }

    /// <summary>A bucket of arrays of different shapes, started around blocking collectives of the same group,
    /// equals the blocking all-reduces and reduce-scatters bit for bit.</summary>
    [Fact]
    public void ABucketEqualsItsCollectivesBitForBit()
    {
        var mesh = new DeviceMesh(["dp", "tp"], [2, 2]);
        NDArray[] Arrays(int rank) => [Input(rank, 7), Input(rank, 12, 3), Input(rank, 4, 9)];
        using var world = new InProcessWorld(mesh, Patient);
        var got = world.Run(
            (rank, comm) =>
            {
                var xs = Arrays(rank);
                var reduce = comm.StartAllReduce(xs, ["dp"], ReduceKind.Sum, Site("all_reduce_start"));
                var scatter = comm.StartReduceScatter([xs[1], xs[2]], ["dp", "tp"], 0, Site("reduce_scatter_start"));
                var between = comm.AllReduce(xs[0], ["dp"], ReduceKind.Max, Site("all_reduce"));
                return scatter.Wait().Concat(reduce.Wait()).Append(between).ToArray();
            }
        );
        using var plain = new InProcessWorld(mesh, Patient);
        var want = plain.Run(
            (rank, comm) =>
            {
                var xs = Arrays(rank);
                var site = Site("all_reduce");
                return new[]
                {
                    comm.ReduceScatter(xs[1], ["dp", "tp"], 0, site),
                    comm.ReduceScatter(xs[2], ["dp", "tp"], 0, site),
                    comm.AllReduce(xs[0], ["dp"], ReduceKind.Sum, site),
                    comm.AllReduce(xs[1], ["dp"], ReduceKind.Sum, site),
                    comm.AllReduce(xs[2], ["dp"], ReduceKind.Sum, site),
                    comm.AllReduce(xs[0], ["dp"], ReduceKind.Max, site),
                };
            }
        );
        for (int r = 0; r < 4; r++)
        {
            Assert.Equal(want[r].Length, got[r].Length);
            for (int k = 0; k < want[r].Length; k++)
                Assert.Equal(want[r][k].F!, got[r][k].F!);
        }
    }

    /// <summary>Members that start different collectives fail with both named, not a hang.</summary>
    [Fact]
    public void StartsThatDisagreeFailNamingBoth()
    {
        using var world = new InProcessWorld(new DeviceMesh(["x"], [2]), Patient);
        var e = Assert.Throws<CollectiveException>(() =>
            world.Run(
                (rank, comm) =>
                    rank == 0
                        ? comm.StartAllReduce([Input(0, 4)], ["x"], ReduceKind.Sum, Site("a")).Wait()
                        : comm.StartReduceScatter([Input(1, 4)], ["x"], 0, Site("b")).Wait()
            )
        );
        Assert.Contains("collective mismatch", e.Message, StringComparison.Ordinal);
        Assert.Contains("all_reduce(sum)", e.Message, StringComparison.Ordinal);
        Assert.Contains("reduce_scatter(dim 0)", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A start and its wait in a device program run through the executor, survive the program file, and
    /// the trace draws the collective in flight on the device's communication track.</summary>
    [Fact]
    public void ProgramsStartAndWaitAndTraceTheFlight()
    {
        var program = new DeviceProgram(
            "f",
            3,
            [
                new InputInstr("argument", "x", 0, 0),
                new StartInstr(
                    "dist.all_reduce_start",
                    "t:1:1",
                    CollectiveKind.AllReduce,
                    ["x"],
                    0,
                    ReduceKind.Sum,
                    [0],
                    1
                ),
                new WaitInstr("dist.wait", "t:2:1", 1, [0], [2]),
            ],
            [2]
        );
        var read = ProgramFile.Read(ProgramFile.Write(program), _ => throw new InvalidOperationException());
        Assert.Equal(ProgramFile.Write(program), ProgramFile.Write(read));
        var wait = Assert.IsType<WaitInstr>(read.Instructions[2]);
        Assert.Equal([0], wait.Holds);
        Assert.Equal([0], read.LastUses[2]); // the input lives until the wait: the collective reads it
        var mesh = new DeviceMesh(["x"], [2]);
        var trace = new Trace();
        using var world = new InProcessWorld(mesh, Patient);
        var results = world.Run(
            (rank, comm) =>
                Executor.Run(read, new SimulatedCpuDevice(rank), comm, [Input(rank, 3)], _ => null!, trace: trace)[0]
        );
        var expected = Input(0, 3).F!.Zip(Input(1, 3).F!, (a, b) => a + b).ToArray();
        Assert.All(results, r => Assert.Equal(expected, r.F!));
        Assert.Equal(2, trace.Events.Count(e => e.Category == Trace.AsyncCategory));
        using var json = new MemoryStream();
        trace.WriteChromeJson(json, ["cpu:0", "cpu:1"]);
        string text = System.Text.Encoding.UTF8.GetString(json.ToArray());
        Assert.Contains("\"name\":\"cpu:1 comm\"", text, StringComparison.Ordinal);
        Assert.Contains($"\"tid\":{Trace.CommTrack(1, 2)}", text, StringComparison.Ordinal);
    }
}
