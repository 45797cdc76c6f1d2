using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// Started collectives on GPUs (<c>mplrun --backend cuda</c>, a GPU per device, on the stand-in driver and NCCL):
/// kernels on each GPU's compute stream, NCCL's calls on its communication stream, ordered by events (a start waits
/// for the compute stream's work so far, a wait makes the compute stream wait for the collective). The stand-in
/// checks every operation against the order streams, events and synchronisation impose, so a missing event wait is
/// a race it reports.
/// </summary>
[Collection(CudaStandIn.Collection)]
public sealed class CudaStreamTests(CudaStandIn standIn)
{
    private (int Code, string Stdout, string Stderr) Run(
        string bundle,
        int gpus,
        string[] args,
        params (string Name, string Value)[] env
    ) =>
        standIn.Mplrun(
            standIn.Bundles[bundle],
            gpus,
            [
                "--backend",
                "cuda",
                "--gpus",
                gpus.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--steps",
                "2",
                "--seed",
                "3",
                .. args,
            ],
            env
        );

    /// <summary>
    /// gpt.mpl (pp=2, dp=2, tp=2: the step phase's all-reduces started together), gpt_sp.mpl (dp=2, tp=2: one
    /// all-reduce a gradient, started in the backward), gpt_sp.mpl under ZeRO-1 (reduce-scatters started) and under
    /// ZeRO-3 (each weight's all-gather started one gather ahead of its use) train on their streams to the blocking
    /// run's losses, parameters and optimizer state bit for bit: each array is reduced or gathered by the same NCCL
    /// call, only later waited for.
    /// </summary>
    [Theory]
    [InlineData("gpt.mpl", 8)]
    [InlineData("gpt_sp.mpl", 4)]
    [InlineData("gpt_sp.mpl zero", 4)]
    [InlineData("gpt_sp.mpl zero3", 4)]
    public void StartedCollectivesOnTheCommunicationStreamEqualBlockingOnesBitForBit(string example, int gpus)
    {
        string program = File.ReadAllText(Path.Combine(standIn.Bundles[example], "program.mplir"));
        Assert.Contains(
            example.Split(' ').Last() switch
            {
                "zero" => "reduce_scatter_start",
                "zero3" => "all_gather_start",
                _ => "all_reduce_start",
            },
            program
        );
        Assert.DoesNotContain(
            "_start",
            File.ReadAllText(Path.Combine(standIn.Bundles[example + " sync"], "program.mplir"))
        );
        var results = new Dictionary<string, Dictionary<string, NpyArray>>[2];
        for (int k = 0; k < 2; k++)
        {
            string name = k == 0 ? example : example + " sync",
                dir = Path.Combine(standIn.Dir, name.Replace(' ', '-') + "-out");
            Directory.CreateDirectory(dir);
            string pars = Path.Combine(dir, "p.npz"),
                outs = Path.Combine(dir, "o.npz");
            var (code, stdout, stderr) = Run(name, gpus, ["--save-params", pars, "--out", outs]);
            Assert.True(code == 0, $"{name}: exit {code}\n{stdout}\n{stderr}");
            Assert.Contains("(collectives through NCCL)", stderr, StringComparison.Ordinal);
            results[k] = new() { ["params"] = Npz.Read(pars), ["out"] = Npz.Read(outs) };
        }
        foreach (var file in new[] { "params", "out" })
        {
            var started = results[0][file];
            var blocking = results[1][file];
            Assert.Equal(blocking.Keys.Order(), started.Keys.Order());
            foreach (var (key, value) in blocking)
                Assert.True(value.Array.F!.SequenceEqual(started[key].Array.F!), $"{key} differs in {file}");
        }
    }

    /// <summary>
    /// The checker of the stand-in: with the communication stream's wait for the compute stream left out at a start
    /// (the all-reduce reads a gradient, or writes memory, that a kernel touched), the compute stream's wait for
    /// the collective left out at its wait (a kernel reads the sum before it is ordered after it), the compute
    /// stream's wait for a copy from the host (on the copy stream) left out, or a copy's wait for the earlier users
    /// of the reused block it writes left out (two devices a GPU: a parameter copied into a block that a device copy
    /// of the same step read), the run fails:
    /// exit 1, the race named on stderr (both operations, their streams), no stack trace.
    /// </summary>
    [Theory]
    [InlineData("start", 4)]
    [InlineData("wait", 4)]
    [InlineData("copy", 4)]
    [InlineData("retire", 2)]
    public void ALeftOutEventWaitIsARaceTheStandInReports(string drop, int gpus)
    {
        var (code, stdout, stderr) = Run("gpt_sp.mpl", gpus, [], ("MPLC_CUDA_DROP_EVENT_WAIT", drop));
        Assert.True(code == 1, $"exit {code}\n{stdout}\n{stderr}");
        const string Race = @"\[cuda stand-in\] race on GPU \d: ";
        Assert.Matches(
            drop switch
            {
                "start" => Race
                    + @"ncclAllReduce \(rank \d\) \(stream \d+, a non-blocking stream\) "
                    + @"(reads|writes) \[0x[0-9a-f]+, \+\d+\), an allocation that kernel \w+ \(stream \d+, a blocking "
                    + "stream, its operation \\d+\\) writes, and nothing orders the two",
                "wait" => Race
                    + @"kernel \w+ \(stream \d+, a blocking stream\) reads or writes "
                    + @"\[0x[0-9a-f]+, \+\d+\), an allocation that ncclAllReduce \(rank \d\) \(stream \d+, a "
                    + "non-blocking stream, its operation \\d+\\) writes, and nothing orders the two",
                // A kernel reads an input or parameter before it is ordered after its copy from the host.
                "copy" => Race
                    + @"kernel \w+ \(stream \d+, a blocking stream\) reads or writes "
                    + @"\[0x[0-9a-f]+, \+\d+\), an allocation that cuMemcpyHtoDAsync \(stream \d+, a "
                    + "non-blocking stream, its operation \\d+\\) writes, and nothing orders the two",
                // A parameter is copied into a reused block while the device copy or kernel before still reads it.
                _ => Race
                    + @"cuMemcpyHtoDAsync \(stream \d+, a non-blocking stream\) writes "
                    + @"\[0x[0-9a-f]+, \+\d+\), an allocation that (kernel \w+|cuMemcpyDtoDAsync) \(stream \d+, a "
                    + "blocking stream, its operation \\d+\\) (reads|writes), and nothing orders the two",
            },
            stderr
        );
        Assert.Matches(
            @"error: (step \d+: )?device \d \(dp=\d, tp=\d\), step \d+, [^\n]* at \S*gpt_sp\.mpl:\d+:\d+: [^\n]*failed",
            stderr
        );
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }
}
