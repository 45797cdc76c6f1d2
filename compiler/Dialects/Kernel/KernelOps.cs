using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Kernel;

/// <summary>
/// <c>%r = kernel.launch %a, %b {callee = "k3_softmax"} : (A, B) -> R</c>: runs the kernel function <c>@k3_softmax</c>
/// (a function of the module made by form-kernels, whose body is the fused tensor ops) on its operands. The
/// result type is the callee's; stage and phase attributes place it in a pipeline like any op.
/// </summary>
public sealed class LaunchOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "kernel.launch";

    /// <inheritdoc/>
    public override string Summary => "run a kernel (an outlined function of fused tensor ops) on per-device tensors";

    /// <inheritdoc/>
    public override int MaxOperands => int.MaxValue;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        sig.Str("callee");
        return [sig.GivenTensor()];
    }

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        string callee = op.StringAttr("callee");
        var module = op.ParentOp?.ParentOp;
        var func = module?.Function(callee) ?? throw new IRException($"launch: no kernel function @{callee}");
        if (func.GetAttr("kernel") == null)
            throw new IRException($"launch: @{callee} is not a kernel function (it " + $"has no 'kernel' attribute)");
        var args = func.Regions[0].Entry.Arguments;
        if (args.Count != op.Operands.Count)
            throw new IRException($"launch: @{callee} takes {args.Count} operand(s), " + $"got {op.Operands.Count}");
        for (int i = 0; i < args.Count; i++)
            if (!args[i].Type.Equals(op.Operands[i].Type))
                throw new IRException(
                    $"launch: operand {i} is {op.Operands[i].Type} but @{callee} takes {args[i].Type}"
                );
        if (!func.ResultTypes().Single().Equals(op.Result.Type))
            throw new IRException($"launch: @{callee} returns {func.ResultTypes().Single()}, not {op.Result.Type}");
    }
}
