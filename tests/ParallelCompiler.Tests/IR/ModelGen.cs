using ParallelCompiler.IR;

namespace ParallelCompiler.Tests.IR;

/// <summary>
/// Builds a well-formed random model from step codes, as <see cref="ProgramGen"/> does, over every op of the
/// language and the situations that have hidden bugs: integer arguments (token ids [m, n] and labels [m]) that
/// sharding may split, an embedding table tied to an output matmul, layer-style sharding constraints
/// (<c>dist.reshard</c>) in the middle, and a scalar loss (cross_entropy or a mean) that a training module
/// differentiates. Shapes: a [m, n], b [n], c [n, k]; the table is [n, n] so both its uses give [m, n] values.
/// </summary>
public static class ModelGen
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
    private static readonly string[] Binary = ["tensor.add", "tensor.sub", "tensor.mul"];

    /// <summary>A module with one function @gen returning a scalar loss; with <paramref name="train"/>, a training step
    /// (sgd).</summary>
    public static Operation Build(
        byte[] steps,
        long m,
        long n,
        long k,
        bool train,
        Func<long[], ParallelCompiler.IR.Sharding?> constraint
    )
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
                ("labels", new TensorType(DType.I32, [m])),
            ],
            [TensorType.Scalar(f32)]
        );
        if (train)
            module.SetAttr(
                "train",
                new DictAttr([
                    new("lr", Attr.Float(0.1)),
                    new("model", Attr.Str("gen")),
                    new("momentum", Attr.Float(0.0)),
                    new("optimizer", Attr.Str("sgd")),
                    new("weight_decay", Attr.Float(0.0)),
                ])
            );
        var entry = func.Regions[0].Entry;
        var b = new Builder();
        b.SetInsertionPointToEnd(entry);
        var (ids, labels) = (entry.Arguments[3], entry.Arguments[4]);
        // Every program has a weight, so training always updates something, and a table tied to two uses.
        var w = Param(b, "gen.w", [n, n], "normal");
        Value? table = null;
        Value Table() => table ??= Param(b, "gen.table", [n, n], "normal");
        var vals = new List<Value>
        {
            b.CreateValue("tensor.matmul", [entry.Arguments[0], w]),
            entry.Arguments[0],
            entry.Arguments[1],
            entry.Arguments[2],
        };
        int counter = 0;
        for (int i = 0; i < steps.Length; i++)
        {
            // FsCheck draws small bytes while its size is small: spread them so every op is reached from the first
            // case.
            byte s = Mix(steps[i], i);
            Value Pick(int j) => vals[(s / 16 + j * 7) % vals.Count];
            var x = Pick(0);
            var t = x.TensorType;
            try
            {
                Value v = (s % 16) switch
                {
                    0 => b.CreateValue(Unary[s / 16 % Unary.Length], [x]),
                    1 or 2 => b.CreateValue(Binary[s / 16 % Binary.Length], [x, Pick(1)]),
                    3 => b.CreateValue("tensor.matmul", [x, Pick(1)]),
                    4 => b.CreateValue(
                        "tensor.transpose",
                        [x],
                        [new("perm", Attr.Ints(Enumerable.Range(0, t.Rank).Reverse().Select(i => (long)i)))]
                    ),
                    5 => b.CreateValue(
                        "tensor.reshape",
                        [x],
                        [new("shape", Attr.Ints(t.Rank == 2 ? [t.Shape[0] * t.Shape[1]] : [m, t.NumElements / m]))]
                    ),
                    6 => b.CreateValue(
                        s / 16 % 2 == 0 ? "tensor.sum" : "tensor.mean",
                        [x],
                        [new("axes", Attr.Ints([s / 32 % 2 == 0 ? -1 : 0])), new("keepdims", Attr.Bool(true))]
                    ),
                    7 => b.CreateValue("tensor.softmax", [x], [new("axis", Attr.Int(s / 16 % 2 == 0 ? -1 : 0))]),
                    8 => b.CreateValue(
                        "tensor.concat",
                        [x, Pick(1)],
                        [new("axis", Attr.Int(s / 16 % 2 == 0 ? 0 : -1))]
                    ),
                    9 => b.CreateValue(
                        "tensor.slice",
                        [x],
                        [
                            new("axis", Attr.Int(s / 16 % t.Rank)),
                            new("start", Attr.Int(1)),
                            new("length", Attr.Int(t.Shape[s / 16 % t.Rank] - 1)),
                        ]
                    ),
                    10 => s / 16 % 2 == 0
                        ? b.CreateValue(
                            "tensor.layernorm",
                            [
                                x,
                                Param(b, $"gen.g{counter++}", [t.Shape[^1]], "ones"),
                                Param(b, $"gen.b{counter++}", [t.Shape[^1]], "zeros"),
                            ],
                            [new("eps", Attr.Float(1e-5))]
                        )
                        : b.CreateValue(
                            "tensor.rmsnorm",
                            [x, Param(b, $"gen.g{counter++}", [t.Shape[^1]], "ones")],
                            [new("eps", Attr.Float(1e-6))]
                        ),
                    // Token ids through the tied table, reduced back to [m, n]; and the table as an output projection.
                    11 => b.CreateValue(
                        "tensor.sum",
                        [b.CreateValue("tensor.embedding", [ids, Table()])],
                        [new("axes", Attr.Ints([-1])), new("keepdims", Attr.Bool(false))]
                    ),
                    12 => b.CreateValue(
                        "tensor.matmul",
                        [x, b.CreateValue("tensor.transpose", [Table()], [new("perm", Attr.Ints([1, 0]))])]
                    ),
                    13 => b.CreateValue(
                        "tensor.one_hot",
                        [labels],
                        [new("classes", Attr.Int(n))],
                        new TensorType(DType.F32, [m, n])
                    ),
                    14 => b.CreateValue(
                        "tensor.max",
                        [x],
                        [new("axes", Attr.Ints([s / 16 % 2 == 0 ? 0 : -1])), new("keepdims", Attr.Bool(true))]
                    ),
                    _ => s / 16 % 2 == 0
                        ? b.CreateValue("tensor.causal_mask", [x])
                        : Constrain(b, x, constraint(t.ShapeArray)),
                };
                vals.Add(v);
            }
            catch (Exception e)
                when (e is IRException or ArgumentException or IndexOutOfRangeException or DivideByZeroException)
            {
                /* the step does not fit the chosen operands' shapes: skip it */
            }
        }
        // The loss: cross_entropy of the last [m, n] value against the labels, or (every other program) a mean.
        var last = vals.Last(v => v.TensorType.Shape.SequenceEqual([m, n]) && !v.TensorType.Shape.Contains(0));
        // A masked value can hold -inf; a loss of it would compare infinities, not the program.
        if (last.DefiningOp?.Name == "tensor.causal_mask")
            last = b.CreateValue("tensor.tanh", [last]);
        var loss =
            steps.Length % 2 == 0
                ? b.CreateValue("tensor.cross_entropy", [last, labels])
                : b.CreateValue(
                    "tensor.mean",
                    [b.CreateValue("tensor.tanh", [last])],
                    [new("axes", Attr.Ints([0, 1])), new("keepdims", Attr.Bool(false))]
                );
        b.Create("func.return", [loss]);
        return module;
    }

    /// <summary>A byte spread over 0..255 (a bijection for each position, so shrinking still shortens the
    /// program).</summary>
    public static byte Mix(byte raw, int position) => (byte)(raw * 157 + position * 89 + 23);

    /// <summary>A sharding constraint, as a layer's annotated argument or result puts one in the program.</summary>
    private static Value Constrain(Builder b, Value x, ParallelCompiler.IR.Sharding? s)
    {
        if (s == null || s.Rank != x.TensorType.Rank)
            throw new ArgumentException("no constraint of this rank");
        return b.CreateValue("dist.reshard", [x], null, x.TensorType.WithSharding(s));
    }

    private static Value Param(Builder b, string path, long[] shape, string init) =>
        b.CreateValue(
            "tensor.param",
            [],
            [
                new("path", Attr.Str(path)),
                new("init", Attr.Str(init)),
                .. init == "normal" ? new KeyValuePair<string, Attr>[] { new("std", Attr.Float(0.5)) } : [],
            ],
            new TensorType(DType.F32, shape)
        );
}
