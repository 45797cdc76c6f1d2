using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Kernels;

/// <summary>Reads operand <c>operand</c> of the op being defined at a multi-index.</summary>
public delegate KExpr OperandReader(int operand, KExpr[] index);

/// <summary>
/// The compute definition of every tensor op: the value of its result at an output multi-index, as a
/// <see cref="KExpr"/> over its operands' values. Fusion substitutes a producer's definition for a read of its
/// result, so a chain of ops becomes one expression. The definitions follow the reference interpreter's arithmetic
/// (float math in f32; sums of floats in f64 where it accumulates in double; f16/bf16 rounded after each op).
/// </summary>
public static class OpCompute
{
    private static readonly double Sqrt2OverPi = MathF.Sqrt(2f / MathF.PI);

    /// <summary>True when <paramref name="op"/> has a definition.</summary>
    public static bool Supports(Operation op) =>
        op.Dialect == "tensor" && op.Name != "tensor.param" && op.Results.Count == 1;

    /// <summary>True for ops whose value at an index reads their operands at (broadcast) that index only: fusable into
    /// consumers.</summary>
    public static bool IsElementwise(Operation op) =>
        op.Name
            is "tensor.add"
                or "tensor.sub"
                or "tensor.mul"
                or "tensor.div"
                or "tensor.rem"
                or "tensor.neg"
                or "tensor.relu"
                or "tensor.gelu"
                or "tensor.silu"
                or "tensor.sigmoid"
                or "tensor.tanh"
                or "tensor.exp"
                or "tensor.log"
                or "tensor.sqrt"
                or "tensor.rsqrt"
                or "tensor.step"
                or "tensor.finite_or_zero"
                or "tensor.constant"
                or "tensor.broadcast"
                or "tensor.convert";

    /// <summary>The value of <paramref name="op"/>'s result at <paramref name="idx"/>; <paramref name="fresh"/> makes
    /// new loop variables.</summary>
    public static KExpr Define(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        var t = op.Result.TensorType;
        var outShape = t.ShapeArray;
        long[] S(int i) => op.OperandType(i).ShapeArray;
        KExpr Bcast(int i) => read(i, K.Broadcast(idx, S(i)));
        KExpr e = op.Name switch
        {
            "tensor.constant" => op.GetAttr("value") is IntAttr iv
                ? new KConst(iv.Value, KType.I32)
                : new KConst(t.DType.Round((float)op.FloatAttr("value")), KType.F32),
            "tensor.add" or "tensor.sub" or "tensor.mul" or "tensor.div" or "tensor.rem" => new KBin(
                op.Name[7..],
                Bcast(0),
                Bcast(1)
            ),
            "tensor.neg" => new KUn("neg", Bcast(0)),
            "tensor.relu" => Relu(Bcast(0)),
            "tensor.step" => Step(Bcast(0)),
            "tensor.finite_or_zero" => FiniteOrZero(Bcast(0)),
            "tensor.gelu" => Gelu(Bcast(0)),
            "tensor.silu" => Silu(Bcast(0)),
            "tensor.sigmoid" => new KBin(
                "div",
                K.F(1),
                new KBin("add", K.F(1), new KUn("exp", new KUn("neg", Bcast(0))))
            ),
            "tensor.tanh" or "tensor.exp" or "tensor.log" or "tensor.sqrt" => new KUn(op.Name[7..], Bcast(0)),
            "tensor.rsqrt" => new KBin("div", K.F(1), new KUn("sqrt", Bcast(0))),
            "tensor.broadcast" => Bcast(0),
            "tensor.convert" => Bcast(0), // floats compute in f32; the rounding below makes a narrower type
            "tensor.reshape" => read(0, K.Unflatten(K.Flatten(idx, outShape), S(0))),
            "tensor.transpose" => Transpose(op, read, idx),
            "tensor.concat" => Concat(op, read, idx),
            "tensor.slice" => read(
                0,
                idx.Select((x, d) => d == op.IntAttr("axis") ? K.Add(x, K.I(op.IntAttr("start"))) : x).ToArray()
            ),
            "tensor.sum" or "tensor.mean" or "tensor.max" => Reduction(op, read, idx, fresh),
            "tensor.matmul" => Matmul(op, read, idx, fresh),
            "tensor.softmax" => Softmax(op, read, idx, fresh),
            "tensor.layernorm" or "tensor.rmsnorm" => Norm(op, read, idx, fresh),
            "tensor.embedding" => read(1, [Clamp(K.To(KType.Index, read(0, idx[..^1])), S(1)[0]), idx[^1]]),
            "tensor.causal_mask" => new KSelect(
                new KCmp("gt", idx[^1], idx[^2]),
                K.F(op.GetAttr("fill") is null ? float.NegativeInfinity : (float)op.FloatAttr("fill")),
                read(0, idx)
            ),
            "tensor.one_hot" => new KSelect(
                new KCmp(
                    "eq",
                    K.To(
                        KType.Index,
                        op.Operands.Count > 1 ? new KBin("sub", read(0, idx[..^1]), read(1, [])) : read(0, idx[..^1])
                    ),
                    idx[^1]
                ),
                K.F(1),
                K.F(0)
            ),
            "tensor.embedding_grad" => EmbeddingGrad(op, read, idx, fresh),
            "tensor.cross_entropy" => CrossEntropy(op, read, fresh),
            _ => throw new IRException($"no kernel definition for {op.Name}"),
        };
        // The reference rounds every f16/bf16 result.
        return
            t.DType is DType.F16 or DType.BF16
            && op.Name
                is not (
                    "tensor.reshape"
                    or "tensor.transpose"
                    or "tensor.broadcast"
                    or "tensor.concat"
                    or "tensor.slice"
                )
            ? new KRound(t.DType, e)
            : e;
    }

