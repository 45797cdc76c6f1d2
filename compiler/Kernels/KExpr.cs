using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Kernels;

/// <summary>The scalar types of kernel expressions: 64-bit indices, the tensor element types, f64 accumulators,
/// booleans.</summary>
public enum KType
{
    /// <summary>A 64-bit loop index.</summary>
    Index,

    /// <summary>float.</summary>
    F32,

    /// <summary>int (wrapping).</summary>
    I32,

    /// <summary>double, for accumulations the reference computes in double.</summary>
    F64,

    /// <summary>A comparison result.</summary>
    Bool,
}

/// <summary>
/// A scalar expression over loop indices and kernel inputs: the body of a kernel, <c>out[i0, ..., in] = body</c>.
/// Records compare by structure, so equal subexpressions are computed once, and reductions that do not depend on
/// the innermost loops are computed once per iteration of the loop they do depend on (a row's max and sum in a
/// softmax, a row's mean in a layernorm).
/// </summary>
public abstract record KExpr
{
    /// <summary>The type of the value.</summary>
    public abstract KType Type { get; }
}

/// <summary>A loop index: output dimension d is variable d; reductions bind fresh ones.</summary>
public sealed record KVar(int Id) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => KType.Index;
}

/// <summary>A constant of type <paramref name="T"/>.</summary>
public sealed record KConst(double Value, KType T) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => T;
}

/// <summary>
/// A binary operation on two values of one type: add, sub, mul, div, rem, max, min (index div and rem are of
/// non-negative values; i32 div and rem floor and give 0 for a zero divisor; f32 rem takes the divisor's sign).
/// </summary>
public sealed record KBin(string Op, KExpr A, KExpr B) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => A.Type;
}

/// <summary>A unary operation: neg, exp, log, sqrt, tanh, isnan (bool).</summary>
public sealed record KUn(string Op, KExpr A) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => Op == "isnan" ? KType.Bool : A.Type;
}

/// <summary>A conversion between types (floats to integers truncate).</summary>
public sealed record KCast(KType To, KExpr A) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => To;
}

/// <summary>A comparison: lt, le, gt, ge, eq, ne (floats ordered: false with a NaN), and, or.</summary>
public sealed record KCmp(string Pred, KExpr A, KExpr B) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => KType.Bool;
}

/// <summary>One of two values; only the chosen one is computed (the other may read out of bounds).</summary>
public sealed record KSelect(KExpr Cond, KExpr Then, KExpr Else) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => Then.Type;
}

/// <summary>Element <paramref name="Flat"/> of kernel input <paramref name="Input"/> (row-major).</summary>
public sealed record KLoad(int Input, KExpr Flat, KType T) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => T;
}

/// <summary>
/// A reduction of <paramref name="Body"/> over variable <paramref name="Var"/> in [0, <paramref name="Extent"/>):
/// <c>sum</c> (f32 bodies accumulate in f64, i32 wrap), <c>sumf</c> (accumulates in f32, in order), <c>max</c>
/// (NaN wins).
/// </summary>
public sealed record KReduce(string Kind, int Var, long Extent, KExpr Body) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => Kind == "sum" && Body.Type == KType.F32 ? KType.F64 : Body.Type;
}

/// <summary>An f32 rounded to f16 or bf16 (round to nearest even), as the reference does after every op.</summary>
public sealed record KRound(DType To, KExpr A) : KExpr
{
    /// <inheritdoc/>
    public override KType Type => KType.F32;
}

/// <summary>Builders that fold constants, so index arithmetic stays small.</summary>
public static class K
{
    /// <summary>An index constant.</summary>
    public static KExpr I(long v) => new KConst(v, KType.Index);

    /// <summary>An f32 constant.</summary>
    public static KExpr F(double v) => new KConst(v, KType.F32);

    private static bool Is(KExpr e, long v) => e is KConst c && c.Value == v;

    /// <summary>a + b.</summary>
    public static KExpr Add(KExpr a, KExpr b) =>
        a.Type == KType.Index && Is(a, 0) ? b
        : a.Type == KType.Index && Is(b, 0) ? a
        : a is KConst ca && b is KConst cb && a.Type == KType.Index ? I((long)ca.Value + (long)cb.Value)
        : new KBin("add", a, b);

    /// <summary>a * b.</summary>
    public static KExpr Mul(KExpr a, KExpr b) =>
        a.Type == KType.Index && (Is(a, 0) || Is(b, 0)) ? I(0)
        : a.Type == KType.Index && Is(a, 1) ? b
        : a.Type == KType.Index && Is(b, 1) ? a
        : a is KConst ca && b is KConst cb && a.Type == KType.Index ? I((long)ca.Value * (long)cb.Value)
        : new KBin("mul", a, b);

    /// <summary>a / b (index: floor of non-negative values).</summary>
    public static KExpr Div(KExpr a, long b) =>
        b == 1 ? a
        : a is KConst c ? I((long)c.Value / b)
        : new KBin("div", a, I(b));

    /// <summary>a mod b (index, non-negative).</summary>
    public static KExpr Rem(KExpr a, long b) =>
        b == 1 ? I(0)
        : a is KConst c ? I((long)c.Value % b)
        : new KBin("rem", a, I(b));

    /// <summary>Converts <paramref name="e"/> to <paramref name="t"/> (nothing when it already is).</summary>
    public static KExpr To(KType t, KExpr e) =>
        e.Type == t ? e
        : e is KConst c && t != KType.Bool ? new KConst(c.Value, t)
        : new KCast(t, e);

    /// <summary>The row-major flat index of <paramref name="idx"/> in <paramref name="shape"/>; undoes <see
    /// cref="Unflatten"/>.</summary>
    public static KExpr Flatten(IReadOnlyList<KExpr> idx, IReadOnlyList<long> shape)
    {
        if (idx.Count == 0)
            return I(0);
        // An index that is the unflattening of some flat index f in this very shape flattens back to f.
        var last = idx[^1];
        KExpr? f =
            last is KBin { Op: "rem" } r && Is(r.B, shape[^1]) ? r.A
            : shape.Count == 1 ? last
            : null;
        if (f != null && Unflatten(f, shape).SequenceEqual(idx))
            return f;
        KExpr flat = I(0);
        for (int d = 0; d < idx.Count; d++)
            flat = Add(Mul(flat, I(shape[d])), shape[d] == 1 ? I(0) : idx[d]);
        return flat;
    }

    /// <summary>The multi-index of flat index <paramref name="flat"/> in <paramref name="shape"/>.</summary>
    public static KExpr[] Unflatten(KExpr flat, IReadOnlyList<long> shape)
    {
        var r = new KExpr[shape.Count];
        long stride = 1;
        for (int d = shape.Count - 1; d >= 0; d--)
        {
            var q = Div(flat, stride);
            r[d] =
                shape[d] == 1 ? I(0)
                : d == 0 ? q
                : Rem(q, shape[d]);
            stride *= shape[d];
        }
        return r;
    }

    /// <summary>The index of an operand of shape <paramref name="operand"/> broadcast (numpy rules) to <paramref
    /// name="outIdx"/>.</summary>
    public static KExpr[] Broadcast(IReadOnlyList<KExpr> outIdx, IReadOnlyList<long> operand)
    {
        int lead = outIdx.Count - operand.Count;
        return operand.Select((s, d) => s == 1 ? I(0) : outIdx[lead + d]).ToArray();
    }
}
