using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Dist;

/// <summary><c>dist.mesh {sym_name, axes, shape}</c>: the logical device mesh with named axes; one per
/// module.</summary>
public sealed class MeshOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.mesh";

    /// <inheritdoc/>
    public override string Summary => "a logical device mesh with named axes";

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        sig.Str("sym_name");
        var shape = sig.Ints("shape");
        if (sig.Attrs.GetValueOrDefault("axes") is not ArrayAttr axes || !axes.Items.All(a => a is StringAttr))
            throw sig.Error("needs attribute 'axes' as an array of strings");
        var names = axes.AsStrings();
        if (names.Length != shape.Length)
            throw sig.Error($"{names.Length} axes but {shape.Length} sizes");
        if (names.Distinct().Count() != names.Length)
            throw sig.Error("axis names must be distinct");
        foreach (var (n, s) in names.Zip(shape))
            if (s < 1)
                throw sig.Error($"axis '{n}' has size {s}; sizes must be at least 1");
        return [];
    }
}

/// <summary><c>dist.reshard %x : (T) -> T'</c>: the same tensor in the layout given by the result type's
/// sharding.</summary>
public sealed class ReshardOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.reshard";

    /// <inheritdoc/>
    public override string Summary => "change the layout of a tensor to the result type's sharding";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var t = sig.GivenTensor();
        if (t.Sharding == null)
            throw sig.Error("the result type must carry a sharding");
        if (!t.SameShapeAndType(sig.Operands[0]))
            throw sig.Error($"result type {t} differs from the operand {sig.Operands[0]} in more than its sharding");
        return [t];
    }
}