    /// <summary>x / (1 + e^-x); x appears twice, and the code generator computes equal subexpressions once.</summary>
    private static KExpr Silu(KExpr x) =>
        new KBin("div", x, new KBin("add", K.F(1), new KUn("exp", new KUn("neg", x))));

    private static KExpr Relu(KExpr x) =>
        x.Type == KType.I32
            ? new KBin("max", x, new KConst(0, KType.I32))
            : new KSelect(new KCmp("gt", x, K.F(0)), x, new KSelect(new KUn("isnan", x), x, K.F(0)));

    private static KExpr Step(KExpr x) =>
        new KSelect(new KCmp("gt", x, K.F(0)), K.F(1), new KSelect(new KUn("isnan", x), x, K.F(0)));

    /// <summary>x - x is NaN exactly where x is infinite or NaN.</summary>
    private static KExpr FiniteOrZero(KExpr x) => new KSelect(new KUn("isnan", new KBin("sub", x, x)), K.F(0), x);

    private static KExpr Gelu(KExpr x)
    {
        var cube = new KBin("mul", new KBin("mul", new KBin("mul", K.F(0.044715f), x), x), x);
        var inner = new KBin("mul", K.F((float)Sqrt2OverPi), new KBin("add", x, cube));
        return new KBin("mul", new KBin("mul", K.F(0.5f), x), new KBin("add", K.F(1), new KUn("tanh", inner)));
    }

    private static KExpr Clamp(KExpr i, long n) =>
        new KSelect(new KCmp("lt", i, K.I(0)), K.I(0), new KSelect(new KCmp("ge", i, K.I(n)), K.I(n - 1), i));

    private static KExpr Transpose(Operation op, OperandReader read, KExpr[] idx)
    {
        var perm = op.IntsAttr("perm");
        var inIdx = new KExpr[perm.Length];
        for (int d = 0; d < perm.Length; d++)
            inIdx[perm[d]] = idx[d];
        return read(0, inIdx);
    }

    private static KExpr Concat(Operation op, OperandReader read, KExpr[] idx)
    {
        int axis = (int)op.IntAttr("axis");
        var offsets = new List<long>();
        long at = 0;
        foreach (var v in op.Operands)
        {
            offsets.Add(at);
            at += v.TensorType.Shape[axis];
        }
        KExpr Part(int i) => read(i, idx.Select((x, d) => d == axis ? K.Add(x, K.I(-offsets[i])) : x).ToArray());
        KExpr e = Part(op.Operands.Count - 1);
        for (int i = op.Operands.Count - 2; i >= 0; i--)
            e = new KSelect(new KCmp("lt", idx[axis], K.I(offsets[i + 1])), Part(i), e);
        return e;
    }

    private static KExpr Reduction(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        var inShape = op.OperandType(0).ShapeArray;
        var axes = op.IntsAttr("axes").Select(a => (int)a).ToHashSet();
        bool keep = op.BoolAttr("keepdims");
        var inIdx = new KExpr[inShape.Length];
        var vars = new List<(int Var, long Extent)>();
        int o = 0;
        for (int d = 0; d < inShape.Length; d++)
        {
            if (axes.Contains(d))
            {
                int v = fresh();
                vars.Add((v, inShape[d]));
                inIdx[d] = new KVar(v);
                if (keep)
                    o++;
            }
            else
                inIdx[d] = idx[o++];
        }
        KExpr body = read(0, inIdx);
        bool isInt = body.Type == KType.I32;
        string kind = op.Name == "tensor.max" ? "max" : "sum";
        // The reference accumulates every element of the reduced block in one (double) accumulator.
        for (int i = vars.Count - 1; i >= 0; i--)
            body = new KReduce(kind, vars[i].Var, vars[i].Extent, body);
        long count = vars.Aggregate(1L, (p, v) => p * v.Extent);
        if (op.Name == "tensor.mean")
            body = new KBin("div", body, new KConst(count, KType.F64));
        return isInt ? body : K.To(KType.F32, body);
    }

