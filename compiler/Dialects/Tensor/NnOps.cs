using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary><c>tensor.softmax %x {axis}</c>: exp(x - max) / sum(exp(x - max)) along an axis.</summary>
public sealed class SoftmaxOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.softmax";

    /// <inheritdoc/>
    public override string Summary => "softmax along an axis";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    ) => ShapeRules.NormalizeAxisAttr(Name, operands, attrs);

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        sig.RequireFloat(sig.Operands[0], "the operand");
        return [sig.Operands[0].WithSharding(null)];
    }

    /// <summary>Pointwise except along the axis, which a device may hold a block of: the maximum and the sum over
    /// it are then exchanged (all-reduced) between the blocks.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.PointwiseExchanged(results[0].Shape, (int)sig.Int("axis"));
}

/// <summary><c>tensor.layernorm %x, %g, %b {eps}</c>: normalise over the last axis, then scale by g and shift by
/// b.</summary>
public sealed class LayerNormOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.layernorm";

    /// <inheritdoc/>
    public override string Summary => "(x - mean) / sqrt(var + eps) * g + b over the last axis";

    /// <inheritdoc/>
    public override int MinOperands => 3;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => NormShapes.Check(sig);

    /// <inheritdoc/>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        NormShapes.Rule(sig);
}

/// <summary><c>tensor.rmsnorm %x, %g {eps}</c>: x / sqrt(mean(x^2) + eps) * g over the last axis.</summary>
public sealed class RmsNormOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.rmsnorm";

    /// <inheritdoc/>
    public override string Summary => "x / sqrt(mean(x^2) + eps) * g over the last axis";

    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => NormShapes.Check(sig);

    /// <inheritdoc/>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        NormShapes.Rule(sig);
}

internal static class NormShapes
{
    /// <summary>The normalised (last) axis is needed whole, and the scale and shift share it.</summary>
    public static ShardingRule Rule(OpSignature sig)
    {
        var x = sig.Operands[0];
        var b = new ShardingRuleBuilder();
        var f = b.Factors(x.Shape);
        b.Replicate(f[^1]);
        b.Operand(f);
        for (int i = 1; i < sig.Operands.Count; i++)
            b.Operand(f[^1]);
        return b.Result(f).Build();
    }

    public static IReadOnlyList<MplType> Check(OpSignature sig)
    {
        var x = sig.Operands[0];
        sig.RequireFloat(x, "the input");
        if (x.Rank == 0)
            throw sig.Error("the input must have at least one dimension");
        sig.Float("eps");
        long d = x.Shape[^1];
        foreach (var p in sig.Operands.Skip(1))
        {
            sig.RequireSameDType(x, p);
            if (p.Rank != 1 || p.Shape[0] != d)
                throw sig.Error(
                    $"scale and shift must be {x.DType.Name()}[{d}] to match the last axis of "
                        + $"{x.ToSourceString()}, got {p.ToSourceString()}"
                );
        }
        return [x.WithSharding(null)];
    }
}

/// <summary><c>tensor.embedding %ids, %table</c>: rows of table [V, D] picked by i32 ids; result ids.shape +
/// [D].</summary>
public sealed class EmbeddingOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.embedding";

    /// <inheritdoc/>
    public override string Summary => "gather rows of a [V, D] table by integer ids";

    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (ids, table) = (sig.Operands[0], sig.Operands[1]);
        if (ids.DType != DType.I32)
            throw sig.Error($"ids must be i32, got {ids.ToSourceString()}");
        if (table.Rank != 2)
            throw sig.Error($"the table must have rank 2 ([V, D]), got {table.ToSourceString()}");
        sig.RequireFloat(table, "the table");
        return [new TensorType(table.DType, ids.Shape.Append(table.Shape[1]))];
    }

    /// <summary>Ids index the table's rows, so the rows are needed whole; positions and columns are parallel.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var (ids, table) = (sig.Operands[0], sig.Operands[1]);
        var b = new ShardingRuleBuilder();
        var pos = b.Factors(ids.Shape);
        int rows = b.Factor(table.Shape[0], FactorKind.NeedReplication),
            cols = b.Factor(table.Shape[1]);
        return b.Operand(pos).Operand(rows, cols).Result([.. pos, cols]).Build();
    }
}

/// <summary><c>tensor.causal_mask %x {fill?}</c>: entries above the diagonal of the last two axes become <c>fill</c>
/// (-inf by default; the gradient uses 0).</summary>
public sealed class CausalMaskOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.causal_mask";

    /// <inheritdoc/>
    public override string Summary => "set entries above the diagonal of the last two axes to -inf";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        sig.RequireFloat(x, "the operand");
        if (x.Rank < 2)
            throw sig.Error($"the operand needs at least two dimensions, got {x.ToSourceString()}");
        return [x.WithSharding(null)];
    }

    /// <summary>The mask depends on global row and column indices, so the last two axes are needed whole.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Pointwise(results[0].Shape, results[0].Rank - 2, results[0].Rank - 1);
}

/// <summary><c>tensor.cross_entropy %logits, %labels</c>: mean over positions of -log softmax(logits)[label]; a
/// scalar.</summary>
public sealed class CrossEntropyOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.cross_entropy";

    /// <inheritdoc/>
    public override string Summary => "mean over all positions of -log softmax(logits)[label]";

    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (logits, labels) = (sig.Operands[0], sig.Operands[1]);
        sig.RequireFloat(logits, "the logits");
        if (labels.DType != DType.I32)
            throw sig.Error($"labels must be i32, got {labels.ToSourceString()}");
        if (logits.Rank == 0 || !labels.Shape.SequenceEqual(logits.Shape.Take(logits.Rank - 1)))
            throw sig.Error(
                $"labels {labels.ToSourceString()} must have the shape of logits "
                    + $"{logits.ToSourceString()} without its last axis"
            );
        return [TensorType.Scalar(logits.DType)];
    }

    /// <summary>Positions are reductions (the mean splits into partial sums). A device may hold a block of the
    /// classes (vocabulary-parallel cross-entropy): the maximum, the sum of exponentials and the labels' logits are
    /// then exchanged between the blocks, so the loss is complete over their axes.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var logits = sig.Operands[0];
        var b = new ShardingRuleBuilder();
        var pos = b.Factors(logits.Shape.Take(logits.Rank - 1).ToArray(), FactorKind.Reduction);
        int classes = b.Factor(logits.Shape[^1], FactorKind.Exchanged);
        return b.Operand([.. pos, classes]).Operand(pos).Result().Build();
    }
}
