using System.Globalization;
using System.Text.Json;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace ParallelCompiler.Tests.Interp;

/// <summary>An operand of an op case: its IR type and how to fill it from the case's random stream.</summary>
public sealed record OpArg(string Type, Func<Random, NDArray> Make);

/// <summary>One op on generated operands: run as a one-op IR module by the interpreter, and by
/// tests/oracle/ops.py.</summary>
public sealed record OpCase(
    string Name,
    string Op,
    string Result,
    OpArg[] Args,
    IReadOnlyDictionary<string, object>? Attrs,
    double Tolerance
)
{
    /// <summary>Why the case is not run with the others: a known interpreter bug it demonstrates.</summary>
    public string? Bug { get; init; }

    /// <summary>The module text; attributes are written as given (negative axes included) so the parser's normalisation
    /// is under test too.</summary>
    public string Module
    {
        get
        {
            string args = string.Join(", ", Args.Select((a, i) => $"%a{i}: tensor<{a.Type}>"));
            string operands = string.Join(", ", Args.Select((_, i) => $"%a{i}"));
            string types = string.Join(", ", Args.Select(a => $"tensor<{a.Type}>"));
            string attrs =
                Attrs == null
                    ? ""
                    : " {" + string.Join(", ", Attrs.Select(kv => $"{kv.Key} = {Literal(kv.Value)}")) + "}";
            return $$"""
                module {
                  func.func @f({{args}}) -> tensor<{{Result}}> {
                    %0 = tensor.{{Op}} {{operands}}{{attrs}} : ({{types}}) -> tensor<{{Result}}>
                    func.return %0 : tensor<{{Result}}>
                  }
                }
                """;
        }
    }

    private static string Literal(object v) =>
        v switch
        {
            bool b => b ? "true" : "false",
            long[] xs => "[" + string.Join(", ", xs) + "]",
            double d => FloatLiteral(d),
            _ => Convert.ToString(v, CultureInfo.InvariantCulture)!,
        };

    // The IR reads a number without '.' or an exponent as an integer.
    private static string FloatLiteral(double d)
    {
        string s = d.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') ? s : s + ".0";
    }
}

/// <summary>The op cases: every tensor op, on several ranks, broadcasting patterns, axes and element types.</summary>
public static class OpCases
{
    /// <summary>All cases, in a fixed order (each case's random stream is seeded by its position).</summary>
    public static IReadOnlyList<OpCase> All { get; } = Build().ToList();

    private const float Inf = float.PositiveInfinity;

