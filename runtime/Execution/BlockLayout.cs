using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>
/// Where a device's block of a global array lies: dimension d split over mesh axes (major first) gives the
/// device the chunk numbered by its position in the group over those axes. Used to hand each device its
/// inputs and parameters and to put the results back together.
/// </summary>
public static class BlockLayout
{
    /// <summary>The offsets and shape of <paramref name="rank"/>'s block.</summary>
    public static (long[] Offset, long[] Shape) Of(
        long[] globalShape,
        IReadOnlyList<IReadOnlyList<string>> dims,
        DeviceMesh mesh,
        int rank
    )
    {
        var offset = new long[globalShape.Length];
        var shape = (long[])globalShape.Clone();
        for (int d = 0; d < shape.Length; d++)
        {
            if (dims[d].Count == 0)
                continue;
            long n = mesh.Product(dims[d]);
            if (shape[d] % n != 0)
                throw new ArgumentException($"dimension {d} ({shape[d]}) is not divisible by {n} " + $"devices");
            shape[d] /= n;
            offset[d] = mesh.IndexInGroup(rank, dims[d]) * shape[d];
        }
        return (offset, shape);
    }

    /// <summary>This device's block of a global array.</summary>
    public static NDArray Block(NDArray global, IReadOnlyList<IReadOnlyList<string>> dims, DeviceMesh mesh, int rank)
    {
        var (offset, shape) = Of(global.Shape, dims, mesh, rank);
        return Cut(global, offset, shape);
    }

    /// <summary>The block of <paramref name="global"/> at <paramref name="offset"/> of <paramref name="shape"/>, as
    /// a new array.</summary>
    public static NDArray Cut(NDArray global, long[] offset, long[] shape)
    {
        ArgumentNullException.ThrowIfNull(global);
        var x = global;
        for (int d = 0; d < shape.Length; d++)
            if (shape[d] != global.Shape[d])
                x = ArrayOps.Slice(x, d, offset[d], shape[d]);
        return ReferenceEquals(x, global) ? ArrayOps.Copy(global) : x;
    }

    /// <summary>The global array from the devices' blocks (devices holding copies of the same block agree; the first is
    /// used; null: the device does not hold it).</summary>
    public static NDArray Assemble(
        IReadOnlyList<NDArray?> blocks,
        IReadOnlyList<IReadOnlyList<string>> dims,
        DeviceMesh mesh,
        long[] globalShape
    )
    {
        var first = blocks.FirstOrDefault(b => b != null) ?? throw new ArgumentException("no device holds the value");
        var result = NDArray.Zeros(first.DType, globalShape);
        var done = new HashSet<string>();
        for (int rank = 0; rank < blocks.Count; rank++)
        {
            if (blocks[rank] is not { } b)
                continue; // a device of another pipeline stage
            var (offset, shape) = Of(globalShape, dims, mesh, rank);
            if (!done.Add(string.Join(",", offset)))
                continue;
            if (!b.Shape.SequenceEqual(shape))
                throw new ArgumentException(
                    $"device {rank} returned {b.TypeString}, expected a block of shape "
                        + $"[{string.Join(", ", shape)}]"
                );
            CopyBlock(b, result, offset);
        }
        return result;
    }

    /// <summary>Copies <paramref name="block"/> into <paramref name="target"/> at <paramref name="offset"/>.</summary>
    public static void Put(NDArray block, NDArray target, long[] offset) => CopyBlock(block, target, offset);

    /// <summary>Copies <paramref name="block"/> into <paramref name="target"/> at <paramref name="offset"/>, one
    /// contiguous row at a time.</summary>
    private static void CopyBlock(NDArray block, NDArray target, long[] offset)
    {
        int r = block.Shape.Length;
        if (r == 0)
        {
            Copy(block, 0, target, 0, 1);
            return;
        }
        long row = block.Shape[r - 1];
        long rows = block.Size / Math.Max(row, 1);
        if (row == 0)
            return;
        var strides = NDArray.Strides(target.Shape);
        var idx = new long[r];
        for (long k = 0; k < rows; k++)
        {
            long rem = k,
                dst = offset[r - 1];
            for (int d = r - 2; d >= 0; d--)
            {
                idx[d] = rem % block.Shape[d];
                rem /= block.Shape[d];
                dst += (idx[d] + offset[d]) * strides[d];
            }
            Copy(block, k * row, target, dst, row);
        }
    }

    private static void Copy(NDArray src, long srcIndex, NDArray dst, long dstIndex, long n)
    {
        if (src.F != null)
            Array.Copy(src.F, srcIndex, dst.F!, dstIndex, n);
        else
            Array.Copy(src.I!, srcIndex, dst.I!, dstIndex, n);
    }
}
