using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Pipe;

/// <summary><c>pipe.boundary</c>: an explicit pipeline stage boundary from a <c>stage;</c> statement.</summary>
public sealed class BoundaryOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.boundary";
    /// <inheritdoc/>
    public override string Summary => "a user-given pipeline stage boundary (operations before it belong to earlier stages)";
    /// <inheritdoc/>
    public override bool IsPure => false;
    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => [];
}

/// <summary>
/// <c>pipe.transfer %v {from, to}</c>: the value computed by pipeline stage <c>from</c>, as stage <c>to</c> sees
/// it. One op in the single program; the per-device runtime makes it a send on the devices of stage <c>from</c>
/// and a receive on those of stage <c>to</c>. In training its gradient is a transfer the other way.
/// </summary>
public sealed class TransferOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.transfer";
    /// <inheritdoc/>
    public override string Summary => "send a value from one pipeline stage to another";
    /// <inheritdoc/>
    public override int MinOperands => 1;
    /// <inheritdoc/>
    public override bool IsPure => false;
    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        long from = sig.Int("from"), to = sig.Int("to");
        if (from < 0 || to < 0 || from == to) throw sig.Error($"stages must be distinct and non-negative, got from = {from}, to = {to}");
        return [sig.Operands[0]];
    }
    /// <summary>The same tensor on another stage: every factor passes through.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        Tensor.ShardingRules.Pointwise(results[0].Shape);
}
