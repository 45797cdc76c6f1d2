using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using FsCheck;
using FsCheck.Fluent;
using ParallelCompiler.Mplrun;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Syntax;

/// <summary>
/// The second round of bad input: edited bundles, nonsense that used to be accepted silently, several mistakes in
/// one file, huge names, outputs that cannot be written, unknown options. Every case exits 1 with the project's
/// own message; never 2, never a stack trace.
/// </summary>
public sealed class BadInputRoundTwoTests() : TempDirTest("mpl-bad2")
{
    private static (int Code, string Out, string Err) Mplrun(params string[] args) => MplrunInProcess.Run(args);

    private static Mplc.Result Fails(string source, params string[] extra)
    {
        var r = Mplc.CompileSource(source, extra);
        Assert.True(r.ExitCode == 1, $"expected exit 1, got {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        Assert.DoesNotContain("   at ", r.Stderr);
        return r;
    }

    private const string Net = """
        mesh grid[dp = 2];
        model net(x: f32[8, 16] shard[dp, _]) -> f32[] {
          param w: f32[16, 16];
          return sum(sum(x @ w, 1), 0);
        }

        """;

    [Theory]
    [InlineData("sgd(lr = -0.1)", "t.mpl:6:30: error: sgd: lr must be a finite number above 0, got -0.1")]
    [InlineData("sgd(lr = 0.1, momentum = 2.0)", "sgd: momentum must be at least 0 and below 1, got 2")]
    [InlineData("sgd(lr = 0.1, weight_decay = -1)", "sgd: weight_decay must be a finite number of at least 0")]
    [InlineData("adam(lr = 1e-3, beta1 = 1.0)", "adam: beta1 must be at least 0 and below 1, got 1")]
    [InlineData("adam(lr = 1e-3, beta2 = -0.5)", "adam: beta2 must be at least 0 and below 1, got -0.5")]
    [InlineData("adam(lr = 1e-3, eps = 0)", "adam: eps must be a finite number above 0, got 0")]
    public void OptimizerSettingsOutOfRangeAreErrors(string optimizer, string message)
    {
        var r = Fails(Net + $"train net optimizer {optimizer};\n");
        Assert.Contains(message, r.Stderr);
    }

    [Fact]
    public void FloatOverflowInConstantFoldingIsAnError()
    {
        var r = Fails("mesh grid[dp = 2];\nmodel m(x: f32[8]) -> f32[8] {\n  return x * (1.0e308 * 10.0);\n}\n");
        Assert.Contains("t.mpl:3:23: error: float overflow in a compile-time expression", r.Stderr);
    }

    [Theory]
    [InlineData("f32", "1e300", "t.mpl:3:14: error: 1E+300 does not fit in f32: it would be infinite")]
    [InlineData("f16", "70000.0", "t.mpl:3:14: error: 70000 does not fit in f16: it would be infinite")]
    public void ANumberBeyondTheTensorTypeIsAnError(string dtype, string number, string message)
    {
        var r = Fails($"mesh grid[dp = 2];\nmodel m(x: {dtype}[8]) -> {dtype}[8] {{\n  return x * {number};\n}}\n");
        Assert.Contains(message, r.Stderr);
    }

    [Fact]
    public void IndependentErrorsAreAllReportedWithoutCascades()
    {
        var r = Fails(
            """
            mesh grid[dp = 2, tp = 2];
            const B = 8; const D = 64;
            layer dense(x: f32[B, D]) -> f32[B, D] {
              param w: f32[D, D] shard[tp];
              return x @ w;
            }
            model net(x: f32[B, D] shard[dp, _]) -> f32[] {
              let big = x * (1.0e308 * 10.0);
              let h = dense(x);
              let y = h + big;
              for i in 0..3 { h = dense(h); }
              return sum(sum(y + h, 1), 0);
            }
            train net optimizer sgd(lr = -0.1, momentum = 2.0);

            """
        );
        var errors = r.Stderr.Split('\n').Where(l => l.Contains(": error: ")).ToList();
        Assert.Collection(
            errors,
            e => Assert.Contains("t.mpl:8:26: error: float overflow", e),
            e => Assert.Contains("t.mpl:4:22: error: shard[...] has 1 entries but f32[64, 64] has 2", e),
            e => Assert.Contains("t.mpl:14:30: error: sgd: lr must be", e),
            e => Assert.Contains("t.mpl:14:47: error: sgd: momentum must be", e)
        );
    }

    [Fact]
    public void AHugeIdentifierIsShortenedInTheMessage()
    {
        string name = new('a', 200_000);
        var r = Fails($"mesh grid[dp = 2];\nmodel m(x: f32[4]) -> f32[4] {{\n  return {name} + x;\n}}\n");
        Assert.Contains("t.mpl:3:10: error: 'aaaa", r.Stderr);
        Assert.Contains("aaaa...aaaa", r.Stderr);
        Assert.Contains("aaaa' (200000 characters) is not defined", r.Stderr);
        Assert.All(r.Stderr.Split('\n'), l => Assert.True(l.Length <= 200, $"a line of {l.Length} characters"));
    }

    [Fact]
    public void OutputsThatCannotBeWrittenAreSaidSo()
    {
        string mlp = Repo.Path("examples", "mlp.mpl");
        string folder = P("folder");
        Directory.CreateDirectory(folder);
        string missing = P("no/such/folder/out");
        string file = P("a-file");
        File.WriteAllText(file, "");
        (string[] Args, string Message)[] cases =
        [
            (["compile", mlp, "-o", folder], $"-o: '{folder}' is a folder; give the name of a file to write"),
            (["compile", mlp, "-o", missing + ".mplir"], "does not exist (create it first)"),
            (["run", mlp, "--out", folder], $"--out: '{folder}' is a folder"),
            (["run", mlp, "--out", missing + ".npz"], "--out: the folder"),
            (["run", mlp, "--trace", missing + ".json"], "--trace: the folder"),
            // A folder (or a name without an array file's extension) is a sharded checkpoint; a file there is not.
            (
                ["run", Repo.Path("examples", "classifier.mpl"), "--save-params", file],
                $"--save-params: '{file}' is a file; give the name of a folder"
            ),
            (["compile", mlp, "--dump-dir", mlp], "--dump-dir: '"),
        ];
        foreach (var (args, message) in cases)
        {
            var r = Mplc.Run(args);
            Assert.True(r.ExitCode == 1, $"{string.Join(" ", args)}: exit {r.ExitCode}\n{r.Stderr}");
            Assert.Contains(message, r.Stderr);
            Assert.DoesNotContain("Access to the path", r.Stderr);
            Assert.DoesNotContain("Could not find a part of the path", r.Stderr);
            Assert.DoesNotContain("note: running", r.Stderr); // refused before any work
        }
    }

    [Fact]
    public void AnUnknownOptionPointsAtHelpInsteadOfPrintingIt()
    {
        var r = Mplc.Run("compile", "--frobnicate", Repo.Path("examples", "mlp.mpl"));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal(
            ["error: unknown option '--frobnicate'", "run 'mplc compile --help' for the options"],
            r.Stderr.TrimEnd().Split('\n')
        );
        var bare = Mplc.Run("frobnicate");
        Assert.Equal(1, bare.ExitCode);
        Assert.EndsWith("run 'mplc --help' for the options", bare.Stderr.TrimEnd());
        var (code, _, err) = Mplrun("x.mplc", "--frobnicate");
        Assert.Equal(1, code);
        Assert.Contains("unknown option '--frobnicate'", err);
        Assert.Contains("run 'mplrun --help' for the options", err);
        Assert.DoesNotContain("usage:", err);
    }

    private string CompiledBundle()
    {
        string path = P("gpt.mplc");
        if (!Directory.Exists(path))
        {
            var r = Mplc.Run("compile", Repo.Path("examples", "gpt.mpl"), "-D", "L=2", "-o", path);
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        return path;
    }

    /// <summary>A copy of the bundle with its manifest edited and, unless <paramref name="keepChecksum"/>, its
    /// checksum made to match, so that the manifest's own checks are what refuses it.</summary>
    private string Edited(string name, Action<JsonNode> edit, bool keepChecksum = false)
    {
        string from = CompiledBundle(),
            to = P(name + ".mplc");
        if (Directory.Exists(to))
            Directory.Delete(to, true);
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
            File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(to, "manifest.json")))!;
        edit(json);
        string text = json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(Path.Combine(to, "manifest.json"), text);
        if (!keepChecksum)
            File.WriteAllText(Path.Combine(to, Bundle.ChecksumFile), Bundle.Sha256(text));
        return to;
    }

