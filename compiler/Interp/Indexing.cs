namespace ParallelCompiler.Interp;

/// <summary>Index arithmetic for row-major arrays with broadcasting.</summary>
internal static class Indexing
{
    /// <summary>Strides of <paramref name="shape"/> aligned to the right of <paramref name="outShape"/>, 0 where
    /// broadcast.</summary>
    public static long[] BroadcastStrides(IReadOnlyList<long> shape, IReadOnlyList<long> outShape)
    {
        var s = new long[outShape.Count];
        long acc = 1;
        for (int i = shape.Count - 1; i >= 0; i--)
        {
            int o = i + outShape.Count - shape.Count;
            s[o] = shape[i] == 1 ? 0 : acc;
            acc *= shape[i];
        }
        return s;
    }

    /// <summary>
    /// For every element of <paramref name="outShape"/> in row-major order, calls <paramref name="body"/> with the
    /// output index and the flat offsets into each input given by its strides.
    /// </summary>
    public static void ForEach(long[] outShape, long[][] strides, Action<long, long[]> body)
    {
        long n = NDArray.ShapeSize(outShape);
        int rank = outShape.Length;
        var idx = new long[rank];
        var offs = new long[strides.Length];
        for (long flat = 0; flat < n; flat++)
        {
            body(flat, offs);
            for (int d = rank - 1; d >= 0; d--)
            {
                idx[d]++;
                for (int k = 0; k < offs.Length; k++)
                    offs[k] += strides[k][d];
                if (idx[d] < outShape[d])
                    break;
                for (int k = 0; k < offs.Length; k++)
                    offs[k] -= strides[k][d] * idx[d];
                idx[d] = 0;
            }
        }
    }

    /// <summary>Splits a shape around <paramref name="axis"/> into (outer, size, inner) element counts.</summary>
    public static (long Outer, long Size, long Inner) AroundAxis(IReadOnlyList<long> shape, int axis)
    {
        long outer = 1,
            inner = 1;
        for (int i = 0; i < axis; i++)
            outer *= shape[i];
        for (int i = axis + 1; i < shape.Count; i++)
            inner *= shape[i];
        return (outer, shape[axis], inner);
    }
}
