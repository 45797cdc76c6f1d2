using ParallelCompiler.Driver;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace ParallelCompiler.Tests.Interp;

/// <summary>
/// <c>mplc run</c> on the example models, end to end through the front end, the default pipeline and the
/// interpreter, against numpy versions of the same models written from their source (tests/oracle/models.py).
/// </summary>
public sealed class ExampleModelTests(ITestOutputHelper output) : IDisposable
{
    // The consts of examples/gpt.mpl; a change there must show up here as a failure, not be absorbed.
    private const int B = 8,
        S = 32,
        D = 64,
        V = 128,
        L = 4;

    private readonly string dir = Directory.CreateTempSubdirectory("pc-models-").FullName;
    private readonly Random rng = new(20240611);

    /// <summary>Removes the test's temporary directory.</summary>
    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    /// <summary>gelu(x @ w1 + b1) @ w2 with every parameter from the file.</summary>
    [Fact]
    public void Mlp_matches_numpy()
    {
        var inputs = new Dictionary<string, NDArray> { ["x"] = Normal([8, 64], 1) };
        var ps = new Dictionary<string, NDArray>
        {
            ["mlp.w1"] = Normal([64, 256]),
            ["mlp.b1"] = Normal([256]),
            ["mlp.w2"] = Normal([256, 64]),
        };
        RunAndCompare("mlp", inputs, ps, ps, 1e-5);
    }

    /// <summary>The transformer's loss with every parameter from the file, layer norms' scales and shifts
    /// included.</summary>
    [Fact]
    public void Gpt_matches_numpy()
    {
        var ps = GptParams(defaultNorms: false);
        RunAndCompare("gpt", GptInputs(), ps, ps, 1e-5);
    }

    /// <summary>
    /// Parameters missing from the file are initialised: for the layer norms (ones and zeros) numpy can check the
    /// result; for a file with a single weight the run must still succeed.
    /// </summary>
    [Fact]
    public void Gpt_initialises_missing_parameters()
    {
        var inputs = GptInputs();
        var all = GptParams(defaultNorms: true);
        var withoutNorms = all.Where(kv => !IsNorm(kv.Key)).ToDictionary();
        Assert.Equal(L * 4, all.Count - withoutNorms.Count);
        RunAndCompare("gpt", inputs, withoutNorms, all, 1e-5);

        Npz.Write(P("one.npz"), new Dictionary<string, NDArray> { ["gpt.wte"] = all["gpt.wte"] });
        var (code, _, stderr) = Mplc(
            "run",
            Model("gpt"),
            "--inputs",
            P("inputs.npz"),
            "--params",
            P("one.npz"),
            "--out",
            P("one_out.npz")
        );
        Assert.True(code == 0, $"mplc run exited with {code}:\n{stderr}");
        var loss = Npz.Read(P("one_out.npz"))["out"].Array;
        Assert.True(
            loss.Shape.Length == 0 && float.IsFinite(loss.F![0]),
            $"expected a finite scalar loss, got {loss.TypeString} {loss.GetDouble(0)}"
        );
    }

    /// <summary>A key that is not a parameter of the model is an error naming it, not silently ignored.</summary>
    [Fact]
    public void Gpt_rejects_unknown_parameter()
    {
        var ps = GptParams(defaultNorms: false);
        ps[$"gpt.block.{L}.g1"] = Normal([D]);
        ExpectUserError(GptInputs(), ps, "params.npz", $"unknown parameter 'gpt.block.{L}.g1'");
    }

    /// <summary>A parameter of the wrong shape is an error giving the expected type and the shape found.</summary>
    [Fact]
    public void Gpt_rejects_parameter_of_wrong_shape()
    {
        var ps = GptParams(defaultNorms: false);
        ps["gpt.wpe"] = Normal([S / 2, D]);
        ExpectUserError(
            GptInputs(),
            ps,
            "params.npz",
            $"parameter 'gpt.wpe' must be f32[{S}, {D}], found shape [{S / 2}, {D}]"
        );
    }

    /// <summary>numpy's default int64 for i32 token ids is an error with the fix, not a silent conversion.</summary>
    [Fact]
    public void Gpt_rejects_int64_tokens()
    {
        Npz.Write(P("inputs32.npz"), GptInputs());
        // The runtime writes only the compiler's element types; numpy makes the int64 file a user would have.
        Python.RunOk(
            "import sys, numpy as np; z = dict(np.load(sys.argv[1])); z['tokens'] = "
                + "z['tokens'].astype(np.int64); np.savez(sys.argv[2], **z)",
            P("inputs32.npz"),
            P("inputs.npz")
        );
        Npz.Write(P("params.npz"), GptParams(defaultNorms: false));
        var (code, _, stderr) = Mplc(
            "run",
            Model("gpt"),
            "--inputs",
            P("inputs.npz"),
            "--params",
            P("params.npz"),
            "--out",
            P("out.npz")
        );
        Assert.True(code == 1, $"expected exit code 1, got {code}:\n{stderr}");
        Assert.Contains(
            $"inputs.npz: input 'tokens' must be i32[{B}, {S}], found dtype int64 (convert with "
                + $".astype(np.int32))",
            stderr
        );
        Assert.False(File.Exists(P("out.npz")), "a failed run must not write its output");
    }

