using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>
/// Classes split over a mesh axis: a softmax and a cross-entropy whose classes each device holds a block of
/// exchange maxima and sums instead of gathering the classes (Megatron-LM's vocabulary-parallel cross-entropy).
/// numpy checks the values and one training step on every back end; the tied-embedding transformer equals one
/// device without gathering its logits.
/// </summary>
public class VocabularyParallelTests() : TempDirTest("mplc-vocab")
{
    private const string Lm = """
        mesh grid[dp = 2, tp = 2];
        const B = 4; const D = 8; const V = 32;
        model lm(x: f32[B, D] shard[dp, _], labels: i32[B] shard[dp]) -> f32[] {
          param w: f32[D, V] shard[_, tp];
          return cross_entropy(x @ w, labels);
        }
        train lm optimizer sgd(lr = 0.5);
        """;

    private string Write(string name, string source)
    {
        string path = P(name);
        File.WriteAllText(path, source);
        return path;
    }

    /// <summary>Inputs, the weight, and numpy's float64 loss and weight after one sgd step.</summary>
    private void LmData()
    {
        Python.RunOk(
            """
            import numpy as np, sys
            d = sys.argv[1]; rng = np.random.default_rng(5)
            x = rng.standard_normal((4, 8)).astype(np.float32)
            w = rng.standard_normal((8, 32)).astype(np.float32)
            labels = np.array([3, 31, 16, 0], dtype=np.int32)
            np.savez(d + '/in.npz', x=x, labels=labels); np.savez(d + '/w.npz', **{'lm.w': w})
            z = x.astype(np.float64) @ w
            m = z.max(axis=1, keepdims=True); e = np.exp(z - m); s = e.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) + m[:, 0] - z[np.arange(4), labels])
            p = e / s; p[np.arange(4), labels] -= 1
            np.save(d + '/loss.npy', np.array([loss])); np.save(d + '/w1.npy', w - 0.5 * x.astype(np.float64).T @ p / 4)
            """,
            P("")
        );
    }

    [Theory]
    [InlineData("interp")]
    [InlineData("cpu")]
    [InlineData("cuda-emu")]
    public void ACrossEntropyOverSplitClassesAndItsGradientMatchNumpy(string backend)
    {
        LmData();
        var r = Mplc.Run(
            "run",
            Write("lm.mpl", Lm),
            "--inputs",
            P("in.npz"),
            "--params",
            P("w.npz"),
            "--backend",
            backend,
            "--save-params",
            P("trained.npz"),
            "--out",
            P("out.npz")
        );
        Assert.True(r.ExitCode == 0, r.Stderr);
        float loss = ParallelCompiler.Runtime.IO.Npz.Read(P("out.npz"))["loss"].Array.F![0];
        double want = ParallelCompiler.Runtime.IO.Npy.Read(P("loss.npy")).Array.F![0];
        Assert.True(Math.Abs(loss - want) <= 1e-5 * Math.Abs(want), $"loss {loss}, numpy {want}");
        var w1 = ParallelCompiler.Runtime.IO.Npz.Read(P("trained.npz"))["lm.w"].Array.F!;
        var wantW = ParallelCompiler.Runtime.IO.Npy.Read(P("w1.npy")).Array.F!;
        for (int i = 0; i < w1.Length; i++)
            Assert.True(Math.Abs(w1[i] - wantW[i]) <= 1e-5 * (1 + Math.Abs(wantW[i])), $"[{i}]: {w1[i]}, {wantW[i]}");
    }

    [Fact]
    public void TheSplitClassesAreExchangedNotGathered()
    {
        var r = Mplc.Run("compile", Write("lm.mpl", Lm));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n');
        Assert.DoesNotContain(lines, l => l.Contains("dist.all_gather"));
        Assert.DoesNotContain(lines, l => l.Contains("tensor.cross_entropy") || l.Contains("tensor.softmax"));
        // Forward and backward each: the maximum, the sum of exponentials; the forward also the labels' logits.
        Assert.Equal(2, lines.Count(l => l.Contains("dist.all_reduce") && l.Contains("reduction = \"max\"")));
        Assert.Contains(lines, l => l.Contains("tensor.one_hot %labels") && l.Contains("total = 32"));
    }

