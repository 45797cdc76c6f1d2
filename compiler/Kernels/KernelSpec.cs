using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Kernels;

/// <summary>A kernel operand or result: element type and (per-device) shape.</summary>
public sealed record TensorSpec(DType DType, long[] Shape)
{
    /// <summary>The kernel expression type of its elements.</summary>
    public KType ElementType => DType == DType.I32 ? KType.I32 : KType.F32;

    /// <summary>Number of elements.</summary>
    public long Size => NDArray.ShapeSize(Shape);
}

/// <summary>The shape of a kernel that is one f32 matmul of rank-2-or-more operands (batch dimensions
/// broadcast).</summary>
public sealed record MatmulShape(long[] Batch, long[] BatchStrideA, long[] BatchStrideB, long M, long N, long K);

/// <summary>
/// One kernel: inputs, output and the body <c>out[v0, ..., vR-1] = Body</c> (output dimension d is loop variable d).
/// Made from an outlined kernel function (form-kernels) by composing the definitions of its ops.
/// </summary>
public sealed class KernelSpec
{
    /// <summary>The symbol the kernel is emitted under.</summary>
    public required string Name { get; init; }

    /// <summary>Inputs in argument order.</summary>
    public required IReadOnlyList<TensorSpec> Inputs { get; init; }

    /// <summary>The result.</summary>
    public required TensorSpec Output { get; init; }

    /// <summary>The value of each output element.</summary>
    public required KExpr Body { get; init; }

    /// <summary>Set when the kernel is a single f32 matmul: it then gets a tiled implementation.</summary>
    public MatmulShape? Matmul { get; init; }

    /// <summary>The kernel of an outlined function: its arguments are the inputs, its one returned value the
    /// output.</summary>
    public static KernelSpec FromFunction(Operation func)
    {
        var entry = func.Regions[0].Entry;
        var ret = entry.Last ?? throw new IRException("kernel function has no body");
        if (ret.Name != "func.return" || ret.Operands.Count != 1)
            throw new IRException($"kernel " + $"@{func.StringAttr("sym_name")} must return one value");
        var args = entry.Arguments.ToList();
        int next = ret.Operands[0].TensorType.Rank;
        int Fresh() => next++;
        KExpr Value(Value v, KExpr[] idx)
        {
            if (v.DefiningOp is { } op)
                return OpCompute.Define(op, (i, at) => Value(op.Operands[i], at), idx, Fresh);
            int k = args.IndexOf((BlockArgument)v);
            var t = v.TensorType;
            return new KLoad(k, K.Flatten(idx, t.ShapeArray), t.DType == DType.I32 ? KType.I32 : KType.F32);
        }
        var result = ret.Operands[0];
        var outIdx = Enumerable.Range(0, result.TensorType.Rank).Select(d => (KExpr)new KVar(d)).ToArray();
        var body = Value(result, outIdx);
        return new KernelSpec
        {
            Name = func.StringAttr("sym_name"),
            Inputs = args.Select(a => new TensorSpec(a.TensorType.DType, a.TensorType.ShapeArray)).ToArray(),
            Output = new TensorSpec(result.TensorType.DType, result.TensorType.ShapeArray),
            Body = body,
            Matmul = MatmulOf(result.DefiningOp, args),
        };
    }

    private static MatmulShape? MatmulOf(Operation? op, List<BlockArgument> args)
    {
        if (op is not { Name: "tensor.matmul" } || op.Result.TensorType.DType != DType.F32)
            return null;
        if (
            op.Operands.Any(v => v is not BlockArgument || v.TensorType.Rank < 2)
            || !ReferenceEquals(op.Operands[0], args[0])
            || !ReferenceEquals(op.Operands[1], args[^1])
        )
            return null;
        var (sa, sb) = (op.OperandType(0).ShapeArray, op.OperandType(1).ShapeArray);
        var batch = op.Result.TensorType.ShapeArray[..^2];
        long[] Strides(long[] s)
        {
            var own = s[..^2];
            var st = new long[batch.Length];
            long stride = s[^1] * s[^2];
            for (int d = own.Length - 1, o = batch.Length - 1; d >= 0; d--, o--)
            {
                st[o] = own[d] == 1 ? 0 : stride;
                stride *= own[d];
            }
            return st;
        }
        return new MatmulShape(batch, Strides(sa), Strides(sb), sa[^2], sb[^1], sa[^1]);
    }
}
