using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

internal static partial class ReferenceKernels
{
    /// <summary>Reshape shares the data: arrays are never mutated once made.</summary>
    public static NDArray Reshape(Operation op, NDArray x) =>
        x.F != null
            ? NDArray.FromFloats(x.DType, op.Result.TensorType.ShapeArray, x.F)
            : NDArray.FromInts(op.Result.TensorType.ShapeArray, x.I!);

    /// <summary>Copies x with its dimensions permuted (result dim i = operand dim perm[i]).</summary>
    public static NDArray Transpose(Operation op, NDArray x)
    {
        var perm = op.IntsAttr("perm");
        var inStrides = NDArray.Strides(x.Shape);
        var outShape = op.Result.TensorType.ShapeArray;
        var strides = perm.Select(p => inStrides[p]).ToArray();
        return Gather(x, outShape, strides);
    }

    /// <summary>numpy broadcast_to, materialised.</summary>
    public static NDArray Broadcast(Operation op, NDArray x)
    {
        var outShape = op.Result.TensorType.ShapeArray;
        return Gather(x, outShape, Indexing.BroadcastStrides(x.Shape, outShape));
    }

    /// <summary>out[i] = x[offset(i)] where offsets follow <paramref name="strides"/> over <paramref
    /// name="outShape"/>.</summary>
    private static NDArray Gather(NDArray x, long[] outShape, long[] strides)
    {
        long n = NDArray.ShapeSize(outShape);
        if (x.F != null)
        {
            var r = new float[n];
            var src = x.F;
            Indexing.ForEach(outShape, [strides], (o, off) => r[o] = src[off[0]]);
            return NDArray.FromFloats(x.DType, outShape, r);
        }
        var ri = new int[n];
        var si = x.I!;
        Indexing.ForEach(outShape, [strides], (o, off) => ri[o] = si[off[0]]);
        return NDArray.FromInts(outShape, ri);
    }

    /// <summary>Joins the operands along the op's axis.</summary>
    public static NDArray Concat(Operation op, NDArray[] xs)
    {
        int axis = (int)op.IntAttr("axis");
        var shape = op.Result.TensorType.ShapeArray;
        var (outer, total, inner) = Indexing.AroundAxis(shape, axis);
        bool isFloat = xs[0].F != null;
        var rf = isFloat ? new float[NDArray.ShapeSize(shape)] : null;
        var ri = isFloat ? null : new int[NDArray.ShapeSize(shape)];
        long offset = 0;
        foreach (var x in xs)
        {
            long size = x.Shape[axis];
            for (long o = 0; o < outer; o++)
            {
                long src = o * size * inner,
                    dst = o * total * inner + offset * inner,
                    len = size * inner;
                if (isFloat)
                    Array.Copy(x.F!, src, rf!, dst, len);
                else
                    Array.Copy(x.I!, src, ri!, dst, len);
            }
            offset += size;
        }
        return isFloat ? NDArray.FromFloats(xs[0].DType, shape, rf!) : NDArray.FromInts(shape, ri!);
    }
}
