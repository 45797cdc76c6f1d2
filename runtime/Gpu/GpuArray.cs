using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// An array in a GPU's memory: row-major, 4 bytes per element (floats as f32, f16 and bf16 holding values rounded
/// to their precision, as on the host; i32 as i32). Made and freed by a <see cref="GpuHeap"/>.
/// </summary>
public sealed class GpuArray : IArray
{
    internal GpuArray(IGpuDriver gpu, ulong pointer, DType dtype, long[] shape)
    {
        Gpu = gpu;
        Pointer = pointer;
        DType = dtype;
        Shape = shape;
        Count = NDArray.ShapeSize(shape);
    }

    /// <summary>The GPU whose memory holds it.</summary>
    public IGpuDriver Gpu { get; }
    /// <summary>Its device address.</summary>
    public ulong Pointer { get; }
    /// <inheritdoc/>
    public DType DType { get; }
    /// <inheritdoc/>
    public long[] Shape { get; }
    /// <summary>Number of elements.</summary>
    public long Count { get; }
    /// <summary>Bytes it occupies.</summary>
    public long Bytes => Count * ElementBytes;
    /// <inheritdoc/>
    public string TypeString => $"{DType.Name()}[{string.Join(", ", Shape)}]";

    /// <summary>Bytes per element on a GPU, whatever the dtype.</summary>
    public const int ElementBytes = 4;

    /// <inheritdoc/>
    public override string ToString() => $"{TypeString} on {Gpu.Name}";
}

/// <summary>
/// The arrays of one run on one GPU: allocates them, frees each once (a second free or a use after the free is a
/// runtime bug, reported as such), and frees what is left when the run ends.
/// </summary>
public sealed class GpuHeap(IGpuDriver gpu) : IDisposable
{
    private readonly HashSet<GpuArray> _live = new(ReferenceEqualityComparer.Instance);

    /// <summary>The GPU.</summary>
    public IGpuDriver Gpu => gpu;

    /// <summary>Arrays allocated and not yet freed.</summary>
    public int Live { get { lock (_live) return _live.Count; } }

    /// <summary>A new array; zero-filled when <paramref name="zero"/>.</summary>
    public GpuArray Allocate(DType dtype, long[] shape, bool zero)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long bytes = Math.Max(1, NDArray.ShapeSize(shape)) * GpuArray.ElementBytes;
        var a = new GpuArray(gpu, gpu.Allocate(bytes), dtype, (long[])shape.Clone());
        if (zero) gpu.Zero(a.Pointer, bytes);
        lock (_live) _live.Add(a);
        return a;
    }

    /// <summary>Frees <paramref name="a"/>.</summary>
    public void Free(GpuArray a)
    {
        lock (_live)
            if (!_live.Remove(a)) throw new InvalidOperationException($"{a} was freed twice or belongs to another run");
        gpu.Free(a.Pointer);
    }

    /// <summary><paramref name="a"/>'s memory as a new array of <paramref name="shape"/> (as many elements); <paramref name="a"/> is no longer live.</summary>
    public GpuArray Reshape(GpuArray a, long[] shape)
    {
        if (NDArray.ShapeSize(shape) != a.Count) throw new ArgumentException($"cannot view {a.TypeString} as [{string.Join(", ", shape)}]");
        var b = new GpuArray(gpu, a.Pointer, a.DType, (long[])shape.Clone());
        lock (_live)
        {
            if (!_live.Remove(a)) throw new InvalidOperationException($"{a} was already freed");
            _live.Add(b);
        }
        return b;
    }

    /// <summary>Throws unless <paramref name="a"/> is a live array of this heap's GPU.</summary>
    public void CheckLive(GpuArray a, string use)
    {
        if (a.Gpu != gpu) throw new InvalidOperationException($"{use}: {a} is not in the memory of {gpu.Name}");
        lock (_live)
            if (!_live.Contains(a)) throw new InvalidOperationException($"{use}: {a} was already freed");
    }

    /// <summary>Frees every array still allocated.</summary>
    public void Dispose()
    {
        GpuArray[] left;
        lock (_live) { left = [.. _live]; _live.Clear(); }
        foreach (var a in left) gpu.Free(a.Pointer);
    }
}