    private void ExpectUserError(
        Dictionary<string, NDArray> inputs,
        Dictionary<string, NDArray> ps,
        string file,
        string message
    )
    {
        Npz.Write(P("inputs.npz"), inputs);
        Npz.Write(P("params.npz"), ps);
        var (code, _, stderr) = Mplc(
            "run",
            Model("gpt"),
            "--inputs",
            P("inputs.npz"),
            "--params",
            P("params.npz"),
            "--out",
            P("out.npz")
        );
        Assert.True(code == 1, $"expected exit code 1, got {code}:\n{stderr}");
        Assert.Contains($"{file}: {message}", stderr);
        Assert.DoesNotContain("internal compiler error", stderr);
    }

    /// <summary>
    /// Runs <paramref name="model"/> with mplc on <paramref name="given"/> parameters and models.py on
    /// <paramref name="full"/> ones (which spell out what mplc should have initialised), and compares the results.
    /// </summary>
    private void RunAndCompare(
        string model,
        Dictionary<string, NDArray> inputs,
        Dictionary<string, NDArray> given,
        Dictionary<string, NDArray> full,
        double tol
    )
    {
        Npz.Write(P("inputs.npz"), inputs);
        Npz.Write(P("params.npz"), given);
        Npz.Write(P("params_full.npz"), full);
        var (code, stdout, stderr) = Mplc(
            "run",
            Model(model),
            "--inputs",
            P("inputs.npz"),
            "--params",
            P("params.npz"),
            "--out",
            P("out.npz")
        );
        Assert.True(code == 0, $"mplc run exited with {code}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        Python.RunOk(
            NumpyOracle.RunFile,
            Repo.Path("tests", "oracle", "models.py"),
            model,
            P("inputs.npz"),
            P("params_full.npz"),
            P("expected.npz")
        );
        var got = Npz.Read(P("out.npz"))["out"].Array;
        var expected = Npz.Read(P("expected.npz"))["out"].Array;
        double err = InterpreterNumpyTests.AssertClose(expected, got, tol, $"mplc run {model} against models.py");
        output.WriteLine($"{model}: {expected.TypeString}, max relative error {err:E2} (tolerance {tol:E0})");
    }

    private static (int Code, string Stdout, string Stderr) Mplc(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = Cli.Main(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string Model(string name) => Repo.Path("examples", name + ".mpl");

    private static bool IsNorm(string path) => path.Split('.')[^1] is "g1" or "b1" or "g2" or "b2";

    private Dictionary<string, NDArray> GptInputs() =>
        new() { ["tokens"] = Ids([B, S], V), ["labels"] = Ids([B, S], V) };

    /// <summary>
    /// Every parameter of examples/gpt.mpl. Norm scales and shifts are random unless <paramref name="defaultNorms"/>,
    /// which gives them the values of their initialisers (ones, zeros).
    /// </summary>
    private Dictionary<string, NDArray> GptParams(bool defaultNorms)
    {
        var p = new Dictionary<string, NDArray> { ["gpt.wte"] = Normal([V, D]), ["gpt.wpe"] = Normal([S, D]) };
        for (int i = 0; i < L; i++)
        {
            string b = $"gpt.block.{i}.";
            foreach (var (name, init) in new[] { ("g1", 1f), ("b1", 0f), ("g2", 1f), ("b2", 0f) })
                p[b + name] = defaultNorms ? Fill([D], init) : Normal([D], 0.1, init);
            foreach (var w in new[] { "wq", "wk", "wv", "wo" })
                p[b + "attention." + w] = Normal([D, D]);
            p[b + "mlp.w1"] = Normal([D, 4 * D]);
            p[b + "mlp.w2"] = Normal([4 * D, D]);
        }
        return p;
    }

    private NDArray Normal(long[] shape, double scale = 0.1, double shift = 0)
    {
        var a = new float[NDArray.ShapeSize(shape)];
        for (int i = 0; i < a.Length; i++)
            a[i] = (float)(shift + scale * OpCases.Normal(rng));
        return NDArray.FromFloats(shape, a);
    }

    private static NDArray Fill(long[] shape, float v)
    {
        var a = new float[NDArray.ShapeSize(shape)];
        Array.Fill(a, v);
        return NDArray.FromFloats(shape, a);
    }

    private NDArray Ids(long[] shape, int bound)
    {
        var a = new int[NDArray.ShapeSize(shape)];
        for (int i = 0; i < a.Length; i++)
            a[i] = rng.Next(bound);
        return NDArray.FromInts(shape, a);
    }
}
