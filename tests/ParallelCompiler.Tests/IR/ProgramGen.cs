using ParallelCompiler.IR;

namespace ParallelCompiler.Tests.IR;

/// <summary>
/// Builds a well-formed random function from a list of step codes: each code picks an op and its operands among
/// the values made so far; steps whose shapes do not fit are skipped. FsCheck shrinks the list, so a failure comes
/// out as a short program.
/// </summary>
public static class ProgramGen
{
    private static readonly string[] Unary =
    [
        "tensor.exp",
        "tensor.tanh",
        "tensor.neg",
        "tensor.relu",
        "tensor.gelu",
        "tensor.sigmoid",
        "tensor.silu",
    ];
    private static readonly string[] Binary = ["tensor.add", "tensor.sub", "tensor.mul", "tensor.div"];
    private static readonly double[] Floats = [0.5, -1.25, 1e-8, 3.0e20, 0.1, 2.0, -0.0];

    /// <summary>A module with one function @gen built from <paramref name="steps"/>.</summary>
    public static Operation Build(byte[] steps) => Build(steps, 2, 3, 4);

    /// <summary>As <see cref="Build(byte[])"/> with arguments a: [m, n], b: [n], c: [n, k], ids: [m, n] and a result
    /// [m, n].</summary>
    public static Operation Build(byte[] steps, long m, long n, long k)
    {
        var module = ModuleOp.Create();
        var f32 = DType.F32;
        var func = module.AddFunction(
            "gen",
            [
                ("a", new TensorType(f32, [m, n])),
                ("b", new TensorType(f32, [n])),
                ("c", new TensorType(f32, [n, k])),
                ("ids", new TensorType(DType.I32, [m, n])),
            ],
            [new TensorType(f32, [m, n])]
        );
        var entry = func.Regions[0].Entry;
        var b = new Builder();
        b.SetInsertionPointToEnd(entry);
        var vals = entry.Arguments.Where(a => a.TensorType.DType == f32).Cast<Value>().ToList();
        var ids = entry.Arguments[3];
        int counter = 0;
        foreach (byte s in steps)
        {
            Value Pick(int k) => vals[(s / 16 + k * 7) % vals.Count];
            var x = Pick(0);
            var t = x.TensorType;
            try
            {
                Value v = (s % 16) switch
                {
                    0 or 1 => b.CreateValue(Unary[s / 16 % Unary.Length], [x]),
                    2 or 3 => b.CreateValue(Binary[s / 16 % Binary.Length], [x, Pick(1)]),
                    4 => b.CreateValue("tensor.matmul", [x, Pick(1)]),
                    5 => b.CreateValue(
                        "tensor.transpose",
                        [x],
                        [new("perm", Attr.Ints(Enumerable.Range(0, t.Rank).Reverse().Select(i => (long)i)))]
                    ),
                    6 => b.CreateValue("tensor.reshape", [x], [new("shape", Attr.Ints([t.NumElements]))]),
                    7 => b.CreateValue(
                        s / 16 % 2 == 0 ? "tensor.sum" : "tensor.mean",
                        [x],
                        [new("axes", Attr.Ints([-1])), new("keepdims", Attr.Bool(s > 128))]
                    ),
                    8 => b.CreateValue("tensor.softmax", [x], [new("axis", Attr.Int(-1))]),
                    9 => b.CreateValue(
                        "tensor.constant",
                        [],
                        [new("value", Attr.Float(Floats[s / 16 % Floats.Length]))],
                        new TensorType(f32, t.Shape)
                    ),
                    10 => b.CreateValue("tensor.concat", [x, x], [new("axis", Attr.Int(0))]),
                    11 => s / 16 % 2 == 0
                        ? b.CreateValue(
                            "tensor.layernorm",
                            [x, Param(b, $"gen.g{counter++}", t.Shape[^1]), Param(b, $"gen.b{counter++}", t.Shape[^1])],
                            [new("eps", Attr.Float(1e-5))]
                        )
                        : b.CreateValue(
                            "tensor.rmsnorm",
                            [x, Param(b, $"gen.g{counter++}", t.Shape[^1])],
                            [new("eps", Attr.Float(1e-6))]
                        ),
                    12 => b.CreateValue(
                        "tensor.embedding",
                        [
                            ids,
                            b.CreateValue(
                                "tensor.param",
                                [],
                                [
                                    new("path", Attr.Str($"gen.e{counter++}")),
                                    new("init", Attr.Str("normal")),
                                    new("std", Attr.Float(0.02)),
                                ],
                                new TensorType(f32, [5, t.Shape[^1]])
                            ),
                        ]
                    ),
                    13 => b.CreateValue(
                        "tensor.max",
                        [x],
                        [new("axes", Attr.Ints([0])), new("keepdims", Attr.Bool(true))]
                    ),
                    14 => b.CreateValue("tensor.broadcast", [x], [new("shape", Attr.Ints(t.Shape.Prepend(2)))]),
                    _ => b.CreateValue("tensor.causal_mask", [x]),
                };
                vals.Add(v);
                if (s % 5 == 0)
                    v.NameHint = $"v{s}";
            }
            catch (Exception e) when (e is IRException or ArgumentException)
            {
                /* the step does not fit the chosen operands' shapes (or a scalar has no last dimension): skip it */
            }
        }
        var result = vals.LastOrDefault(v => v.TensorType.Shape.SequenceEqual([m, n])) ?? entry.Arguments[0];
        b.Create("func.return", [result]);
        return module;
    }

    private static Value Param(Builder b, string path, long d) =>
        b.CreateValue(
            "tensor.param",
            [],
            [new("path", Attr.Str(path)), new("init", Attr.Str("ones"))],
            new TensorType(DType.F32, [d])
        );
}
