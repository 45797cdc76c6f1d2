namespace ParallelCompiler.Runtime.Arrays;

/// <summary>
/// What an array a device holds tells about itself: its element type and shape. Where its values live is its
/// kind's business: an <see cref="NDArray"/> keeps them in host memory, a GPU array in device memory.
/// </summary>
public interface IArray
{
    /// <summary>Element type.</summary>
    DType DType { get; }

    /// <summary>Dimensions; empty for a scalar.</summary>
    long[] Shape { get; }

    /// <summary>Shape as the language writes it, e.g. f32[8, 64].</summary>
    string TypeString { get; }
}

/// <summary>
/// The whole-array operations collectives are made of, for one kind of array: what the in-process communicator
/// computes with, so that the same rendezvous serves host arrays and arrays in the memory of a shared GPU. Every
/// result is a new array that shares nothing with its inputs.
/// </summary>
public interface IArrayOps<T>
    where T : class, IArray
{
    /// <summary>The elementwise sum of arrays of one type, added in list order (f16/bf16 rounded after each add, i32
    /// wrapping).</summary>
    T Sum(IReadOnlyList<T> xs);

    /// <summary>The elementwise maximum of arrays of one type; NaN wins.</summary>
    T Max(IReadOnlyList<T> xs);

    /// <summary>The arrays joined along <paramref name="dim"/>, in order.</summary>
    T Concat(IReadOnlyList<T> parts, int dim);

    /// <summary>Elements <paramref name="start"/> to <paramref name="start"/> + <paramref name="length"/> of dimension
    /// <paramref name="dim"/>.</summary>
    T Slice(T x, int dim, long start, long length);

    /// <summary>A copy.</summary>
    T Copy(T x);

    /// <summary>A zero-filled array.</summary>
    T Zeros(DType dtype, long[] shape);

    /// <summary>Gives back a temporary's memory (host arrays are left to the collector).</summary>
    void Release(T x);
}

/// <summary>Helpers over any <see cref="IArrayOps{T}"/>.</summary>
public static class ArrayOpsExtensions
{
    /// <summary><paramref name="x"/> cut into <paramref name="n"/> equal chunks along <paramref name="dim"/> (which
    /// must divide).</summary>
    public static T[] Split<T>(this IArrayOps<T> ops, T x, int dim, int n)
        where T : class, IArray
    {
        long len = x.Shape[dim] / n;
        var chunks = new T[n];
        for (int i = 0; i < n; i++)
            chunks[i] = ops.Slice(x, dim, i * len, len);
        return chunks;
    }
}

/// <summary>The operations over host arrays (<see cref="ArrayOps"/>).</summary>
public sealed class HostArrayOps : IArrayOps<NDArray>
{
    /// <summary>The one instance.</summary>
    public static readonly HostArrayOps Instance = new();

    private HostArrayOps() { }

    /// <inheritdoc/>
    public NDArray Sum(IReadOnlyList<NDArray> xs) => ArrayOps.Sum(xs);

    /// <inheritdoc/>
    public NDArray Max(IReadOnlyList<NDArray> xs) => ArrayOps.Max(xs);

    /// <inheritdoc/>
    public NDArray Concat(IReadOnlyList<NDArray> parts, int dim) => ArrayOps.Concat(parts, dim);

    /// <inheritdoc/>
    public NDArray Slice(NDArray x, int dim, long start, long length) => ArrayOps.Slice(x, dim, start, length);

    /// <inheritdoc/>
    public NDArray Copy(NDArray x) => ArrayOps.Copy(x);

    /// <inheritdoc/>
    public NDArray Zeros(DType dtype, long[] shape) => NDArray.Zeros(dtype, (long[])shape.Clone());

    /// <inheritdoc/>
    public void Release(NDArray x) { }
}
