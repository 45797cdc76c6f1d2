using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary>Reductions over <c>axes</c> (normalised: non-negative, sorted, distinct) with <c>keepdims</c>.</summary>
public abstract class ReductionOp : OpDef
{
    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <summary>True when only float operands are allowed.</summary>
    protected virtual bool FloatOnly => false;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    )
    {
        var sig = new OpSignature(Name, operands, attrs, null);
        int rank = operands[0].Rank;
        var axes = sig.Ints("axes").Select(a => ShapeRules.NormalizeAxis(sig, a, rank)).ToArray();
        if (axes.Distinct().Count() != axes.Length)
            throw sig.Error($"repeated axis in " + $"[{string.Join(", ", sig.Ints("axes"))}]");
        Array.Sort(axes);
        return new Dictionary<string, Attr>
        {
            ["axes"] = Attr.Ints(axes),
            ["keepdims"] = Attr.Bool(sig.Bool("keepdims", false)),
        };
    }

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        if (FloatOnly)
            sig.RequireFloat(x, "the operand");
        var axes = sig.Ints("axes");
        bool keep = sig.Bool("keepdims", false);
        var shape = new List<long>();
        for (int i = 0; i < x.Rank; i++)
        {
            if (!axes.Contains(i))
                shape.Add(x.Shape[i]);
            else if (keep)
                shape.Add(1);
            else if (x.Shape[i] == 0 && ZeroSizeIsError)
                throw sig.Error($"cannot reduce a zero-size dimension {i} of " + $"{x.ToSourceString()}");
        }
        return [new TensorType(Name == "tensor.max" ? x.DType : sig.Accumulated(x.DType), shape)];
    }

    /// <summary>Reduced factors are reductions (a split one leaves partial sums), except for max, which needs them
    /// whole.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var x = sig.Operands[0];
        var axes = sig.Ints("axes");
        bool keep = sig.Bool("keepdims", false);
        var b = new ShardingRuleBuilder();
        var f = Enumerable
            .Range(0, x.Rank)
            .Select(i =>
                b.Factor(
                    x.Shape[i],
                    !axes.Contains(i) ? FactorKind.Parallel
                        : IsSum ? FactorKind.Reduction
                        : FactorKind.NeedReplication
                )
            )
            .ToArray();
        b.Operand(f);
        var res = Enumerable
            .Range(0, x.Rank)
            .Where(i => keep || !axes.Contains(i))
            .Select(i => axes.Contains(i) ? -1 : f[i])
            .ToArray();
        return b.Result(res).Build();
    }

    /// <summary>True when the reduction is a (scaled) sum, so partial results add up.</summary>
    protected virtual bool IsSum => true;

    /// <summary>True for reductions without an identity (max).</summary>
    protected virtual bool ZeroSizeIsError => false;
}

/// <summary><c>tensor.sum %x {axes, keepdims}</c>.</summary>
public sealed class SumOp : ReductionOp
{
    /** <inheritdoc/> */public override string Name => "tensor.sum";

    /** <inheritdoc/> */public override string Summary => "sum over axes";
}

/// <summary><c>tensor.mean %x {axes, keepdims}</c>.</summary>
public sealed class MeanOp : ReductionOp
{
    /** <inheritdoc/> */public override string Name => "tensor.mean";

    /** <inheritdoc/> */public override string Summary => "mean over axes";

    /** <inheritdoc/> */protected override bool FloatOnly => true;
}

/// <summary><c>tensor.max %x {axes, keepdims}</c>.</summary>
public sealed class MaxOp : ReductionOp
{
    /** <inheritdoc/> */public override string Name => "tensor.max";

    /** <inheritdoc/> */public override string Summary => "maximum over axes";

    /** <inheritdoc/> */protected override bool ZeroSizeIsError => true;

    /** <inheritdoc/> */protected override bool IsSum => false;
}
