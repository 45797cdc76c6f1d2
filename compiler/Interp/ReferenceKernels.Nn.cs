using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

internal static partial class ReferenceKernels
{
    /// <summary>layernorm and rmsnorm over the last axis; statistics in double.</summary>
    public static NDArray Norm(Operation op, NDArray x, NDArray g, NDArray? b)
    {
        float eps = (float)op.FloatAttr("eps");
        long d = x.Shape[^1];
        long rows = d == 0 ? 0 : x.Size / d;
        var src = x.F!;
        var r = new float[src.Length];
        for (long row = 0; row < rows; row++)
        {
            long o = row * d;
            double mean = 0,
                sq = 0;
            if (b != null)
            {
                for (long i = 0; i < d; i++)
                    mean += src[o + i];
                mean /= d;
            }
            for (long i = 0; i < d; i++)
            {
                double c = src[o + i] - mean;
                sq += c * c;
            }
            float inv = (float)(1.0 / Math.Sqrt(sq / d + eps));
            for (long i = 0; i < d; i++)
                r[o + i] = (float)(src[o + i] - mean) * inv * g.F![i] + (b?.F![i] ?? 0f);
        }
        return Float(op.Result.TensorType, r);
    }

    /// <summary>Rows of the table picked by ids; an id outside the table is an error naming it and its
    /// position.</summary>
    public static NDArray Embedding(Operation op, NDArray ids, NDArray table)
    {
        long v = table.Shape[0],
            d = table.Shape[1];
        var r = new float[ids.Size * d];
        for (long i = 0; i < ids.Size; i++)
        {
            int id = ids.I![i];
            if (id < 0 || id >= v)
                throw new InterpreterException(
                    $"embedding: id {id} at position {Position(ids.Shape, i)} is outside " + $"the table's {v} rows"
                );
            Array.Copy(table.F!, id * d, r, i * d, d);
        }
        return NDArray.FromFloats(table.DType, op.Result.TensorType.ShapeArray, r);
    }

    /// <summary>Entries with column &gt; row in the last two axes become the fill value (-inf by default).</summary>
    public static NDArray CausalMask(Operation op, NDArray x)
    {
        long rows = x.Shape[^2],
            cols = x.Shape[^1];
        var r = (float[])x.F!.Clone();
        float fill = op.GetAttr("fill") is null ? float.NegativeInfinity : (float)op.FloatAttr("fill");
        for (long m = 0; m < r.Length; m += rows * cols)
        for (long i = 0; i < rows; i++)
        for (long j = i + 1; j < cols; j++)
            r[m + i * cols + j] = fill;
        return NDArray.FromFloats(x.DType, x.Shape, r);
    }

    /// <summary>Mean over positions of logsumexp(logits) - logits[label].</summary>
    public static NDArray CrossEntropy(Operation op, NDArray logits, NDArray labels)
    {
        long v = logits.Shape[^1];
        long positions = labels.Size;
        double total = 0;
        for (long p = 0; p < positions; p++)
        {
            int label = labels.I![p];
            if (label < 0 || label >= v)
                throw new InterpreterException(
                    $"cross_entropy: label {label} at position {Position(labels.Shape, p)} "
                        + $"is outside the {v} classes"
                );
            long o = p * v;
            float max = float.NegativeInfinity;
            for (long i = 0; i < v; i++)
                max = Math.Max(max, logits.F![o + i]);
            double sum = 0;
            for (long i = 0; i < v; i++)
                sum += Math.Exp(logits.F![o + i] - max);
            total += Math.Log(sum) + max - logits.F![o + label];
        }
        return Float(op.Result.TensorType, [(float)(total / positions)]);
    }

    /// <summary>Rows of zeros with a one at each label; with <paramref name="first"/>, the block of classes from it
    /// (labels outside the block give rows of zeros, labels outside all <c>total</c> classes an error).</summary>
    public static NDArray OneHot(Operation op, NDArray labels, NDArray? first = null)
    {
        long c = op.IntAttr("classes");
        long from = first?.I![0] ?? 0;
        long total = first == null ? c : op.IntAttr("total");
        var r = new float[labels.Size * c];
        for (long p = 0; p < labels.Size; p++)
        {
            int label = labels.I![p];
            if (label < 0 || label >= total)
                throw new InterpreterException(
                    $"one_hot: label {label} at position {Position(labels.Shape, p)} is "
                        + $"outside the {total} classes"
                );
            if (label >= from && label < from + c)
                r[p * c + label - from] = 1f;
        }
        return Float(op.Result.TensorType, r);
    }

    /// <summary>Sums the rows of dy into the table rows their ids name.</summary>
    public static NDArray EmbeddingGrad(Operation op, NDArray ids, NDArray dy)
    {
        var t = op.Result.TensorType;
        long rows = t.Shape[0],
            d = t.Shape[1];
        var r = new float[rows * d];
        for (long i = 0; i < ids.Size; i++)
        {
            long id = ids.I![i];
            if (id < 0 || id >= rows)
                throw new InterpreterException(
                    $"embedding_grad: id {id} at position {Position(ids.Shape, i)} is "
                        + $"outside the table's {rows} rows"
                );
            for (long j = 0; j < d; j++)
                r[id * d + j] += dy.F![i * d + j];
        }
        return Float(t, r);
    }

    private static string Position(long[] shape, long flat)
    {
        var idx = new long[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            idx[i] = flat % shape[i];
            flat /= shape[i];
        }
        return "[" + string.Join(", ", idx) + "]";
    }
}
