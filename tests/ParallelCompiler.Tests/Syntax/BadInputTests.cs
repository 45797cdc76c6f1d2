using System.Text;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Syntax;

/// <summary>Bad input never crashes, hangs or overflows the stack: each case exits 1 with a located, clear
/// error.</summary>
public class BadInputTests
{
    private const string Mesh = "mesh grid[dp = 2, tp = 2];\n";

    private static string Model(string body, string args = "x: f32[8, 64]", string result = "f32[8, 64]") =>
        Mesh + $"model m({args}) -> {result} {{\n{body}\n}}\n";

    private static Mplc.Result Fails(string source, params string[] extra)
    {
        var r = Mplc.CompileSource(source, extra);
        Assert.True(r.ExitCode == 1, $"expected exit 1, got {r.ExitCode}\nstdout: {r.Stdout}\nstderr: {r.Stderr}");
        Assert.DoesNotContain("   at ", r.Stderr); // no stack trace
        Assert.DoesNotContain("internal compiler error", r.Stderr);
        return r;
    }

    [Fact]
    public void TwentyThousandNestedParentheses()
    {
        string e = new string('(', 20000) + "x" + new string(')', 20000);
        var r = Fails(Model($"return {e};"));
        Assert.Contains("error: expression nested more than 1000 levels deep", r.Stderr);
    }

    [Fact]
    public void LongOperatorChainsAndUnaryRuns()
    {
        var chain = string.Join(" + ", Enumerable.Repeat("x", 5000));
        Assert.Contains("more than 1000 chained operators", Fails(Model($"return {chain};")).Stderr);
        Assert.Contains("nested more than 1000 levels deep", Fails(Model($"return {new string('-', 20000)}x;")).Stderr);
    }

    [Fact]
    public void BinaryGarbage()
    {
        var rng = new Random(7);
        var bytes = new byte[4096];
        rng.NextBytes(bytes);
        var r = Fails(Encoding.Latin1.GetString(bytes));
        Assert.Contains("t.mpl:1:", r.Stderr);
        Assert.Contains("error:", r.Stderr);
        Assert.True(r.Stderr.Split('\n').Length < 100, "garbage must not flood the output");
    }

    [Fact]
    public void UnterminatedComment()
    {
        var r = Fails("const A = 1;\n/* never closed\nmodel m() -> f32[] { return 1; }\n");
        Assert.Contains("t.mpl:2:1: error: unterminated comment", r.Stderr);
    }

    [Fact]
    public void UnterminatedString() =>
        Assert.Contains(
            "unterminated string",
            Fails("@pipeline(axis = dp, schedule = \"gpipe)\nmodel m() -> f32[] { return 1; }").Stderr
        );

    [Fact]
    public void BillionIterationLoop()
    {
        var r = Fails(Model("for i in 0..1000000000 { x = relu(x); }\nreturn x;"));
        Assert.Contains(
            "this loop unrolls 1000000000 iterations; a program may unroll at most 1000000 in all",
            r.Stderr
        );
    }

    [Fact]
    public void RecursionBetweenLayers()
    {
        string src =
            Mesh
            + """
                layer a(x: f32[4]) -> f32[4] { return b(x); }
                layer b(x: f32[4]) -> f32[4] { return a(x); }
                model m(x: f32[4]) -> f32[4] { return a(x); }
                """;
        Assert.Contains("recursive layer call: m -> a -> b -> a", Fails(src).Stderr);
    }

    [Fact]
    public void DivisionByZeroInConst()
    {
        var r = Fails("const A = 4;\nconst B = A / (A - 4);\nmodel m(x: f32[B]) -> f32[B] { return x; }\n");
        Assert.Contains("t.mpl:2:13: error: division by zero in a compile-time expression", r.Stderr);
    }

    [Fact]
    public void ZeroSizedMeshAxis()
    {
        Assert.Contains(
            "mesh axis 'tp' has size 0; sizes must be at least 1",
            Fails("mesh grid[dp = 2, tp = 0];\nmodel m(x: f32[4]) -> f32[4] { return x; }").Stderr
        );
        Assert.Contains("--mesh: axis 'dp' has size 0", Fails(Model("return x;"), "--mesh", "dp=0").Stderr);
    }

    [Fact]
    public void ErrorFormatHasLineColumnSourceAndCaret()
    {
        var r = Fails(Model("let y = x @ x;\nreturn y;"));
        var lines = r.Stderr.Split('\n');
        Assert.Matches(
            @"t\.mpl:3:11: error: matmul: contracting dimensions differ: f32\[8, 64\] @ f32\[8, 64\] \(64 vs 8\)$",
            lines[0]
        );
        Assert.Equal("let y = x @ x;", lines[1]);
        Assert.Equal("          ^", lines[2]);
    }

    [Fact]
    public void SeveralSyntaxErrorsAtOnce()
    {
        var r = Fails("const A = ;\nconst B = 2\nmodel m(x: f32[4]) -> f32[4] { return x }\n");
        Assert.True(r.Stderr.Split('\n').Count(l => l.Contains(": error: ")) >= 2, r.Stderr);
    }