    private static KExpr Matmul(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        var (sa, sb) = (op.OperandType(0).ShapeArray, op.OperandType(1).ShapeArray);
        long k = sa[^1];
        int kv = fresh();
        var kx = new KVar(kv);
        // numpy: a 1-D a is a row (its dimension dropped from the result), a 1-D b a column.
        var outBatch = idx.Length - (sa.Length == 1 ? 0 : 1) - (sb.Length == 1 ? 0 : 1);
        var batch = idx[..outBatch];
        KExpr[] ai = sa.Length == 1 ? [kx] : [.. K.Broadcast(batch, sa[..^2]), idx[outBatch], kx];
        KExpr[] bi = sb.Length == 1 ? [kx] : [.. K.Broadcast(batch, sb[..^2]), kx, idx[^1]];
        return new KReduce("sumf", kv, k, new KBin("mul", read(0, ai), read(1, bi)));
    }

    private static KExpr Softmax(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        int axis = (int)op.IntAttr("axis");
        long n = op.OperandType(0).Shape[axis];
        KExpr At(KExpr i) => read(0, idx.Select((x, d) => d == axis ? i : x).ToArray());
        int mv = fresh(),
            sv = fresh();
        var max = new KReduce("max", mv, n, At(new KVar(mv)));
        var sum = new KReduce("sum", sv, n, new KUn("exp", new KBin("sub", At(new KVar(sv)), max)));
        return K.To(
            KType.F32,
            new KBin("div", K.To(KType.F64, new KUn("exp", new KBin("sub", At(idx[axis]), max))), sum)
        );
    }

    private static KExpr Norm(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        long d = op.OperandType(0).Shape[^1];
        KExpr At(KExpr i) => read(0, [.. idx[..^1], i]);
        KExpr Wide(KExpr i) => K.To(KType.F64, At(i));
        KExpr mean = new KConst(0, KType.F64);
        if (op.Name == "tensor.layernorm")
        {
            int mv = fresh();
            mean = new KBin("div", new KReduce("sum", mv, d, At(new KVar(mv))), new KConst(d, KType.F64));
        }
        int sv = fresh();
        var c = new KBin("sub", Wide(new KVar(sv)), mean);
        var variance = new KBin("div", new KReduce("sum", sv, d, new KBin("mul", c, c)), new KConst(d, KType.F64));
        var inv = K.To(
            KType.F32,
            new KBin(
                "div",
                new KConst(1, KType.F64),
                new KUn("sqrt", new KBin("add", variance, new KConst((float)op.FloatAttr("eps"), KType.F64)))
            )
        );
        KExpr r = new KBin(
            "mul",
            new KBin("mul", K.To(KType.F32, new KBin("sub", Wide(idx[^1]), mean)), inv),
            read(1, [idx[^1]])
        );
        return op.Name == "tensor.layernorm" ? new KBin("add", r, read(2, [idx[^1]])) : new KBin("add", r, K.F(0));
    }

    private static KExpr EmbeddingGrad(Operation op, OperandReader read, KExpr[] idx, Func<int> fresh)
    {
        var ids = op.OperandType(0).ShapeArray;
        long positions = NDArray.ShapeSize(ids);
        int p = fresh();
        var at = K.Unflatten(new KVar(p), ids);
        var hit = new KCmp("eq", K.To(KType.Index, read(0, at)), idx[0]);
        return new KReduce("sumf", p, positions, new KSelect(hit, read(1, [.. at, idx[1]]), K.F(0)));
    }

    private static KExpr CrossEntropy(Operation op, OperandReader read, Func<int> fresh)
    {
        var labels = op.OperandType(1).ShapeArray;
        long positions = NDArray.ShapeSize(labels),
            v = op.OperandType(0).Shape[^1];
        int p = fresh(),
            mv = fresh(),
            sv = fresh();
        var at = K.Unflatten(new KVar(p), labels);
        KExpr Logit(KExpr c) => read(0, [.. at, c]);
        var max = new KReduce("max", mv, v, Logit(new KVar(mv)));
        var sum = new KReduce("sum", sv, v, new KUn("exp", K.To(KType.F64, new KBin("sub", Logit(new KVar(sv)), max))));
        var label = Clamp(K.To(KType.Index, read(1, at)), v);
        var term = new KBin(
            "sub",
            new KBin("add", new KUn("log", sum), K.To(KType.F64, max)),
            K.To(KType.F64, Logit(label))
        );
        return K.To(
            KType.F32,
            new KBin("div", new KReduce("sum", p, positions, term), new KConst(positions, KType.F64))
        );
    }
}
