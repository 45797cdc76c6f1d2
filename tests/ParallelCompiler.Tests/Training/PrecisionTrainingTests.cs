using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Training;

/// <summary>A model written wholly in bf16 trains: adam's f32 step count meets bf16 moments through
/// tensor.convert. Mixed precision (<c>train ... precision bf16|fp16</c>) keeps f32 master weights: numpy checks its
/// gradients on the interpreter, the compiled CPU kernels and the PTX kernels on emulated GPUs, and fp16's dynamic
/// loss scaling skips a step that overflows.</summary>
public class PrecisionTrainingTests() : TempDirTest("mplc-bf16")
{
    /// <summary>loss = mean((x @ w - y)^2) over a data-parallel batch, trained by sgd.</summary>
    private string Linear(string precision, double lr = 1e-3)
    {
        string path = P($"linear_{precision}.mpl");
        File.WriteAllText(
            path,
            $$"""
            mesh grid[dp = 2];
            const B = 8; const D = 16;
            model net(x: f32[B, D] shard[dp, _], y: f32[B, D] shard[dp, _]) -> f32[] {
              param w: f32[D, D];
              let d = x @ w - y;
              return mean(d * d);
            }
            train net optimizer sgd(lr = {{lr.ToString(
                System.Globalization.CultureInfo.InvariantCulture
            )}}) precision {{precision}};
            """
        );
        return path;
    }

    /// <summary>Inputs, the weight (entries in [-1, 1]) and numpy's float64 gradient of the loss at it.</summary>
    private void LinearData()
    {
        Python.RunOk(
            """
            import numpy as np, sys
            d = sys.argv[1]; rng = np.random.default_rng(3)
            x = rng.standard_normal((8, 16)).astype(np.float32); y = rng.standard_normal((8, 16)).astype(np.float32)
            w = rng.uniform(-1, 1, (16, 16)).astype(np.float32)
            np.savez(d + '/in.npz', x=x, y=y); np.savez(d + '/w.npz', **{'net.w': w})
            r = x.astype(np.float64) @ w - y
            np.save(d + '/grad.npy', (2.0 / r.size) * x.astype(np.float64).T @ r)
            """,
            P("")
        );
    }

    private Dictionary<string, float[]> TrainLinear(string model, int steps, string backend = "cpu")
    {
        var r = Mplc.Run(
            "run",
            model,
            "--inputs",
            P("in.npz"),
            "--params",
            P("w.npz"),
            "--steps",
            steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--backend",
            backend,
            "--save-params",
            P("trained.npz"),
            "--out",
            P("out.npz")
        );
        Assert.True(r.ExitCode == 0, r.Stderr);
        var saved = ParallelCompiler
            .Runtime.IO.Npz.Read(P("trained.npz"))
            .ToDictionary(kv => kv.Key, kv => kv.Value.Array.F!);
        saved["loss"] = ParallelCompiler.Runtime.IO.Npz.Read(P("out.npz"))["loss"].Array.F!;
        return saved;
    }

    [Theory]
    [InlineData("bf16", "cpu", 2e-2)]
    [InlineData("bf16", "interp", 2e-2)]
    [InlineData("fp16", "cpu", 3e-3)]
    [InlineData("fp16", "interp", 3e-3)]
    [InlineData("bf16", "cuda-emu", 2e-2)]
    [InlineData("fp16", "cuda-emu", 3e-3)]
    public void MixedPrecisionGradientsMatchNumpyAndLandOnF32MasterWeights(string precision, string backend, double tol)
    {
        LinearData();
        var w = ParallelCompiler.Runtime.IO.Npz.Read(P("w.npz"))["net.w"].Array.F!;
        // fp16's first step overflows (a loss scale of 2^16 is beyond fp16) and is skipped; the second one trains.
        var trained = TrainLinear(Linear(precision), precision == "fp16" ? 2 : 1, backend)["net.w"];
        var want = ParallelCompiler.Runtime.IO.Npy.Read(P("grad.npy")).Array.F!;
        double scale = want.Max(v => Math.Abs(v));
        // An update of lr * g (about 1e-4) is below half a unit in the last place of a half-precision weight near
        // 0.5 (1e-3 in bf16, 1.2e-4 in fp16): only f32 master weights keep it.
        for (int i = 0; i < w.Length; i++)
        {
            double got = (w[i] - trained[i]) / 1e-3;
            Assert.True(Math.Abs(got - want[i]) <= tol * scale, $"[{i}]: gradient {got}, numpy {want[i]}");
        }
    }

