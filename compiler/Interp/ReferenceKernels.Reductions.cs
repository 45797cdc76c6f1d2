using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

internal static partial class ReferenceKernels
{
    /// <summary>sum, mean and max over the op's axes (accumulated in double for floats).</summary>
    public static NDArray Reduce(Operation op, NDArray x)
    {
        var t = op.Result.TensorType;
        var axes = op.IntsAttr("axes");
        // The output index of each input element: reduced axes get stride 0.
        var keptShape = x.Shape.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray();
        var outStrides = NDArray.Strides(keptShape);
        for (int i = 0; i < axes.Length; i++)
            outStrides[axes[i]] = 0;
        long outSize = NDArray.ShapeSize(keptShape);
        long count = axes.Aggregate(1L, (p, a) => p * x.Shape[a]);
        bool isMax = op.Name == "tensor.max";
        var acc = new double[outSize];
        if (isMax)
            Array.Fill(acc, double.NegativeInfinity);
        var src = x.F;
        var srcI = x.I;
        Indexing.ForEach(
            x.Shape,
            [outStrides],
            (i, off) =>
            {
                double v = src != null ? src[i] : (double)srcI![i];
                long o = off[0];
                if (!isMax)
                    acc[o] += v;
                else if (v > acc[o] || double.IsNaN(v))
                    acc[o] = v;
            }
        );
        if (op.Name == "tensor.mean")
            for (int i = 0; i < acc.Length; i++)
                acc[i] /= count;
        if (x.DType == DType.I32)
            return NDArray.FromInts(t.ShapeArray, acc.Select(v => unchecked((int)(long)v)).ToArray());
        return Float(t, acc.Select(v => (float)v).ToArray());
    }

    /// <summary>Numerically stable softmax along the op's axis.</summary>
    public static NDArray Softmax(Operation op, NDArray x)
    {
        var (outer, size, inner) = Indexing.AroundAxis(x.Shape, (int)op.IntAttr("axis"));
        var src = x.F!;
        var r = new float[src.Length];
        for (long o = 0; o < outer; o++)
        for (long j = 0; j < inner; j++)
        {
            long baseIdx = o * size * inner + j;
            float max = float.NegativeInfinity;
            for (long k = 0; k < size; k++)
                max = Math.Max(max, src[baseIdx + k * inner]);
            double sum = 0;
            for (long k = 0; k < size; k++)
            {
                float e = max == float.NegativeInfinity ? float.NaN : MathF.Exp(src[baseIdx + k * inner] - max);
                r[baseIdx + k * inner] = e;
                sum += e;
            }
            for (long k = 0; k < size; k++)
                r[baseIdx + k * inner] = (float)(r[baseIdx + k * inner] / sum);
        }
        return Float(op.Result.TensorType, r);
    }
}