    [Theory]
    [InlineData("axis", "manifest: schedule.axis: 'pp' is not an axis of the mesh (px, dp, tp, mb)")]
    [InlineData("shape", "manifest: inputs[0] 'tokens': dimension 0 (9) does not split over dp x mb (8 devices)")]
    [InlineData("layout", "manifest: params[0] 'gpt.wte': layout names axis 'zz', which the mesh lacks")]
    [InlineData("dtype", "dtype f16, but the program's tensor.param at")]
    [InlineData("kernel", "manifest: kernels: '")]
    [InlineData("file", "manifest: files: '../manifest.json' is not a file name inside the bundle")]
    [InlineData("raw", "manifest.json was edited or damaged after it was written")]
    public void AnEditedManifestIsRefusedNamingTheField(string edit, string message)
    {
        string b = Edited(
            edit,
            m =>
            {
                switch (edit)
                {
                    case "axis" or "raw":
                        m["mesh"]!["axes"]![0] = "px";
                        break;
                    case "shape":
                        m["inputs"]![0]!["shape"]![0] = 9;
                        break;
                    case "layout":
                        m["params"]![0]!["layout"]![0] = new JsonArray("zz");
                        break;
                    case "dtype":
                        m["params"]![1]!["dtype"] = "f16";
                        break;
                    case "kernel":
                        m["kernels"]!.AsArray().RemoveAt(m["kernels"]!.AsArray().Count - 1);
                        break;
                    case "file":
                        m["files"]!.AsObject()["../manifest.json"] = "00";
                        break;
                }
            },
            keepChecksum: edit == "raw"
        );
        foreach (var args in new[] { new[] { b }, ["--verify", b] })
        {
            var (code, _, err) = Mplrun(args);
            Assert.True(code == 1, $"mplrun {string.Join(" ", args)}: exit {code}\n{err}");
            Assert.Contains($"error: bundle '{b}': ", err);
            Assert.Contains(message, err);
        }
    }