    [Fact]
    public void ASoftmaxOverSplitClassesMatchesNumpy()
    {
        string path = Write(
            "sm.mpl",
            """
            mesh grid[tp = 4];
            model sm(x: f32[3, 16] shard[_, tp]) -> f32[3, 16] shard[_, tp] {
              return softmax(x * 4.0, axis = -1);
            }
            """
        );
        Python.RunOk(
            """
            import numpy as np, sys
            x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
            np.savez(sys.argv[1] + '/x.npz', x=x)
            z = 4.0 * x.astype(np.float64); e = np.exp(z - z.max(axis=1, keepdims=True))
            np.save(sys.argv[1] + '/want.npy', e / e.sum(axis=1, keepdims=True))
            """,
            P("")
        );
        var r = Mplc.Run("run", path, "--inputs", P("x.npz"), "--out", P("got.npy"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var got = ParallelCompiler.Runtime.IO.Npy.Read(P("got.npy")).Array.F!;
        var want = ParallelCompiler.Runtime.IO.Npy.Read(P("want.npy")).Array.F!;
        for (int i = 0; i < got.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) <= 1e-6, $"[{i}]: {got[i]}, numpy {want[i]}");
        Assert.DoesNotContain("dist.all_gather", Mplc.Run("compile", path).Stdout);
    }

    [Fact]
    public void ATiedTransformerWithAVocabularySplitTableEqualsOneDeviceWithoutGatheringItsLogits()
    {
        string path = Write(
            "gpt.mpl",
            File.ReadAllText(Repo.Path("examples", "gpt.mpl"))
                .Replace("param wte: f32[V, D];", "param wte: f32[V, D] shard[tp, _];")
        );
        var ir = Mplc.Run("compile", path, "-D", "L=2");
        Assert.True(ir.ExitCode == 0, ir.Stderr);
        // The table is gathered for the embedding, but no logits ([.., V] activations, V = 128) are.
        var gathers = ir.Stdout.Split('\n').Where(l => l.Contains("dist.all_gather")).ToList();
        Assert.Contains(gathers, l => l.Contains("%gpt.wte"));
        Assert.DoesNotContain(gathers, l => l.Split("->")[1].Contains("x128xf32>"));
        var r = Mplc.Run("run", path, "-D", "L=2", "--steps", "2", "--check");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("check: mesh pp=2,dp=2,tp=2 equals one device", r.Stdout);
    }

    /// <summary>A masked (-inf) logit at a label: one device's loss is infinite, and so is the split one (the
    /// one-hot row's zeros times -inf would make it NaN); without one, the split loss is one device's bit for
    /// bit.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AMaskedLogitAtALabelGivesTheInfiniteLossOfOneDevice(bool masked)
    {
        string path = Write(
            "ce.mpl",
            """
            mesh grid[tp = 4];
            model ce(z: f32[4, 16] shard[_, tp], labels: i32[4]) -> f32[] {
              return cross_entropy(z, labels);
            }
            """
        );
        // Row 1's logits masked as causal_mask masks them (-inf beyond class 1); its label 9 (masked) or 1.
        Python.RunOk(
            $$"""
            import numpy as np, sys
            z = np.random.default_rng(4).standard_normal((4, 16)).astype(np.float32)
            z[1, 2:] = -np.inf
            labels = np.array([0, {{(masked ? 9 : 1)}}, 2, 3], dtype=np.int32)
            np.savez(sys.argv[1] + '/in.npz', z=z, labels=labels)
            """,
            P("")
        );
        float Loss(params string[] extra)
        {
            var r = Mplc.Run(["run", path, "--inputs", P("in.npz"), "--out", P("out.npz"), .. extra]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return ParallelCompiler.Runtime.IO.Npz.Read(P("out.npz")).Values.Single().Array.F![0];
        }
        Assert.Contains("reduction = \"max\"", Mplc.Run("compile", path).Stdout);
        float one = Loss("--mesh", "tp=1"),
            split = Loss();
        if (masked)
            Assert.True(float.IsPositiveInfinity(one), $"one device {one}");
        else
            Assert.True(float.IsFinite(one), $"one device {one}");
        Assert.Equal(BitConverter.SingleToInt32Bits(one), BitConverter.SingleToInt32Bits(split));
    }

    [Fact]
    public void ALabelOutsideTheClassesIsAnErrorOnTheSplitPath()
    {
        Python.RunOk(
            """
            import numpy as np, sys
            x = np.zeros((4, 8), dtype=np.float32)
            np.savez(sys.argv[1] + '/bad.npz', x=x, labels=np.array([0, 5, 32, 1], dtype=np.int32))
            """,
            P("")
        );
        var r = Mplc.Run("run", Write("lm.mpl", Lm), "--inputs", P("bad.npz"), "--backend", "interp");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("one_hot: label 32 at position [0] is outside the 32 classes", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }
}