    private static IEnumerable<OpCase> Build()
    {
        // (a, b, result): equal shapes, either operand broadcast, both at once, a scalar, rank 4 against rank 3.
        (string, string, string)[] broadcasts =
        [
            ("2x3", "2x3", "2x3"),
            ("3x4", "4", "3x4"),
            ("4", "3x4", "3x4"),
            ("3x1", "1x4", "3x4"),
            ("2x3x4", "", "2x3x4"),
            ("", "3x2", "3x2"),
            ("2x1x3x1", "4x1x5", "2x4x3x5"),
        ];
        foreach (var op in new[] { "add", "sub", "mul", "div", "rem" })
        {
            foreach (var (a, b, r) in broadcasts)
                yield return C($"{op}.f32.{Label(a)}.{Label(b)}", op, T(r, "f32"), [F(a), F(b)]);
            yield return C($"{op}.i32.same", op, "2x3xi32", [I("2x3"), I("2x3", nonZero: true)]);
            yield return C($"{op}.i32.row", op, "3x4xi32", [I("3x4", -50, 50), I("4", nonZero: true)]);
        }
        // Floor division and the divisor's sign for remainders, x / 0 = x % 0 = 0, and int32 wrap-around.
        int[] ea = [-7, 7, -7, 7, 0, int.MinValue, 5, -5, int.MaxValue],
            eb = [2, -2, -2, 2, 3, -1, 0, 0, -1];
        foreach (var op in new[] { "add", "mul", "div", "rem" })
            yield return C($"{op}.i32.edges", op, "9xi32", [Iv("9", ea), Iv("9", eb)]);
        yield return C("div.f32.by_zero", "div", "4xf32", [Fv("4", 1, -1, 0, 2), Fv("4", 0, 0, 0, -0f)]);
        yield return C("rem.f32.by_zero", "rem", "3xf32", [Fv("3", 1, -1, 0), Fv("3", 0, 0, 0)]);
        yield return C(
            "rem.f32.signs",
            "rem",
            "6xf32",
            [Fv("6", 5.5f, -5.5f, 5.5f, -5.5f, 3, -3), Fv("6", 2, 2, -2, -2, 1.5f, 1.5f)]
        );

        foreach (var op in new[] { "neg", "relu", "gelu", "silu", "sigmoid", "tanh", "exp" })
        {
            yield return C($"{op}.f32.3d", op, "2x3x4xf32", [F("2x3x4", 3)]);
            yield return C($"{op}.f32.1d", op, "7xf32", [F("7")]);
        }
        foreach (var op in new[] { "log", "sqrt", "rsqrt" })
        {
            yield return C($"{op}.f32.3d", op, "2x3x4xf32", [Pos("2x3x4")]);
            yield return C($"{op}.f32.scalar", op, "f32", [Pos("")]);
        }
        yield return C("gelu.f32.tails", "gelu", "6xf32", [Fv("6", -30, -8, -3, 3, 8, 30)]);
        yield return C("neg.i32", "neg", "3x5xi32", [I("3x5")]);
        yield return C("relu.i32", "relu", "3x5xi32", [I("3x5")]);
        yield return C("neg.i32.edges", "neg", "4xi32", [Iv("4", int.MinValue, int.MaxValue, -1, 0)]);

        (long[], bool, string)[] reductions =
        [
            ([1], false, "3x5"),
            ([-1], true, "3x4x1"),
            ([0, 2], false, "4"),
            ([-3, 1, -1], true, "1x1x1"),
            ([0, 1, 2], false, ""),
        ];
        foreach (var op in new[] { "sum", "mean", "max" })
        foreach (var (axes, keep, r) in reductions)
            yield return C(
                $"{op}.f32.axes{string.Join("_", axes)}{(keep ? ".keep" : "")}",
                op,
                T(r, "f32"),
                [F("3x4x5")],
                Axes(axes, keep)
            );
        yield return C("sum.f32.no_axes", "sum", "3x4xf32", [F("3x4")], Axes([], false));
        yield return C("sum.i32.axes0", "sum", "5xi32", [I("4x5", -100, 100)], Axes([0], false));
        yield return C("sum.i32.axes-1.keep", "sum", "4x1xi32", [I("4x5")], Axes([-1], true));
        yield return C("sum.i32.wraps", "sum", "i32", [Iv("3", int.MaxValue, int.MaxValue, 5)], Axes([0], false));
        yield return C("sum.i32.beyond_2^24", "sum", "2xi32", [Iv("2x2", 16777217, 0, -16777219, 2)], Axes([1], false));
        yield return C("max.i32.beyond_2^24", "max", "i32", [Iv("3", 16777216, 16777217, -5)], Axes([0], false));
        yield return C("sum.f32.empty", "sum", "3xf32", [F("0x3")], Axes([0], false));
        yield return C("mean.f32.empty", "mean", "3xf32", [F("0x3")], Axes([0], false));
        yield return C("max.f32.nan", "max", "2xf32", [Fv("2x3", 1, float.NaN, 2, -Inf, 3, 0)], Axes([1], false));
        yield return C("max.i32.axes1", "max", "4xi32", [I("4x5")], Axes([1], false));
        yield return C("max.i32.all.keep", "max", "1x1xi32", [I("4x5")], Axes([0, -1], true));

        yield return C("softmax.last", "softmax", "2x3x5xf32", [F("2x3x5", 3)], At(("axis", -1L)));
        yield return C("softmax.axis0", "softmax", "4x3xf32", [F("4x3", 3)], At(("axis", 0L)));
        yield return C("softmax.middle", "softmax", "2x6x3xf32", [F("2x6x3", 3)], At(("axis", -2L)));
        yield return C("softmax.1d.wide", "softmax", "7xf32", [F("7", 30)], At(("axis", 0L)));
        yield return C(
            "softmax.neg_inf",
            "softmax",
            "3x3xf32",
            [Fv("3x3", 1, -Inf, 2, -Inf, 0.5f, -Inf, -Inf, -Inf, -Inf)],
            At(("axis", 1L))
        );

        yield return C("layernorm.2d", "layernorm", "4x8xf32", [F("4x8", 2, 1), F("8"), F("8")], At(("eps", 1e-5)));
        yield return C(
            "layernorm.3d",
            "layernorm",
            "2x3x16xf32",
            [F("2x3x16", 3, -2), F("16"), F("16")],
            At(("eps", 1e-3))
        );
        yield return C("layernorm.1d", "layernorm", "10xf32", [F("10"), F("10"), F("10")], At(("eps", 1e-5)));
        yield return C("rmsnorm.2d", "rmsnorm", "4x8xf32", [F("4x8", 2, 1), F("8")], At(("eps", 1e-6)));
        yield return C("rmsnorm.3d", "rmsnorm", "2x3x16xf32", [F("2x3x16", 0.1), F("16")], At(("eps", 1e-2)));

        yield return C("matmul.2d", "matmul", "3x5xf32", [F("3x4"), F("4x5")]);
        yield return C("matmul.vec_mat", "matmul", "5xf32", [F("4"), F("4x5")]);
        yield return C("matmul.mat_vec", "matmul", "3xf32", [F("3x4"), F("4")]);
        yield return C("matmul.vec_vec", "matmul", "f32", [F("6"), F("6")]);
        yield return C("matmul.batch_mat", "matmul", "2x3x5xf32", [F("2x3x4"), F("4x5")]);
        yield return C("matmul.mat_batch", "matmul", "2x3x5xf32", [F("3x4"), F("2x4x5")]);
        yield return C("matmul.batch_broadcast", "matmul", "2x5x3x2xf32", [F("2x1x3x4"), F("5x4x2")]);
        yield return C("matmul.vec_batch", "matmul", "2x3xf32", [F("4"), F("2x4x3")]);
        yield return C("matmul.batch_vec", "matmul", "2x3xf32", [F("2x3x4"), F("4")]);
        yield return C("matmul.i32", "matmul", "3x2xi32", [I("3x4"), I("4x2")]);
        yield return C("matmul.k0", "matmul", "3x2xf32", [F("3x0"), F("0x2")]);
        yield return C(
            "matmul.zero_times_inf",
            "matmul",
            "2x2xf32",
            [Fv("2x2", 0, 1, 1, 0), Fv("2x2", Inf, 1, 2, float.NaN)]
        );

        yield return C("reshape.merge", "reshape", "6x4xf32", [F("2x3x4")], At(("shape", new long[] { 6, 4 })));
        yield return C("reshape.split", "reshape", "3x2x2xf32", [F("12")], At(("shape", new long[] { 3, 2, 2 })));
        yield return C("reshape.flatten", "reshape", "24xf32", [F("2x3x4")], At(("shape", new long[] { 24 })));
        yield return C("reshape.to_scalar", "reshape", "f32", [F("1x1")], At(("shape", Array.Empty<long>())));
        yield return C("reshape.i32", "reshape", "3x4xi32", [I("2x6")], At(("shape", new long[] { 3, 4 })));

        yield return C("transpose.2d", "transpose", "3x2xf32", [F("2x3")], At(("perm", new long[] { 1, 0 })));
        yield return C("transpose.3d", "transpose", "4x2x3xf32", [F("2x3x4")], At(("perm", new long[] { 2, 0, 1 })));
        yield return C(
            "transpose.4d.negative",
            "transpose",
            "2x4x5x3xf32",
            [F("2x3x4x5")],
            At(("perm", new long[] { 0, -2, -1, 1 }))
        );
        yield return C("transpose.i32", "transpose", "3x4x2xi32", [I("2x3x4")], At(("perm", new long[] { 1, 2, 0 })));

        yield return C("broadcast.row", "broadcast", "3x4xf32", [F("4")], At(("shape", new long[] { 3, 4 })));
        yield return C(
            "broadcast.column.rank3",
            "broadcast",
            "2x3x5xf32",
            [F("3x1")],
            At(("shape", new long[] { 2, 3, 5 }))
        );
        yield return C("broadcast.scalar", "broadcast", "2x2xf32", [F("")], At(("shape", new long[] { 2, 2 })));
        yield return C("broadcast.i32", "broadcast", "4x3xi32", [I("1x3")], At(("shape", new long[] { 4, 3 })));

        yield return C("concat.axis0", "concat", "4x3xf32", [F("2x3"), F("2x3")], At(("axis", 0L)));
        yield return C(
            "concat.three.axis1",
            "concat",
            "2x6x4xf32",
            [F("2x1x4"), F("2x3x4"), F("2x2x4")],
            At(("axis", 1L))
        );
        yield return C("concat.negative_axis", "concat", "3x7xf32", [F("3x2"), F("3x5")], At(("axis", -1L)));
        yield return C("concat.i32", "concat", "5x2xi32", [I("2x2"), I("3x2")], At(("axis", 0L)));
        yield return C("concat.empty_operand", "concat", "2x3xf32", [F("2x0"), F("2x3")], At(("axis", 1L)));

        yield return C("embedding.1d", "embedding", "5x3xf32", [Ids("5", 7), F("7x3")]);
        yield return C("embedding.2d", "embedding", "2x4x6xf32", [Ids("2x4", 10), F("10x6")]);
        yield return C("embedding.scalar", "embedding", "3xf32", [Ids("", 4), F("4x3")]);

        yield return C("causal_mask.square", "causal_mask", "4x4xf32", [F("4x4")]);
        yield return C("causal_mask.wide", "causal_mask", "3x5xf32", [F("3x5")]);
        yield return C("causal_mask.tall", "causal_mask", "5x3xf32", [F("5x3")]);
        yield return C("causal_mask.batched", "causal_mask", "2x3x4x4xf32", [F("2x3x4x4")]);

        // Rounding to nearest even and overflow to infinity (f16 tops out at 65504), exactly as numpy's astype.
        yield return C("convert.f32.f16", "convert", "2x3x4xf16", [F("2x3x4", 30000)], tol: 1e-12);
        yield return C("cross_entropy.2d", "cross_entropy", "f32", [F("6x5", 3), Ids("6", 5)]);
        yield return C("cross_entropy.3d", "cross_entropy", "f32", [F("2x3x7"), Ids("2x3", 7)]);
        yield return C("cross_entropy.1d", "cross_entropy", "f32", [F("5"), Ids("", 5)]);
        yield return C("cross_entropy.large_logits", "cross_entropy", "f32", [F("4x9", 30), Ids("4", 9)]);
    }

