using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary><c>tensor.reshape %x {shape}</c>: same elements in row-major order, new dimensions.</summary>
public sealed class ReshapeOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.reshape";

    /// <inheritdoc/>
    public override string Summary => "row-major reshape to a shape with the same number of elements";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        var shape = sig.Ints("shape");
        if (shape.Any(d => d < 0))
            throw sig.Error($"negative dimension in {ShapeRules.Str(shape)}");
        long n = 1;
        foreach (long d in shape)
            n = checked(n * d);
        if (n != x.NumElements)
            throw sig.Error(
                $"cannot reshape {x.ToSourceString()} ({x.NumElements} elements) to "
                    + $"{ShapeRules.Str(shape)} ({n} elements)"
            );
        return [new TensorType(x.DType, shape)];
    }

    /// <inheritdoc/>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Reshape(sig.Operands[0].Shape, results[0].Shape);
}

/// <summary><c>tensor.transpose %x {perm}</c>: result dimension i is operand dimension perm[i].</summary>
public sealed class TransposeOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.transpose";

    /// <inheritdoc/>
    public override string Summary => "permute dimensions: result dim i = operand dim perm[i]";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    )
    {
        var sig = new OpSignature(Name, operands, attrs, null);
        int rank = operands[0].Rank;
        var perm = sig.Ints("perm");
        if (perm.Length != rank)
            throw sig.Error(
                $"permutation {ShapeRules.Str(perm)} has {perm.Length} entries but "
                    + $"the operand {operands[0].ToSourceString()} has rank {rank}"
            );
        var norm = perm.Select(p => ShapeRules.NormalizeAxis(sig, p, rank)).ToArray();
        if (norm.Distinct().Count() != rank)
            throw sig.Error($"{ShapeRules.Str(perm)} is not a permutation");
        return new Dictionary<string, Attr> { ["perm"] = Attr.Ints(norm) };
    }

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        return [new TensorType(x.DType, sig.Ints("perm").Select(p => x.Shape[(int)p]))];
    }

    /// <summary>Result dimension i is the factor of operand dimension perm[i].</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var b = new ShardingRuleBuilder();
        var f = b.Factors(sig.Operands[0].Shape);
        return b.Operand(f).Result(sig.Ints("perm").Select(p => f[p]).ToArray()).Build();
    }
}

/// <summary><c>tensor.broadcast %x {shape}</c>: numpy's broadcast_to.</summary>
public sealed class BroadcastOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.broadcast";

    /// <inheritdoc/>
    public override string Summary => "numpy broadcast_to";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        var shape = sig.Ints("shape");
        if (!ShapeRules.BroadcastsTo(x.Shape, shape))
            throw sig.Error($"cannot broadcast {x.ToSourceString()} to {ShapeRules.Str(shape)}");
        return [new TensorType(x.DType, shape)];
    }

    /// <inheritdoc/>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var b = new ShardingRuleBuilder();
        var f = b.Factors(results[0].Shape);
        return b.BroadcastOperand(sig.Operands[0].Shape, results[0].Shape, f).Result(f).Build();
    }
}

/// <summary><c>tensor.concat %a, %b, ... {axis}</c>: join along one axis.</summary>
public sealed class ConcatOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.concat";

    /// <inheritdoc/>
    public override string Summary => "concatenate along an axis";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override int MaxOperands => int.MaxValue;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    ) => ShapeRules.NormalizeAxisAttr(Name, operands, attrs);

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var first = sig.Operands[0];
        int axis = (int)sig.Int("axis");
        var shape = first.ShapeArray;
        foreach (var t in sig.Operands.Skip(1))
        {
            sig.RequireSameDType(first, t);
            bool ok =
                t.Rank == first.Rank && Enumerable.Range(0, t.Rank).All(i => i == axis || t.Shape[i] == first.Shape[i]);
            if (!ok)
                throw sig.Error(
                    $"shapes {first.ToSourceString()} and {t.ToSourceString()} differ outside axis " + $"{axis}"
                );
            shape[axis] += t.Shape[axis];
        }
        return [new TensorType(first.DType, shape)];
    }

    /// <summary>Every dimension but the axis is shared; each operand's piece of the axis must be whole.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        int axis = (int)sig.Int("axis");
        var b = new ShardingRuleBuilder();
        var f = b.Factors(results[0].Shape);
        b.Replicate(f[axis]);
        foreach (var t in sig.Operands)
            b.Operand(
                f.Select((x, i) => i == axis ? b.Factor(t.Shape[axis], FactorKind.NeedReplication) : x).ToArray()
            );
        return b.Result(f).Build();
    }
}
