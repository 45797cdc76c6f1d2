using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Training;

/// <summary>
/// Training with the gradient synchronisation started early and waited for late (schedule-collectives, in the
/// default pipeline) against the blocking collectives where spmdize left them and against one device.
/// </summary>
public sealed class AsyncCollectiveTrainingTests() : TempDirTest("mplc-async")
{
    private static Mplc.Result Ok(params string[] args)
    {
        var r = Mplc.Run(args);
        Assert.True(r.ExitCode == 0, $"mplc {string.Join(" ", args)} exited with {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    /// <summary>Each array is still reduced on its own, in the same order over the group, so started collectives
    /// (bucketed or not, ZeRO's reduce-scatters too) give the blocking run's losses, parameters and optimizer state
    /// bit for bit.</summary>
    [Theory]
    [InlineData("gpt_sp.mpl", "0", "25")]
    [InlineData("gpt_sp.mpl", "1", "0")]
    [InlineData("gpt.mpl", "0", "25")]
    [InlineData("gpt.mpl", "1", "0.01")]
    [InlineData("gpt.mpl", "3", "25")]
    [InlineData("classifier.mpl", "0", "0")]
    public void StartedCollectivesEqualBlockingOnesBitForBit(string example, string zero, string bucketMb)
    {
        string path = Repo.Path("examples", example);
        string[] common = ["-D", "L=2", "--zero", zero, "--steps", "2", "--seed", "3"];
        if (example == "classifier.mpl")
            common = common[2..];
        var ir = Ok(["compile", path, .. common[..^4], "--bucket-mb", bucketMb]).Stdout;
        Assert.Contains(zero != "0" ? "dist.reduce_scatter_start" : "dist.all_reduce_start", ir);
        Ok(["run", path, .. common, "--bucket-mb", bucketMb, "--save-params", P("a.npz"), "--out", P("a_out.npz")]);
        Ok(["run", path, .. common, "--sync-collectives", "--save-params", P("s.npz"), "--out", P("s_out.npz")]);
        foreach (var (a, s) in new[] { ("a.npz", "s.npz"), ("a_out.npz", "s_out.npz") })
        {
            var async = ArrayFile.Read(P(a));
            var sync = ArrayFile.Read(P(s));
            Assert.Equal(sync.Keys.Order(), async.Keys.Order());
            foreach (var (key, value) in sync)
                Assert.True(value.Array.F!.SequenceEqual(async[key].Array.F!), $"{key} differs in {a}");
        }
    }

    /// <summary>examples/gpt.mpl trains on its pp=2, dp=2, tp=2 mesh as on one device with the started
    /// collectives.</summary>
    [Fact]
    public void GptWithStartedCollectivesEqualsOneDevice()
    {
        string gpt = Repo.Path("examples", "gpt.mpl");
        Assert.Contains("dist.all_reduce_start", Ok("compile", gpt, "-D", "L=2").Stdout);
        var r = Ok("run", gpt, "-D", "L=2", "--steps", "2", "--check");
        Assert.Contains("equals one device", r.Stdout + r.Stderr);
    }

    /// <summary>On simulated devices the trace shows a gradient all-reduce in flight (its device's communication
    /// track) while the same device runs backward kernels, and the device blocks only in its waits.</summary>
    [Fact]
    public void TheTraceShowsGradientAllReducesUnderBackwardCompute()
    {
        Ok("run", Repo.Path("examples", "gpt_sp.mpl"), "--steps", "2", "--bucket-mb", "0", "--trace", P("t.json"));
        var spans = TraceSpan.Read(P("t.json"));
        const int devices = 4;
        var flights = spans.Where(s => s.Cat == "async").ToList();
        Assert.NotEmpty(flights);
        Assert.All(flights, f => Assert.InRange(f.Tid, devices, 2 * devices - 1));
        Assert.Contains(flights, f => f.Name == "dist.all_reduce_start");
        Assert.Contains(spans, s => s.Cat == "wait");
        double under = 0;
        foreach (var f in flights.Where(f => f.Name == "dist.all_reduce_start"))
        foreach (var c in spans.Where(s => s.Cat == "compute" && s.Tid == f.Tid - devices))
            under += TraceSpan.Overlap(f, c);
        Assert.True(under > 0, "no kernel ran while a gradient all-reduce was in flight");
    }

    /// <summary>The options' errors.</summary>
    [Fact]
    public void BucketOptionErrors()
    {
        string mlp = Repo.Path("examples", "classifier.mpl");
        var r = Mplc.Run("compile", mlp, "--bucket-mb=-1");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: --bucket-mb must be at least 0, got -1", r.Stderr);
        r = Mplc.Run("compile", mlp, "--sync-collectives", "--pass-pipeline", "shape-inference");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--bucket-mb, --sync-collectives and --no-prefetch apply to the default pipeline", r.Stderr);
        r = Mplc.Run(
            "opt",
            Repo.Path("tests", "ir", "schedule-collectives.mplir"),
            "--pass-pipeline",
            "schedule-collectives{bucket-mb=-2}"
        );
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("schedule-collectives: bucket-mb must be at least 0, got -2", r.Stderr);
        Assert.DoesNotContain("internal compiler error", r.Stderr);
    }
}
