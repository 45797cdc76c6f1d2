using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Train;

/// <summary>Checks shared by the train ops: operand 0 is a parameter read and operand 1 has its type.</summary>
public abstract class ParameterEffectOpDef : OpDef
{
    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        if (!sig.Operands[0].SameShapeAndType(sig.Operands[1]))
            throw sig.Error($"{sig.Operands[1]} does not have the parameter's type {sig.Operands[0]}");
        return [];
    }

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        if (op.Operands[0].DefiningOp?.Name != "tensor.param")
            throw new IRException($"{Name[6..]}: operand 0 must be a tensor.param");
    }

    /// <summary>The path of the parameter <paramref name="op"/> is about.</summary>
    public static string PathOf(Operation op) => op.Operands[0].DefiningOp!.StringAttr("path");
}

/// <summary><c>train.grad %param, %g</c>: marks %g as the loss's gradient with respect to %param (made by autodiff,
/// consumed by the optimizer pass).</summary>
public sealed class GradOpDef : ParameterEffectOpDef
{
    /// <inheritdoc/>
    public override string Name => "train.grad";

    /// <inheritdoc/>
    public override string Summary => "the gradient of the loss with respect to a parameter";
}

/// <summary><c>train.update %param, %new</c>: after this step the parameter (or optimizer state) at %param's path holds
/// %new.</summary>
public sealed class UpdateOpDef : ParameterEffectOpDef
{
    /// <inheritdoc/>
    public override string Name => "train.update";

    /// <inheritdoc/>
    public override string Summary => "write a parameter's (or optimizer state's) value for the next step";

    /// <summary>Both operands share every factor; the write happens in the parameter's layout (see
    /// insert-reshards).</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var b = new ShardingRuleBuilder();
        var f = b.Factors(sig.Operands[0].Shape);
        return b.Operand(f).Operand(f).Build();
    }
}
