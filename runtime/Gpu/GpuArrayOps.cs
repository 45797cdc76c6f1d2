using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// Whole-array operations on the arrays of one GPU with the bundle's collective kernels: sums and maxima of n
/// arrays read through a table of their addresses, and slices and concatenations as strided block copies (plain
/// device copies when the blocks are contiguous). This is what collectives compute with when several logical
/// devices share the GPU; the NCCL communicator uses the block copies to bring chunks together.
/// </summary>
public sealed class GpuArrayOps(GpuHeap heap) : IArrayOps<GpuArray>
{
    private IGpuDriver Gpu => heap.Gpu;

    /// <inheritdoc/>
    public GpuArray Sum(IReadOnlyList<GpuArray> xs) => Reduce(ReduceKind.Sum, xs);

    /// <inheritdoc/>
    public GpuArray Max(IReadOnlyList<GpuArray> xs) => Reduce(ReduceKind.Max, xs);

    private GpuArray Reduce(ReduceKind kind, IReadOnlyList<GpuArray> xs)
    {
        var first = SameType(xs, kind == ReduceKind.Sum ? "sum" : "max");
        if (xs.Count == 1)
            return Copy(first);
        return ReduceAt(kind, first.DType, first.Shape, xs.Select(x => x.Pointer).ToArray());
    }

    /// <summary>
    /// The reduction (a sum in order, or a maximum where NaN wins), by the generated kernels, of the arrays of
    /// <paramref name="dtype"/> and <paramref name="shape"/> at <paramref name="addresses"/> on this GPU.
    /// </summary>
    public unsafe GpuArray ReduceAt(ReduceKind kind, DType dtype, long[] shape, ulong[] addresses)
    {
        var output = heap.Allocate(dtype, shape, zero: false);
        ulong table = heap.Scratch(addresses.Length * sizeof(ulong));
        try
        {
            fixed (ulong* p = addresses)
                Gpu.CopyToDevice(table, p, addresses.Length * sizeof(ulong));
            Gpu.Counters.AddressTable(addresses.Length * sizeof(ulong));
            string name = CollectiveKernels.Reduce(kind, dtype);
            Gpu.Launch(
                CollectiveKernels.Shape(name, output.Count),
                [output.Pointer, table],
                [addresses.Length, output.Count]
            );
        }
        finally
        {
            heap.FreeScratch(table, addresses.Length * sizeof(ulong));
        }
        return output;
    }

    /// <inheritdoc/>
    public GpuArray Concat(IReadOnlyList<GpuArray> parts, int dim)
    {
        if (parts.Count == 0)
            throw new ArgumentException("concat needs at least one array", nameof(parts));
        var first = parts[0];
        foreach (var p in parts)
        {
            heap.CheckLive(p, "concat");
            if (
                p.DType != first.DType
                || p.Shape.Length != first.Shape.Length
                || Enumerable.Range(0, p.Shape.Length).Any(d => d != dim && p.Shape[d] != first.Shape[d])
            )
                throw new ArgumentException($"concat along dim {dim}: {p.TypeString} does not fit {first.TypeString}");
        }
        var shape = (long[])first.Shape.Clone();
        shape[dim] = parts.Sum(p => p.Shape[dim]);
        var output = heap.Allocate(first.DType, shape, zero: false);
        long outer = ArrayOps.Outer(shape, dim),
            inner = ArrayOps.Inner(shape, dim),
            offset = 0;
        foreach (var p in parts)
        {
            long len = p.Shape[dim] * inner;
            CopyBlocks(output, p, outer, len, len, 0, shape[dim] * inner, offset);
            offset += len;
        }
        return output;
    }

    /// <inheritdoc/>
    public GpuArray Slice(GpuArray x, int dim, long start, long length)
    {
        heap.CheckLive(x, "slice");
        if (start < 0 || length < 0 || start + length > x.Shape[dim])
            throw new ArgumentException(
                $"slice [{start}, {start} + {length}) is outside dim " + $"{dim} of {x.TypeString}"
            );
        var shape = (long[])x.Shape.Clone();
        shape[dim] = length;
        var output = heap.Allocate(x.DType, shape, zero: false);
        long inner = ArrayOps.Inner(shape, dim);
        CopyBlocks(
            output,
            x,
            ArrayOps.Outer(shape, dim),
            length * inner,
            x.Shape[dim] * inner,
            start * inner,
            length * inner,
            0
        );
        return output;
    }

    /// <inheritdoc/>
    public GpuArray Copy(GpuArray x)
    {
        heap.CheckLive(x, "copy");
        var output = heap.Allocate(x.DType, x.Shape, zero: false);
        Gpu.CopyOnDevice(output.Pointer, x.Pointer, x.Bytes);
        return output;
    }

    /// <inheritdoc/>
    public GpuArray Zeros(DType dtype, long[] shape) => heap.Allocate(dtype, shape, zero: true);

    /// <inheritdoc/>
    public void Release(GpuArray x) => heap.Free(x);

    /// <summary>
    /// dst[o * dstStride + dstOffset + i] = src[o * srcStride + srcOffset + i] for o &lt; outer, i &lt; len (in
    /// elements): one device copy when the blocks are contiguous on both sides, else the copy kernel.
    /// </summary>
    public void CopyBlocks(
        GpuArray dst,
        GpuArray src,
        long outer,
        long len,
        long srcStride,
        long srcOffset,
        long dstStride,
        long dstOffset
    )
    {
        if (outer * len == 0)
            return;
        const int e = GpuArray.ElementBytes;
        if (outer == 1 || srcStride == len && dstStride == len)
            Gpu.CopyOnDevice(
                dst.Pointer + (ulong)(dstOffset * e),
                src.Pointer + (ulong)(srcOffset * e),
                outer * len * e
            );
        else
            Gpu.Launch(
                CollectiveKernels.Shape(CollectiveKernels.CopyBlocks, outer * len),
                [dst.Pointer, src.Pointer],
                [outer, len, srcStride, srcOffset, dstStride, dstOffset]
            );
    }

    private GpuArray SameType(IReadOnlyList<GpuArray> xs, string what)
    {
        if (xs.Count == 0)
            throw new ArgumentException($"{what} needs at least one array", nameof(xs));
        foreach (var x in xs)
        {
            heap.CheckLive(x, what);
            if (x.DType != xs[0].DType || !x.Shape.AsSpan().SequenceEqual(xs[0].Shape))
                throw new ArgumentException($"{what}: {x.TypeString} and {xs[0].TypeString} differ");
        }
        return xs[0];
    }
}
