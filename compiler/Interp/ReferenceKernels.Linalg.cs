using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

internal static partial class ReferenceKernels
{
    /// <summary>numpy matmul: 1-D operands promoted, batch dimensions broadcast; i-k-j loops over each
    /// matrix.</summary>
    public static NDArray Matmul(Operation op, NDArray a, NDArray b)
    {
        var t = op.Result.TensorType;
        var sa = a.Shape.Length == 1 ? new[] { 1L, a.Shape[0] } : a.Shape;
        var sb = b.Shape.Length == 1 ? new[] { b.Shape[0], 1L } : b.Shape;
        long m = sa[^2],
            k = sa[^1],
            n = sb[^1];
        var batch = Dialects.Tensor.ShapeRules.Broadcast(sa[..^2], sb[..^2])!;
        long[][] strides = [Indexing.BroadcastStrides(sa[..^2], batch), Indexing.BroadcastStrides(sb[..^2], batch)];
        long batchCount = NDArray.ShapeSize(batch);
        if (a.DType == DType.I32)
        {
            var ri = new int[batchCount * m * n];
            Indexing.ForEach(
                batch,
                strides,
                (bi, off) =>
                {
                    for (long i = 0; i < m; i++)
                    for (long p = 0; p < k; p++)
                    {
                        int av = a.I![off[0] * m * k + i * k + p];
                        for (long j = 0; j < n; j++)
                            ri[bi * m * n + i * n + j] += unchecked(av * b.I![off[1] * k * n + p * n + j]);
                    }
                }
            );
            return NDArray.FromInts(t.ShapeArray, ri);
        }
        var r = new float[batchCount * m * n];
        var (af, bf) = (a.F!, b.F!);
        Indexing.ForEach(
            batch,
            strides,
            (bi, off) =>
            {
                var c = r.AsSpan((int)(bi * m * n), (int)(m * n));
                for (long i = 0; i < m; i++)
                {
                    var row = c.Slice((int)(i * n), (int)n);
                    for (long p = 0; p < k; p++)
                    {
                        float av = af[off[0] * m * k + i * k + p];
                        var brow = bf.AsSpan((int)(off[1] * k * n + p * n), (int)n);
                        for (int j = 0; j < row.Length; j++)
                            row[j] += av * brow[j];
                    }
                }
            }
        );
        return Float(t, r);
    }
}