    private static OpCase C(
        string name,
        string op,
        string result,
        OpArg[] args,
        Dictionary<string, object>? attrs = null,
        double tol = 1e-5
    ) => new(name, op, result, args, attrs, tol);

    private static Dictionary<string, object> At(params (string Key, object Value)[] kv) =>
        kv.ToDictionary(p => p.Key, p => p.Value);

    private static Dictionary<string, object> Axes(long[] axes, bool keep) => At(("axes", axes), ("keepdims", keep));

    private static string Label(string shape) => shape.Length == 0 ? "scalar" : shape;

    private static string T(string shape, string dtype) => shape.Length == 0 ? dtype : shape + "x" + dtype;

    private static long[] Dims(string shape) => shape.Length == 0 ? [] : shape.Split('x').Select(long.Parse).ToArray();

    /// <summary>Standard normal by Box-Muller: System.Random has no normal draw.</summary>
    public static double Normal(Random r) =>
        Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    private static OpArg F(string shape, double scale = 1, double shift = 0) =>
        Floats(shape, r => (float)(shift + scale * Normal(r)));

    private static OpArg Pos(string shape) => Floats(shape, r => (float)(0.05 + 4 * r.NextDouble()));

    private static OpArg Fv(string shape, params float[] v) =>
        new(T(shape, "f32"), _ => NDArray.FromFloats(Dims(shape), v));