    [Fact]
    public void VerifyChecksASoundBundleWithoutRunningIt()
    {
        var (code, stdout, err) = Mplrun("--verify", CompiledBundle());
        Assert.True(code == 0, err);
        Assert.Contains("is sound: gpt, mesh pp=2,dp=2,tp=2, 2 input(s)", stdout);
        Assert.DoesNotContain("loss", stdout);
    }

    /// <summary>
    /// Random edits of random fields of a real manifest (numbers changed, strings renamed, entries dropped), with
    /// the checksum made to match: mplrun either runs (the edit did not matter) or exits 1, never 2.
    /// </summary>
    [FsCheck.Xunit.Property(MaxTest = 25)]
    public Property RandomManifestEditsExitOneOrRunNeverTwo(int seed)
    {
        int n = Interlocked.Increment(ref _edits);
        var rng = new Random(seed);
        string b = Edited(
            $"random-{n}",
            m =>
            {
                var leaves = Leaves(m).Where(x => x.Path is not "format").ToList();
                var (parent, key, value, _) = leaves[rng.Next(leaves.Count)];
                JsonNode? replacement = value switch
                {
                    JsonValue v when v.TryGetValue(out long l) => l + rng.Next(-3, 4) * (1 + l / 2),
                    JsonValue v when v.TryGetValue(out double d) => d * rng.Next(-2, 3),
                    JsonValue v when v.TryGetValue(out string? s) => rng.Next(3) switch
                    {
                        0 => s + "x",
                        1 => "",
                        _ => "pp",
                    },
                    _ => null,
                };
                if (parent is JsonArray a && rng.Next(4) == 0)
                    a.RemoveAt((int)key);
                else if (parent is JsonArray arr)
                    arr[(int)key] = replacement;
                else
                    parent[(string)key] = replacement;
            }
        );
        var (code, _, err) = Mplrun(b);
        Directory.Delete(b, true);
        return (code is 0 or 1).Label($"exit {code}: {err}");
    }

    private int _edits;

    private static IEnumerable<(JsonNode Parent, object Key, JsonNode? Value, string Path)> Leaves(
        JsonNode node,
        string path = ""
    )
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o.ToList())
                    if (v is JsonValue || v == null)
                        yield return (o, k, v, k);
                    else
                        foreach (var x in Leaves(v, k))
                            yield return x;
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                    if (a[i] is JsonValue || a[i] == null)
                        yield return (a, i, a[i], path);
                    else
                        foreach (var x in Leaves(a[i]!, path))
                            yield return x;
                break;
        }
    }
}
