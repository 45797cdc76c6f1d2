using System.Text.Json;
using System.Text.RegularExpressions;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Training;

/// <summary>ZeRO-2 (<c>--zero 2</c>): each microbatch's gradient reduce-scattered before the sum over microbatches;
/// ZeRO-3 (<c>--zero 3</c>): parameters stored split over dp too, gathered at each use and freed after it. The
/// program still trains as one device does.</summary>
public sealed class ZeroStageTests() : TempDirTest("mplc-zero")
{
    private static readonly string Gpt = Repo.Path("examples", "gpt.mpl");

    private static string Ok(params string[] args)
    {
        var r = Mplc.Run(args);
        Assert.True(r.ExitCode == 0, $"mplc {string.Join(" ", args)} exited with {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r.Stdout + r.Stderr;
    }

    private static NDArray Read(string path, string key) => ArrayFile.Read(path)[key].Array;

    /// <summary>Every trained parameter is stored split over dp; a layer's weight is gathered once for the forward
    /// and once again for the backward, and its gradient is reduce-scattered into the stored layout.</summary>
    [Fact]
    public void EachParameterIsStoredSplitAndGatheredAtEachUse()
    {
        var ir = Ok("compile", Gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--zero", "3");
        var stored = Regex.Matches(ir, @"layout = tensor<[^,]*, shard\[([^\]]*)\]>, path = ""(gpt\.[^""]*)""");
        var trained = stored.Where(m => !m.Groups[2].Value.Contains("adam")).ToList();
        Assert.NotEmpty(trained);
        foreach (Match m in trained)
            Assert.True(m.Groups[1].Value.Contains("dp"), $"{m.Groups[2].Value} is stored as shard[{m.Groups[1]}]");
        Assert.Equal(2, Regex.Matches(ir, @"= dist\.all_gather_start %gpt\.block\.0\.mlp\.w1 ").Count);
        // Each microbatch's gradient (gpt.mpl has four) is reduce-scattered in its backward.
        Assert.Matches(
            @"dist\.reduce_scatter(_start)? %[\w.]+(, %[\w.]+)* \{axes = \[""dp""\], dim = \d+, phase = ""backward""",
            ir
        );
        Assert.Contains("zero = 3", ir);
    }

    /// <summary>In a pipeline each microbatch gathers a weight in its forward and again in its backward: no gather
    /// runs once before the schedule and stays held for the step.</summary>
    [Fact]
    public void APipelineGathersInEveryMicrobatchTask()
    {
        var ir = Ok("compile", Gpt, "-D", "L=2", "--zero", "3");
        var gathers = Regex
            .Matches(ir, @"= dist\.all_gather_start %gpt\.block\.1\.attention\.wq \{([^}]*)\}")
            .Select(m => m.Groups[1].Value)
            .ToList();
        Assert.Equal(2, gathers.Count);
        Assert.DoesNotContain(gathers, g => g.Contains("setup"));
        Assert.Contains(gathers, g => !g.Contains("phase"));
        Assert.Contains(gathers, g => g.Contains("phase = \"backward\""));
    }

    /// <summary>Each gather is started where the one before it is waited for, so the next weight is gathered while
    /// the one before is used: mlp.w2's gather starts after w1's wait and before w1's matmul, and is waited for just
    /// before its own matmul. <c>--no-prefetch</c> keeps every gather blocking, and trains to the same parameters bit
    /// for bit.</summary>
    [Fact]
    public void EachGatherStartsOneGatherAheadOfItsUse()
    {
        var lines = Ok("compile", Gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--zero", "3").Split('\n');
        int Line(string pattern) => Array.FindIndex(lines, l => Regex.IsMatch(l, pattern));
        int w1Wait = Line(@"%gpt\.block\.0\.mlp\.w1_1 = dist\.wait "),
            w2Start = Line(@"= dist\.all_gather_start %gpt\.block\.0\.mlp\.w2 "),
            w1Use = Line(@"= tensor\.matmul %\w+, %gpt\.block\.0\.mlp\.w1_1 "),
            w2Wait = Line(@"%gpt\.block\.0\.mlp\.w2_1 = dist\.wait "),
            w2Use = Line(@"= tensor\.matmul %\w+, %gpt\.block\.0\.mlp\.w2_1 ");
        Assert.True(
            w1Wait >= 0 && w1Wait < w2Start && w2Start < w1Use && w1Use < w2Wait && w2Wait < w2Use,
            $"w1 wait {w1Wait}, w2 start {w2Start}, w1 matmul {w1Use}, w2 wait {w2Wait}, w2 matmul {w2Use}"
        );
        var blocking = Ok("compile", Gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--zero", "3", "--no-prefetch");
        Assert.DoesNotContain("all_gather_start", blocking);
        Assert.Equal(2, Regex.Matches(blocking, @"= dist\.all_gather %gpt\.block\.0\.mlp\.w1 ").Count);
        string[] common = ["run", Gpt, "-D", "L=2", "--zero", "3", "--steps", "2"];
        Ok([.. common, "--save-params", P("ahead.npz")]);
        Ok([.. common, "--no-prefetch", "--save-params", P("blocking.npz")]);
        var ahead = ArrayFile.Read(P("ahead.npz"));
        foreach (var (key, value) in ArrayFile.Read(P("blocking.npz")))
            Assert.True(value.Array.F!.SequenceEqual(ahead[key].Array.F!), $"{key} differs");
    }

    /// <summary>examples/gpt.mpl on its pp=2, dp=2, tp=2 mesh and gpt_sp.mpl on dp=2, tp=2 train under ZeRO-3 as on one
    /// device, and to the losses of ZeRO-0.</summary>
    [Theory]
    [InlineData("gpt.mpl", "2")]
    [InlineData("gpt.mpl", "3")]
    [InlineData("gpt_sp.mpl", "3")]
    public void TrainsAsOneDevice(string example, string zero)
    {
        string path = Repo.Path("examples", example);
        Assert.Contains("equals one device", Ok("run", path, "-D", "L=2", "--zero", zero, "--steps", "3", "--check"));
        Ok("run", path, "-D", "L=2", "--zero", zero, "--steps", "3", "--out", P("z3.npz"));
        Ok("run", path, "-D", "L=2", "--steps", "3", "--out", P("z0.npz"));
        Assert.True(Distributed.MaxRelativeError(Read(P("z0.npz"), "loss"), Read(P("z3.npz"), "loss")) <= 1e-5);
    }

    /// <summary>A model trained in bf16 keeps f32 master weights stored split, and still equals one device.</summary>
    [Fact]
    public void MixedPrecisionEqualsOneDevice()
    {
        string src = File.ReadAllText(Repo.Path("examples", "mlp.mpl"))
            .Replace(
                "model mlp(x: f32[B, D] shard[dp, _])",
                "model mlp(x: f32[B, D] shard[dp, _], y: f32[B, D] shard[dp, _])"
            )
            .Replace("-> f32[B, D] {", "-> f32[] {")
            .Replace("return h @ w2;", "return mean((h @ w2 - y) * (h @ w2 - y));");
        File.WriteAllText(P("m.mpl"), src + "train mlp optimizer adam(lr = 0.01) precision bf16;\n");
        Assert.Contains("equals one device", Ok("run", P("m.mpl"), "--zero", "3", "--steps", "2", "--check"));
    }

    /// <summary>Under ZeRO-2 a pipeline reduce-scatters each microbatch's gradient in its backward, and the step sums
    /// the shards.</summary>
    [Fact]
    public void StageTwoReduceScattersEachMicrobatch()
    {
        var two = Ok("compile", Gpt, "-D", "L=2", "--zero", "2");
        var one = Ok("compile", Gpt, "-D", "L=2", "--zero", "1");
        Assert.Matches(
            @"dist\.reduce_scatter(_start)? %[\w.]+(, %[\w.]+)* \{axes = \[""dp""\], dim = \d+, phase = ""backward""",
            two
        );
        Assert.DoesNotMatch(
            @"dist\.reduce_scatter(_start)? %[\w.]+(, %[\w.]+)* \{axes = \[""dp""\], dim = \d+, phase = ""backward""",
            one
        );
    }

    /// <summary>The cost model sees the memory each stage saves and the gathers ZeRO-3 adds: a device holds less
    /// at each stage (ZeRO-2's shards only where gradient buffers are at the peak, which they are not here), and
    /// communicates more under ZeRO-3, less of it exposed with the gathers prefetched than blocking.</summary>
    [Fact]
    public void TheCostModelSeesLessMemoryAndMoreCommunication()
    {
        (double Memory, double Comm) Cost(string zero, params string[] more)
        {
            var j = JsonDocument
                .Parse(
                    Ok([
                        "cost",
                        Gpt,
                        "-D",
                        "L=2",
                        "-D",
                        "D=256",
                        "--zero",
                        zero,
                        "--cluster",
                        "a100-80g-selene",
                        "--json",
                        .. more,
                    ])
                )
                .RootElement;
            double comm = j.GetProperty("exposed_comm_s").EnumerateObject().Sum(k => k.Value.GetDouble());
            return (j.GetProperty("memory_gib").GetDouble(), comm);
        }
        var (m0, c0) = Cost("0");
        var (m1, _) = Cost("1");
        var (m2, _) = Cost("2");
        var (m3, c3) = Cost("3");
        Assert.True(m3 < m2 && m2 <= m1 && m1 < m0, $"memory: zero-0 {m0}, -1 {m1}, -2 {m2}, -3 {m3} GiB");
        Assert.True(c3 > c0, $"exposed communication: zero-0 {c0}, zero-3 {c3} s");
        // The gathers started one ahead hide under the compute of the weight before; blocking, none does.
        var (_, blocking) = Cost("3", "--no-prefetch");
        Assert.True(c3 < blocking, $"exposed communication under ZeRO-3: {c3} s prefetched, {blocking} s blocking");
    }

    /// <summary>A ZeRO stage beyond 3 given as the optimizer pass's option is a clear error, not an internal
    /// one.</summary>
    [Fact]
    public void ABadStageInAPassPipelineIsAnError()
    {
        var r = Mplc.Run(
            "compile",
            Repo.Path("examples", "classifier.mpl"),
            "--pass-pipeline",
            "shape-inference,autodiff,optimizer{zero=5}"
        );
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: optimizer: zero must be 0, 1, 2 or 3, got 5", r.Stderr);
        Assert.DoesNotContain("internal compiler error", r.Stderr);
    }

    /// <summary>ZeRO-3 needs a data-parallel axis: without a split batch it is a clear error.</summary>
    [Fact]
    public void WithoutADataParallelAxisItIsAnError()
    {
        File.WriteAllText(
            P("r.mpl"),
            "mesh grid[tp = 2];\nmodel m(x: f32[4, 8]) -> f32[] {\n  param w: f32[8, 8] shard[_, tp];\n"
                + "  return sum(x @ w);\n}\ntrain m optimizer sgd(lr = 0.1);\n"
        );
        var r = Mplc.Run("run", P("r.mpl"), "--zero", "3");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: --zero 3: no data-parallel axis", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }
}