    private static OpArg Iv(string shape, params int[] v) =>
        new(T(shape, "i32"), _ => NDArray.FromInts(Dims(shape), v));

    private static OpArg Ids(string shape, int bound) => I(shape, 0, bound);

    private static OpArg I(string shape, int lo = -9, int hi = 10, bool nonZero = false) =>
        new(
            T(shape, "i32"),
            r =>
            {
                var d = Dims(shape);
                var a = new int[NDArray.ShapeSize(d)];
                for (int i = 0; i < a.Length; i++)
                    do a[i] = r.Next(lo, hi);
                    while (nonZero && a[i] == 0);
                return NDArray.FromInts(d, a);
            }
        );

    private static OpArg Floats(string shape, Func<Random, float> next) =>
        new(
            T(shape, "f32"),
            r =>
            {
                var d = Dims(shape);
                var a = new float[NDArray.ShapeSize(d)];
                for (int i = 0; i < a.Length; i++)
                    a[i] = next(r);
                return NDArray.FromFloats(d, a);
            }
        );
}

/// <summary>
/// Generates every case's operands and has numpy compute all of them in one Python run: starting Python costs far
/// more than the ops, so one run per case would dominate the suite.
/// </summary>
public sealed class NumpyOracle : IDisposable
{
    /// <summary>A <c>python3 -c</c> script that runs the file given as its first argument with the rest as
    /// argv.</summary>
    public const string RunFile =
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], " + "run_name='__main__')";

    private readonly string dir = Directory.CreateTempSubdirectory("pc-oracle-").FullName;
    private readonly Dictionary<string, NDArray> expected = [];
    private readonly Dictionary<string, (OpCase Case, NDArray[] Inputs)> cases = [];

    /// <summary>What ops.py wrote to stderr: the reason for any case it could not compute.</summary>
    public string Stderr { get; }

    /// <summary>Writes the inputs and cases, runs tests/oracle/ops.py once, and reads its results.</summary>
    public NumpyOracle()
    {
        var inputs = new Dictionary<string, NDArray>();
        var json = new List<object>();
        for (int n = 0; n < OpCases.All.Count; n++)
        {
            var c = OpCases.All[n];
            var rng = new Random(1000 + n);
            var xs = c.Args.Select(a => a.Make(rng)).ToArray();
            cases[c.Name] = (c, xs);
            var keys = xs.Select((x, i) => $"{c.Name}.{i}").ToArray();
            for (int i = 0; i < xs.Length; i++)
                inputs[keys[i]] = xs[i];
            json.Add(
                new
                {
                    name = c.Name,
                    op = c.Op,
                    inputs = keys,
                    attrs = c.Attrs,
                }
            );
        }
        string casesPath = Path.Combine(dir, "cases.json"),
            inputsPath = Path.Combine(dir, "inputs.npz"),
            outPath = Path.Combine(dir, "expected.npz");
        File.WriteAllText(casesPath, JsonSerializer.Serialize(json));
        Npz.Write(inputsPath, inputs);
        var (code, stdout, stderr) = Python.Run(
            RunFile,
            Repo.Path("tests", "oracle", "ops.py"),
            casesPath,
            inputsPath,
            outPath
        );
        if (code != 0)
            throw new XunitException(
                $"ops.py exited with {code}\n--- stdout ---\n{stdout}\n--- stderr " + $"---\n{stderr}"
            );
        Stderr = stderr;
        foreach (var (key, a) in Npz.Read(outPath))
            expected[key] = a.Array;
    }

    /// <summary>The case named <paramref name="name"/> and its generated operands.</summary>
    public (OpCase Case, NDArray[] Inputs) Case(string name) => cases[name];

    /// <summary>numpy's result for the case, or null when ops.py failed on it (see <see cref="Stderr"/>).</summary>
    public NDArray? Expected(string name)
    {
        // ops.py writes floats as float32; an f16 result's values are f16 numbers, so they convert back exactly.
        var e = expected.GetValueOrDefault(name);
        return e != null && cases[name].Case.Result.EndsWith("xf16", StringComparison.Ordinal)
            ? NDArray.FromFloats(DType.F16, e.Shape, e.F!)
            : e;
    }

    /// <summary>Removes the temporary files.</summary>
    public void Dispose() => Directory.Delete(dir, recursive: true);
}

