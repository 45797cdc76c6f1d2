using System.Diagnostics;
using ParallelCompiler.Runtime.Distributed;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>The communicator's failures: wrong shapes, mismatched and skipped collectives, timeouts, a device that
/// throws.</summary>
public sealed partial class CommunicatorTests
{
    [Fact]
    public void Recv_of_the_wrong_shape_fails()
    {
        var e = Assert.Throws<CollectiveException>(() =>
            RunAll(
                Mesh("x=2"),
                (r, c) =>
                {
                    if (r == 0)
                        c.Send(Input(0, [2, 3]), 1, Site("dist.send", 4));
                    else
                        c.Recv(0, DType.F32, [3, 2], Site("dist.recv", 7));
                    return 0;
                }
            )
        );
        Assert.Contains(
            "device 1 (x=1) expected f32[3, 2] in recv from device 0 (x=0), dist.recv at step 7",
            e.Message
        );
        Assert.Contains("device 0 (x=0) sent f32[2, 3] in send to device 1 (x=1), dist.send at step 4", e.Message);
    }

    // ---- wrong programs fail promptly ----

    [Fact]
    public void Mismatched_collectives_fail_at_once_naming_both_calls()
    {
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<CollectiveException>(() =>
            RunAll(
                Mesh("x=2"),
                (r, c) =>
                {
                    var x = Input(r, [2]);
                    return r == 0
                        ? c.AllReduce(x, ["x"], ReduceKind.Sum, Site("dist.all_reduce", 3))
                        : c.AllGather(x, ["x"], 0, Site("dist.all_gather", 3));
                }
            )
        );
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"took {sw.Elapsed}");
        Assert.Contains("collective mismatch", e.Message);
        Assert.Contains("device 0 (x=0) called dist.all_reduce", e.Message);
        Assert.Contains("device 1 (x=1) called dist.all_gather", e.Message);
        Assert.Contains("all_reduce(sum) over [x] of f32[2]", e.Message);
    }

    [Fact]
    public void Mismatched_shapes_fail_at_once()
    {
        var e = Assert.Throws<CollectiveException>(() =>
            RunAll(
                Mesh("x=2"),
                (r, c) => c.AllReduce(Input(r, [2 + r]), ["x"], ReduceKind.Sum, Site("dist.all_reduce"))
            )
        );
        Assert.Contains("f32[2]", e.Message);
        Assert.Contains("f32[3]", e.Message);
    }

    [Fact]
    public void A_skipped_collective_times_out_naming_device_op_step_and_the_missing_member()
    {
        var sw = Stopwatch.StartNew();
        using var world = new InProcessWorld(Mesh("dp=2,tp=2"), TimeSpan.FromMilliseconds(300));
        var e = Assert.Throws<CollectiveTimeoutException>(() =>
            world.Run(
                (r, c) =>
                {
                    var x = Input(r, [2]);
                    return r == 2
                        ? x
                        : c.AllReduce(
                            x,
                            ["tp"],
                            ReduceKind.Sum,
                            new CollectiveSite("dist.all_reduce", "model.mpl:9:12", 12)
                        );
                }
            )
        );
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"took {sw.Elapsed}");
        Assert.Equal(
            "device 3 (dp=1, tp=1) waited 0.3 s in dist.all_reduce over [tp] at step 12 (model.mpl:9:12); "
                + "device 2 of group [2, 3] never arrived (it finished its program)",
            e.Message
        );
    }

    [Fact]
    public void A_recv_that_nobody_sends_times_out()
    {
        using var world = new InProcessWorld(Mesh("x=2"), TimeSpan.FromMilliseconds(200));
        var e = Assert.Throws<CollectiveTimeoutException>(() =>
            world.Run((r, c) => r == 0 ? null : c.Recv(0, DType.F32, [4], Site("dist.recv", 1)))
        );
        Assert.Equal(
            "device 1 (x=1) waited 0.2 s in recv from device 0 (x=0), dist.recv at step 1 (test.mpl:1:1); "
                + "device 0 never sent anything (it finished its program)",
            e.Message
        );
    }

    [Fact]
    public void A_timeout_says_where_the_missing_device_waits()
    {
        using var world = new InProcessWorld(Mesh("x=2"), TimeSpan.FromMilliseconds(200));
        var e = Assert.Throws<CollectiveTimeoutException>(() =>
            world.Run(
                (r, c) =>
                    r == 0
                        ? c.AllReduce(Input(r, [1]), ["x"], ReduceKind.Sum, Site("dist.all_reduce", 5))
                        : c.Recv(0, DType.F32, [1], Site("dist.recv", 5))
            )
        );
        // Whichever device gives up first reports the other one's wait.
        Assert.True(
            e.Message.Contains("device 1 of group [0, 1] never arrived (it ")
                && e.Message.Contains(" waiting in recv from device 0 (x=0), dist.recv at step 5")
                || e.Message.Contains("device 0 never sent anything (it ")
                    && e.Message.Contains(" waiting in dist.all_reduce over [x] at step 5"),
            e.Message
        );
    }

    [Fact]
    public void A_device_that_throws_stops_the_others_and_its_exception_comes_out()
    {
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidOperationException>(() =>
            RunAll(
                Mesh("x=4"),
                (r, c) =>
                {
                    if (r == 2)
                        throw new InvalidOperationException("device 2 broke");
                    var y = c.AllReduce(Input(r, [2]), ["x"], ReduceKind.Sum, Site("dist.all_reduce"));
                    return r == 1 ? c.Recv(2, DType.F32, [2], Site("dist.recv", 1)) : y;
                }
            )
        );
        Assert.Equal("device 2 broke", e.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"took {sw.Elapsed}");
    }

    [Fact]
    public void A_failed_world_cannot_run_again()
    {
        using var world = new InProcessWorld(Mesh("x=2"), Patient);
        Assert.Throws<ArithmeticException>(() => world.Run<int>((r, c) => throw new ArithmeticException()));
        Assert.Throws<InvalidOperationException>(() => world.Run((r, c) => r));
    }

    [Fact]
    public void Bad_arguments_fail_on_the_calling_device()
    {
        using var world = new InProcessWorld(Mesh("x=2"), Patient);
        var c = world.Communicator(1);
        var e = Assert.Throws<CollectiveException>(() =>
            c.AllReduce(Input(1, [2]), ["y"], ReduceKind.Sum, Site("dist.all_reduce", 2))
        );
        Assert.Contains("device 1 (x=1) in dist.all_reduce over [y] at step 2", e.Message);
        Assert.Contains("unknown mesh axis 'y'", e.Message);
        Assert.Throws<CollectiveException>(() => c.AllGather(Input(1, [2]), ["x"], 1, Site("dist.all_gather")));
        Assert.Throws<CollectiveException>(() => c.ReduceScatter(Input(1, [3]), ["x"], 0, Site("dist.reduce_scatter")));
        Assert.Throws<CollectiveException>(() => c.Send(Input(1, [3]), 2, Site("dist.send")));
    }

    // ---- the simulated device ----

    private sealed class AddOne : IHostKernel
    {
        public string Name => "add_one";

        public void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
        {
            for (int i = 0; i < inputs[0].F!.Length; i++)
                outputs[0].F![i] = inputs[0].F![i] + 1;
        }
    }

    [Fact]
    public void Simulated_device_counts_bytes_and_launches()
    {
        var device = new SimulatedCpuDevice(3);
        Assert.Equal("cpu:3", device.Name);
        Assert.Equal(3, device.Ordinal);
        var host = Input(0, [4]);
        var a = device.CopyIn(host);
        Assert.NotSame(host.F, a.F);
        var b = device.Allocate(DType.F32, [4]);
        var h = device.Allocate(DType.BF16, [8]);
        Assert.Equal(16 + 16 + 16, device.BytesAllocated);
        Assert.All(h.F!, v => Assert.Equal(0f, v));
        device.Launch(new AddOne(), [a], [b]);
        Assert.Equal(1, device.Launches);
        var back = device.CopyOut(b);
        Assert.NotSame(b.F, back.F);
        Same(NDArray.FromFloats([4], [1, 2, 3, 4]), back);
    }
}
