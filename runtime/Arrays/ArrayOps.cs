using System.Numerics;

namespace ParallelCompiler.Runtime.Arrays;

/// <summary>
/// Whole-array helpers for the runtime: concatenation, splitting and slicing along an axis, elementwise sums and
/// maxima of several arrays, and copies. Every result is a fresh array that shares nothing with its inputs.
/// Axes may be negative, counted from the end as in numpy.
/// </summary>
public static class ArrayOps
{
    /// <summary>The arrays of <paramref name="parts"/> joined along <paramref name="axis"/>, in order.</summary>
    public static NDArray Concat(IReadOnlyList<NDArray> parts, int axis)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0)
            throw new ArgumentException("concat needs at least one array", nameof(parts));
        NDArray first = parts[0];
        int ax = NormaliseAxis(first, axis);
        long total = 0;
        for (int p = 0; p < parts.Count; p++)
        {
            NDArray part = parts[p];
            ArgumentNullException.ThrowIfNull(part, nameof(parts));
            if (
                part.DType != first.DType
                || part.Shape.Length != first.Shape.Length
                || !SameExcept(part.Shape, first.Shape, ax)
            )
                throw new ArgumentException(
                    $"concat along axis {ax}: part {p} is {part.TypeString} but part 0 is " + $"{first.TypeString}"
                );
            total = checked(total + part.Shape[ax]);
        }
        var shape = (long[])first.Shape.Clone();
        shape[ax] = total;
        NDArray result = Uninitialised(first.DType, shape);
        long outer = Outer(shape, ax),
            inner = Inner(shape, ax);
        if (result.F != null)
            ConcatBlocks(parts, p => p.F!, result.F, ax, outer, inner, total);
        else
            ConcatBlocks(parts, p => p.I!, result.I!, ax, outer, inner, total);
        return result;
    }

    /// <summary>
    /// <paramref name="x"/> cut into <paramref name="n"/> equal contiguous chunks along <paramref name="axis"/>;
    /// throws <see cref="ArgumentException"/> when the dimension is not divisible by <paramref name="n"/>.
    /// </summary>
    public static NDArray[] Split(NDArray x, int axis, int n)
    {
        ArgumentNullException.ThrowIfNull(x);
        int ax = NormaliseAxis(x, axis);
        if (n < 1)
            throw new ArgumentException($"split needs at least one chunk, got {n}", nameof(n));
        long dim = x.Shape[ax];
        if (dim % n != 0)
            throw new ArgumentException(
                $"cannot split {x.TypeString} into {n} equal chunks along axis {ax}: {dim} is "
                    + $"not divisible by {n}"
            );
        long chunk = dim / n;
        var chunks = new NDArray[n];
        for (int i = 0; i < n; i++)
            chunks[i] = Slice(x, ax, i * chunk, chunk);
        return chunks;
    }

    /// <summary>Elements <paramref name="start"/> to <paramref name="start"/> + <paramref name="length"/> of <paramref
    /// name="axis"/>.</summary>
    public static NDArray Slice(NDArray x, int axis, long start, long length)
    {
        ArgumentNullException.ThrowIfNull(x);
        int ax = NormaliseAxis(x, axis);
        long dim = x.Shape[ax];
        if (start < 0 || length < 0 || start > dim - length)
            throw new ArgumentException($"slice [{start}, {start} + {length}) is outside axis {ax} of {x.TypeString}");
        var shape = (long[])x.Shape.Clone();
        shape[ax] = length;
        NDArray result = Uninitialised(x.DType, shape);
        long outer = Outer(shape, ax),
            inner = Inner(shape, ax);
        if (result.F != null)
            SliceBlocks(x.F!, result.F, outer, dim * inner, start * inner, length * inner);
        else
            SliceBlocks(x.I!, result.I!, outer, dim * inner, start * inner, length * inner);
        return result;
    }

    /// <summary>
    /// The elementwise sum of arrays of one dtype and shape, added in list order; f16 and bf16 are rounded after
    /// every addition as the interpreter does, and i32 wraps.
    /// </summary>
    public static NDArray Sum(IReadOnlyList<NDArray> xs)
    {
        NDArray acc = Copy(CheckSameType(xs, "sum"));
        for (int k = 1; k < xs.Count; k++)
        {
            if (acc.I != null)
                SumInto(acc.I, xs[k].I!);
            else
                SumInto(acc.DType, acc.F!, xs[k].F!);
        }
        return acc;
    }

    /// <summary>The elementwise maximum of arrays of one dtype and shape; NaN wins, as in numpy.</summary>
    public static NDArray Max(IReadOnlyList<NDArray> xs)
    {
        NDArray acc = Copy(CheckSameType(xs, "max"));
        for (int k = 1; k < xs.Count; k++)
        {
            if (acc.I != null)
                MaxInto(acc.I, xs[k].I!);
            else
                MaxInto(acc.F!, xs[k].F!);
        }
        return acc;
    }

    /// <summary>Adds <paramref name="b"/> into <paramref name="a"/> elementwise, one step of <see cref="Sum"/> (f16
    /// and bf16 rounded after the addition), so a sum computed in parts equals it bit for bit.</summary>
    public static void SumInto(DType t, Span<float> a, ReadOnlySpan<float> b)
    {
        if (t == DType.F32)
        {
            AddInto(a, b);
            return;
        }
        // Rounding after each addition keeps the result identical to a chain of binary adds in the IR.
        for (int i = 0; i < a.Length; i++)
            a[i] = t.Round(a[i] + b[i]);
    }

    /// <summary>Adds <paramref name="b"/> into <paramref name="a"/> elementwise, wrapping.</summary>
    public static void SumInto(Span<int> a, ReadOnlySpan<int> b) => AddInto(a, b);

    /// <summary>The elementwise maximum of <paramref name="a"/> and <paramref name="b"/> into <paramref name="a"/>,
    /// one step of <see cref="Max"/> (NaN wins).</summary>
    public static void MaxInto(Span<float> a, ReadOnlySpan<float> b)
    {
        for (int i = 0; i < a.Length; i++)
            a[i] = MathF.Max(a[i], b[i]);
    }

    /// <summary>The elementwise maximum of <paramref name="a"/> and <paramref name="b"/> into <paramref
    /// name="a"/>.</summary>
    public static void MaxInto(Span<int> a, ReadOnlySpan<int> b)
    {
        for (int i = 0; i < a.Length; i++)
            a[i] = Math.Max(a[i], b[i]);
    }

    /// <summary>A deep copy of <paramref name="x"/>: new values and a new shape array.</summary>
    public static NDArray Copy(NDArray x)
    {
        ArgumentNullException.ThrowIfNull(x);
        var shape = (long[])x.Shape.Clone();
        return x.F != null
            ? NDArray.FromFloats(x.DType, shape, (float[])x.F.Clone())
            : NDArray.FromInts(shape, (int[])x.I!.Clone());
    }

    private static NDArray CheckSameType(IReadOnlyList<NDArray> xs, string what)
    {
        ArgumentNullException.ThrowIfNull(xs);
        if (xs.Count == 0)
            throw new ArgumentException($"{what} needs at least one array", nameof(xs));
        NDArray first = xs[0];
        ArgumentNullException.ThrowIfNull(first, nameof(xs));
        for (int k = 1; k < xs.Count; k++)
        {
            ArgumentNullException.ThrowIfNull(xs[k], nameof(xs));
            if (xs[k].DType != first.DType || !xs[k].Shape.AsSpan().SequenceEqual(first.Shape))
                throw new ArgumentException(
                    $"{what}: array {k} is {xs[k].TypeString} but array 0 is {first.TypeString}"
                );
        }
        return first;
    }

    // Vector<T> addition wraps for integers, which is the i32 semantics we want.
    private static void AddInto<T>(Span<T> a, ReadOnlySpan<T> b)
        where T : struct, INumber<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= a.Length - Vector<T>.Count; i += Vector<T>.Count)
                (new Vector<T>(a[i..]) + new Vector<T>(b[i..])).CopyTo(a[i..]);
        }
        for (; i < a.Length; i++)
            a[i] = unchecked(a[i] + b[i]);
    }

    private static void ConcatBlocks<T>(
        IReadOnlyList<NDArray> parts,
        Func<NDArray, T[]> data,
        T[] dst,
        int ax,
        long outer,
        long inner,
        long total
    )
    {
        long dstRow = total * inner;
        for (long o = 0; o < outer; o++)
        {
            long at = o * dstRow;
            for (int p = 0; p < parts.Count; p++)
            {
                long block = parts[p].Shape[ax] * inner;
                data(parts[p]).AsSpan((int)(o * block), (int)block).CopyTo(dst.AsSpan((int)at, (int)block));
                at += block;
            }
        }
    }

    private static void SliceBlocks<T>(T[] src, T[] dst, long outer, long srcRow, long offset, long block)
    {
        for (long o = 0; o < outer; o++)
            src.AsSpan((int)(o * srcRow + offset), (int)block).CopyTo(dst.AsSpan((int)(o * block), (int)block));
    }

    // Every caller overwrites the whole result, so zero-filling it first would be wasted work.
    private static NDArray Uninitialised(DType dtype, long[] shape)
    {
        long n = NDArray.ShapeSize(shape);
        if (n > Array.MaxLength)
            throw new InsufficientMemoryException($"an array of {n} elements is too large for " + $"the host");
        return dtype.IsFloat()
            ? NDArray.FromFloats(dtype, shape, GC.AllocateUninitializedArray<float>((int)n))
            : NDArray.FromInts(shape, GC.AllocateUninitializedArray<int>((int)n));
    }

    private static int NormaliseAxis(NDArray x, int axis)
    {
        int rank = x.Shape.Length;
        int ax = axis < 0 ? axis + rank : axis;
        if (ax < 0 || ax >= rank)
            throw new ArgumentException($"axis {axis} is out of range for {x.TypeString}", nameof(axis));
        return ax;
    }

    private static bool SameExcept(long[] a, long[] b, int axis)
    {
        for (int i = 0; i < a.Length; i++)
            if (i != axis && a[i] != b[i])
                return false;
        return true;
    }

    /// <summary>The product of the dimensions before <paramref name="axis"/> (the number of blocks along it).</summary>
    public static long Outer(long[] shape, int axis) => NDArray.ShapeSize(shape.AsSpan(0, axis));

    /// <summary>The product of the dimensions after <paramref name="axis"/> (the elements per step along it).</summary>
    public static long Inner(long[] shape, int axis) => NDArray.ShapeSize(shape.AsSpan(axis + 1));

    /// <summary>
    /// The largest difference of <paramref name="actual"/> from <paramref name="expected"/> (same size) relative to
    /// max(|expected|, 1), and where: NaN equals NaN and an infinity itself; any other NaN or infinity is an infinite
    /// difference. (0, -1) when they agree everywhere.
    /// </summary>
    public static (double Error, long Index) WorstRelativeDifference(NDArray expected, NDArray actual)
    {
        (double Error, long Index) worst = (0, -1);
        for (long i = 0; i < expected.Size; i++)
        {
            double e = expected.GetDouble(i),
                a = actual.GetDouble(i);
            if (double.IsNaN(e) && double.IsNaN(a) || e == a)
                continue;
            double err =
                double.IsNaN(e) || double.IsNaN(a) || double.IsInfinity(e) || double.IsInfinity(a)
                    ? double.PositiveInfinity
                    : Math.Abs(e - a) / Math.Max(Math.Abs(e), 1);
            if (err > worst.Error || worst.Index < 0)
                worst = (err, i);
        }
        return worst;
    }
}