/// <summary>The reference interpreter, op by op, against numpy (tests/oracle/ops.py).</summary>
public sealed class InterpreterNumpyTests(NumpyOracle oracle, ITestOutputHelper output) : IClassFixture<NumpyOracle>
{
    /// <summary>Every case's name, one test each.</summary>
    public static IEnumerable<object[]> Names =>
        OpCases.All.Where(c => c.Bug == null).Select(c => new object[] { c.Name });

    /// <summary>The interpreter's result equals numpy's: exactly for integers, within the case's tolerance for
    /// floats.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Op_matches_numpy(string name) => Check(name);

    private void Check(string name)
    {
        var (c, inputs) = oracle.Case(name);
        var expected =
            oracle.Expected(name) ?? throw new XunitException($"numpy computed nothing for {name}:\n{oracle.Stderr}");
        var func = IRParser.ParseModule(c.Module).EntryFunction()!;
        var got = Interpreter.Run(func, inputs, _ => throw new InvalidOperationException("no parameters here"));
        double err = AssertClose(expected, got[0], c.Tolerance, $"{name}\n{c.Module}");
        output.WriteLine($"max relative error {err:E2} (tolerance {c.Tolerance:E0})");
    }

    /// <summary>An id outside the table is reported with its value and position, not read out of bounds.</summary>
    [Theory]
    [InlineData(7, 5, "id 7 at position [1, 2]")]
    [InlineData(-1, 0, "id -1 at position [0, 0]")]
    public void Embedding_id_out_of_range_names_id_and_position(int bad, int flat, string message)
    {
        var ids = new[] { 0, 1, 2, 3, 4, 0 };
        ids[flat] = bad;
        var e = Assert.Throws<InterpreterException>(() =>
            RunOne(
                "tensor.embedding %a0, %a1",
                ["2x3xi32", "5x4xf32"],
                "2x3x4xf32",
                NDArray.FromInts([2, 3], ids),
                NDArray.FromFloats([5, 4], new float[20])
            )
        );
        Assert.Contains(message, e.Message);
    }

