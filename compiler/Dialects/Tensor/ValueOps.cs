using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary><c>tensor.constant {value}</c>: a tensor whose every element is <c>value</c> (a splat; scalars
/// included).</summary>
public sealed class ConstantOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.constant";

    /// <inheritdoc/>
    public override string Summary => "a splat constant of the result type";

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var t = sig.GivenTensor();
        var v = sig.Attrs.GetValueOrDefault("value");
        bool ok = t.DType.IsFloat() ? v is FloatAttr : v is IntAttr;
        if (!ok)
            throw sig.Error($"value {v?.ToString() ?? "(missing)"} does not fit the result type {t}");
        return [t];
    }

    /// <summary>A splat can be made in any layout.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Source(results[0].Shape);
}

/// <summary>
/// <c>tensor.param {path, init, std?}</c>: a trainable weight of the model, named by its dotted path. Its value
/// comes from the weight file or from its initialiser (<c>normal</c> with <c>std</c>, <c>zeros</c>, <c>ones</c>).
/// </summary>
public sealed class ParamOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.param";

    /// <inheritdoc/>
    public override string Summary => "a model parameter, by dotted path, with its initialiser";

    /// <summary>A parameter is part of the model's interface even when unused: DCE and CSE leave it alone.</summary>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var t = sig.GivenTensor();
        sig.Str("path");
        switch (sig.Str("init"))
        {
            case "normal":
                sig.Float("std");
                break;
            case "zeros":
            case "ones":
                break;
            default:
                throw sig.Error($"unknown initialiser '{sig.Str("init")}' (expected normal, zeros or ones)");
        }
        return [t];
    }

    /// <summary>A parameter is produced in its declared layout (its initialiser is sliced per device).</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Source(results[0].Shape);

    /// <summary>A purely functional program must not read the same parameter twice under different types.</summary>
    public override void Verify(Operation op)
    {
        if (op.ParentOp?.Name != "func.func")
            throw new IRException("param: must be directly inside a func.func");
    }
}