    [Fact]
    public void Fp16SkipsAStepThatOverflowsThenCountsTheGoodOnes()
    {
        LinearData();
        var w = ParallelCompiler.Runtime.IO.Npz.Read(P("w.npz"))["net.w"].Array.F!;
        var one = TrainLinear(Linear("fp16", 0.1), 1);
        Assert.Equal(w, one["net.w"]); // skipped: the weight as it was, bit for bit
        Assert.Equal([0.5f], one["optimizer.loss_scale"]); // 2^15, in units of 2^16
        Assert.Equal([0f], one["optimizer.loss_scale_good_steps"]);
        var three = TrainLinear(Linear("fp16", 0.1), 3);
        Assert.Equal([0.5f], three["optimizer.loss_scale"]);
        Assert.Equal([2f], three["optimizer.loss_scale_good_steps"]);
        var loss = three["loss"];
        Assert.Equal(loss[0], loss[1]); // nothing changed in step 1
        Assert.True(loss[2] < loss[1], $"losses {string.Join(", ", loss)}");
    }

    [Fact]
    public void AMixedBf16TransformerKeepsF32WeightsAndGradientSumsAndEqualsOneDevice()
    {
        string path = P("gpt_mixed.mpl");
        File.WriteAllText(
            path,
            File.ReadAllText(Repo.Path("examples", "gpt.mpl"))
                .Replace("optimizer adam(lr = 3e-4);", "optimizer adam(lr = 3e-4) precision bf16;")
        );
        var ir = Mplc.Run("compile", path, "-D", "L=1");
        Assert.True(ir.ExitCode == 0, ir.Stderr);
        var lines = ir.Stdout.Split('\n');
        Assert.All(lines.Where(l => l.Contains("tensor.param")), l => Assert.DoesNotContain("bf16>", l));
        Assert.Contains(
            lines,
            l => l.Contains("tensor.matmul") && l.Contains("xbf16>, tensor<") && l.Contains("phase = \"backward\"")
        );
        var dpSums = lines.Where(l => l.Contains("dist.all_reduce") && l.Contains("[\"dp\"]")).ToList();
        Assert.NotEmpty(dpSums);
        Assert.All(dpSums, l => Assert.DoesNotContain("bf16", l));
        var r = Mplc.Run("run", path, "-D", "L=1", "--check");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("equals one device", r.Stdout);
    }

    [Fact]
    public void AnUnknownPrecisionIsAnError()
    {
        string path = P("bad.mpl");
        File.WriteAllText(
            path,
            "model m(x: f32[4]) -> f32[] { param w: f32[4]; return sum(x * w); }\n"
                + "train m optimizer sgd(lr = 0.1) precision f8;\n"
        );
        var r = Mplc.Run("compile", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.mpl:2:43: error: unknown precision 'f8' (known: bf16, fp16, f32)", r.Stderr);
        Assert.Contains("^~", r.Stderr);
    }

    private string Bf16Gpt()
    {
        string path = P("gpt_bf16.mpl");
        File.WriteAllText(path, File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace("f32", "bf16"));
        return path;
    }

    [Fact]
    public void ABf16TransformerTrainsOnItsMeshAsOnOneDevice()
    {
        var r = Mplc.Run("run", Bf16Gpt(), "-D", "L=1", "--check");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("check: gpt.wte.adam_m: largest relative difference", r.Stdout);
        Assert.Contains("equals one device", r.Stdout);
    }

    [Fact]
    public void TheCompiledKernelsAgreeWithTheInterpreterInBf16()
    {
        string o1 = P("cpu.npz"),
            o2 = P("interp.npz");
        foreach (var (backend, o) in new[] { ("cpu", o1), ("interp", o2) })
        {
            var r = Mplc.Run(
                "run",
                Bf16Gpt(),
                "-D",
                "L=1",
                "--backend",
                backend,
                "--steps",
                "2",
                "--out",
                o,
                "--mesh",
                "pp=1,dp=2,tp=2"
            );
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        var a = ParallelCompiler.Runtime.IO.ArrayFile.Read(o1)["loss"].Array;
        var b = ParallelCompiler.Runtime.IO.ArrayFile.Read(o2)["loss"].Array;
        Assert.True(ParallelCompiler.Tests.Sharding.Distributed.MaxRelativeError(b, a) <= 1e-2);
    }
}