    /// <summary>A label outside the classes is reported with its value and position.</summary>
    [Theory]
    [InlineData(5, 3, "label 5 at position [1, 0]")]
    [InlineData(-2, 2, "label -2 at position [0, 2]")]
    public void Cross_entropy_label_out_of_range_names_label_and_position(int bad, int flat, string message)
    {
        var labels = new[] { 0, 1, 2, 3, 4, 0 };
        labels[flat] = bad;
        var e = Assert.Throws<InterpreterException>(() =>
            RunOne(
                "tensor.cross_entropy %a0, %a1",
                ["2x3x5xf32", "2x3xi32"],
                "f32",
                NDArray.FromFloats([2, 3, 5], new float[30]),
                NDArray.FromInts([2, 3], labels)
            )
        );
        Assert.Contains(message, e.Message);
    }

    private static NDArray RunOne(string op, string[] types, string result, params NDArray[] args)
    {
        string ps = string.Join(", ", types.Select((t, i) => $"%a{i}: tensor<{t}>"));
        string ts = string.Join(", ", types.Select(t => $"tensor<{t}>"));
        string text =
            $"module {{\n func.func @f({ps}) -> tensor<{result}> {{\n"
            + $"  %0 = {op} : ({ts}) -> tensor<{result}>\n"
            + $"  func.return %0 : tensor<{result}>\n }}\n}}";
        return Interpreter.Run(
            IRParser.ParseModule(text).EntryFunction()!,
            args,
            _ => throw new InvalidOperationException()
        )[0];
    }

    /// <summary>
    /// Fails unless <paramref name="got"/> has <paramref name="expected"/>'s type and shape and every element is within
    /// |got - expected| &lt;= tol * max(1, |expected|) (integers exactly; infinities and NaNs must match); returns the
    /// largest scaled error, so a test can show how much margin it has.
    /// </summary>
    public static double AssertClose(NDArray expected, NDArray got, double tol, string what)
    {
        if (expected.DType != got.DType || !expected.Shape.SequenceEqual(got.Shape))
            throw new XunitException($"{what}\nexpected {expected.TypeString}, got {got.TypeString}");
        double worst = 0;
        long bad = 0,
            firstBad = -1;
        for (long i = 0; i < expected.Size; i++)
        {
            double e = Element(expected, i),
                g = Element(got, i);
            double err =
                double.IsNaN(e) || double.IsInfinity(e) || expected.I != null
                    ? (e.Equals(g) ? 0 : double.PositiveInfinity)
                    : Math.Abs(g - e) / Math.Max(1, Math.Abs(e)) / tol;
            if (double.IsNaN(err) || err > 1)
            {
                bad++;
                if (firstBad < 0)
                    firstBad = i;
            }
            if (!double.IsNaN(err))
                worst = Math.Max(worst, err);
        }
        if (bad > 0)
        {
            var idx = new long[expected.Shape.Length];
            for (long f = firstBad, d = idx.Length - 1; d >= 0; d--)
            {
                idx[d] = f % expected.Shape[d];
                f /= expected.Shape[d];
            }
            throw new XunitException(
                $"{what}\n{bad} of {expected.Size} element(s) differ beyond {tol:E0} relative; "
                    + $"first at [{string.Join(", ", idx)}]: "
                    + $"numpy {Fmt(Element(expected, firstBad))}, interpreter {Fmt(Element(got, firstBad))}"
            );
        }
        return worst * tol;
    }

    // Not NDArray.GetDouble: its `F != null ? F[i] : I![i]` is a float expression and rounds ints beyond 2^24.
    private static double Element(NDArray a, long i) => a.F != null ? a.F[i] : (double)a.I![i];

    private static string Fmt(double v) => v.ToString("G9", CultureInfo.InvariantCulture);
}
