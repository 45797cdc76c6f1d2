using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

internal static partial class ReferenceKernels
{
    public static NDArray Unary(Operation op, NDArray x)
    {
        var t = op.Result.TensorType;
        if (x.DType == DType.I32)
        {
            var fi =
                ScalarSemantics.UnaryI(op.Name) ?? throw new InterpreterException($"{op.Name} is not defined on i32");
            var ri = new int[x.I!.Length];
            for (int i = 0; i < ri.Length; i++)
                ri[i] = fi(x.I[i]);
            return NDArray.FromInts(t.ShapeArray, ri);
        }
        var f = ScalarSemantics.UnaryF(op.Name)!;
        var r = new float[x.F!.Length];
        for (int i = 0; i < r.Length; i++)
            r[i] = f(x.F[i]);
        return Float(t, r);
    }

    public static NDArray Binary(Operation op, NDArray a, NDArray b)
    {
        var t = op.Result.TensorType;
        var shape = t.ShapeArray;
        long[][] strides = [Indexing.BroadcastStrides(a.Shape, shape), Indexing.BroadcastStrides(b.Shape, shape)];
        if (a.DType == DType.I32)
        {
            var fi = ScalarSemantics.BinaryI(op.Name)!;
            var (ai, bi) = (a.I!, b.I!);
            var ri = new int[NDArray.ShapeSize(shape)];
            Indexing.ForEach(shape, strides, (o, off) => ri[o] = fi(ai[off[0]], bi[off[1]]));
            return NDArray.FromInts(shape, ri);
        }
        var f = ScalarSemantics.BinaryF(op.Name)!;
        var (af, bf) = (a.F!, b.F!);
        var r = new float[NDArray.ShapeSize(shape)];
        if (af.Length == r.Length && bf.Length == r.Length)
            for (int i = 0; i < r.Length; i++)
                r[i] = f(af[i], bf[i]);
        else if (bf.Length == 1 && af.Length == r.Length)
            for (int i = 0; i < r.Length; i++)
                r[i] = f(af[i], bf[0]);
        else
            Indexing.ForEach(shape, strides, (o, off) => r[o] = f(af[off[0]], bf[off[1]]));
        return Float(t, r);
    }

    /// <summary>A float result of type <paramref name="t"/>, rounded to f16/bf16 precision where the type says
    /// so.</summary>
    public static NDArray Float(TensorType t, float[] data)
    {
        if (t.DType != DType.F32)
            for (int i = 0; i < data.Length; i++)
                data[i] = t.DType.Round(data[i]);
        return NDArray.FromFloats(t.DType, t.ShapeArray, data);
    }
}