    [Theory]
    [InlineData("let y = x + w;\nreturn y;", "'w' is not defined")]
    [InlineData("return foo(x);", "unknown function 'foo'")]
    [InlineData("return relu(x, x);", "relu takes at most 1 argument(s), got 2")]
    [InlineData("let y = x;\nlet y = x;\nreturn y;", "'y' is already defined in this scope")]
    [InlineData("z = x;\nreturn x;", "'z' is not defined; use 'let z = ...'")]
    [InlineData("return x;\nlet y = x;", "unreachable statement after return")]
    [InlineData("let y = x;", "'m' ends without a return statement")]
    [InlineData("return sum(x, 0);", "'m' returns f32[64] but is declared to return f32[8, 64]")]
    [InlineData(
        "return reshape(x, [3, 7]);",
        "reshape: cannot reshape f32[8, 64] (512 elements) to [3, 7] (21 elements)"
    )]
    [InlineData("return softmax(x, axis = 2);", "softmax: axis 2 is out of range for a tensor of rank 2")]
    [InlineData("param w: f32[64, 10] shard[_, pp];\nreturn x;", "mesh 'grid' has no axis 'pp' (its axes: dp, tp)")]
    [InlineData(
        "param w: f32[64, 9] shard[_, tp];\nreturn x;",
        "dimension 1 of f32[64, 9] (size 9) is not divisible by mesh axes (tp) of total size 2"
    )]
    [InlineData("param w: f32[64, 64] shard[tp, tp];\nreturn x;", "mesh axis 'tp' appears more than once")]
    [InlineData("param w: f64[4];\nreturn x;", "unknown element type 'f64'")]
    [InlineData("param w: f32[4] = uniform(1);\nreturn x;", "unknown initialiser")]
    [InlineData("for i in 0..2 { return x; }\nreturn x;", "return is not allowed inside a loop")]
    [InlineData("return x + 9223372036854775807 * 2;", "integer overflow")]
    public void SemanticErrorsAreLocatedAndClear(string body, string message) =>
        Assert.Contains(message, Fails(Model(body)).Stderr);

    [Fact]
    public void DefinesOverrideConstsAndUnknownOnesAreErrors()
    {
        string src = "const B = 8;\nmodel m(x: f32[B]) -> f32[B] { return x; }\n";
        var ok = Mplc.CompileSource(src, "-D", "B=16");
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains("tensor<16xf32>", ok.Stdout);
        Assert.Contains("-D C: the program has no const named 'C'", Fails(src, "-D", "C=3").Stderr);
        Assert.Contains("-D expects NAME=VALUE", Fails(src, "-D", "B").Stderr);
    }

    [Fact]
    public void FloatConstsSetTheOptimizerAndOnlyNumbersMayUseThem()
    {
        string src =
            "const B = 8;\nconst LR = 3e-4;\nmodel m(x: f32[B]) -> f32[] { param w: f32[B]; return sum(x * w); }\n"
            + "train m optimizer adam(lr = LR);\n";
        var ok = Mplc.CompileSource(src);
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.Contains("lr = 0.0003", ok.Stdout);
        var set = Mplc.CompileSource(src, "-D", "LR=1e-3");
        Assert.True(set.ExitCode == 0, set.Stderr);
        Assert.Contains("lr = 0.001", set.Stdout);
        Assert.Contains("-D expects NAME=VALUE with a number value, got 'LR=fast'", Fails(src, "-D", "LR=fast").Stderr);
        // A float where an integer is needed, from the source or from -D, is an error at the use.
        var dim = Fails(src.Replace("f32[B]) -> f32[]", "f32[LR]) -> f32[]")).Stderr;
        Assert.Contains(":3:16: error: a dimension must be a compile-time integer, but this is the number 0.0003", dim);
        Assert.Contains(
            "a dimension must be a compile-time integer, but this is the number 0.5",
            Fails(src, "-D", "B=0.5").Stderr
        );
    }

    [Fact]
    public void ConstCyclesAndModelChoice()
    {
        Assert.Contains(
            "depends on itself",
            Fails("const A = B;\nconst B = A;\nmodel m(x: f32[A]) -> f32[A] { return x; }").Stderr
        );
        Assert.Contains(
            "several models (a, b): choose one with --entry",
            Fails("model a(x: f32[2]) -> f32[2] { return x; }\nmodel b(x: f32[2]) -> f32[2] { return x; }").Stderr
        );
        Assert.Contains("no model", Fails("const A = 1;").Stderr);
    }

    [Fact]
    public void MissingFileIsAUserError()
    {
        var r = Mplc.Run("compile", "/nonexistent/model.mpl");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: cannot read '/nonexistent/model.mpl'", r.Stderr);
    }

    [Fact]
    public void TrainAndPipelineDeclarationsAreChecked()
    {
        string body = "return sum(x, [0, 1]);";
        string src = Model(body, result: "f32[]");
        Assert.Contains("unknown optimizer 'rmsprop'", Fails(src + "train m optimizer rmsprop(lr = 0.1);").Stderr);
        Assert.Contains(
            "adam has no setting 'momentum'",
            Fails(src + "train m optimizer adam(lr = 0.1, momentum = 0.9);").Stderr
        );
        Assert.Contains(
            "must return a scalar float loss",
            Fails(Model("return x;") + "train m optimizer sgd(lr = 0.1);").Stderr
        );
        Assert.Contains(
            "schedule must be \"gpipe\", \"1f1b\", \"interleaved\", \"zb-h1\" or \"zb-h2\"",
            Fails(
                Mesh + "@pipeline(axis = dp, schedule = \"zigzag\")\nmodel m(x: f32[4]) -> f32[4] { return x; }"
            ).Stderr
        );
        Assert.Contains(
            "mesh 'grid' has no axis 'pp'",
            Fails(Mesh + "@pipeline(axis = pp)\nmodel m(x: f32[4]) -> f32[4] { return x; }").Stderr
        );
    }
}
