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
/// Device memory kept for reuse, by size (rounded up to 256 bytes): every step of a program allocates the same
/// sizes, so after the first step a step takes no memory from the driver (whose free may wait for the GPU). Lives
/// as long as its GPU back end; its memory goes back to the driver when it is disposed.
/// </summary>
public sealed class GpuPool(IGpuDriver gpu) : IDisposable
{
    private readonly Dictionary<long, Stack<ulong>> _free = [];
    private long _cached;

    /// <summary>The GPU.</summary>
    public IGpuDriver Gpu => gpu;

    /// <summary>Bytes held for reuse.</summary>
    public long CachedBytes => Interlocked.Read(ref _cached);

    /// <summary>The size an allocation of <paramref name="bytes"/> occupies.</summary>
    public static long Rounded(long bytes) => (Math.Max(bytes, 1) + 255) / 256 * 256;

    /// <summary>Memory for <paramref name="bytes"/>: a kept block of that size, else a new allocation.</summary>
    public ulong Take(long bytes)
    {
        bytes = Rounded(bytes);
        lock (_free)
            if (_free.TryGetValue(bytes, out var stack) && stack.Count > 0)
            {
                Interlocked.Add(ref _cached, -bytes);
                return stack.Pop();
            }
        return gpu.Allocate(bytes);
    }

    /// <summary>Keeps the block at <paramref name="pointer"/> of <paramref name="bytes"/> (as given to <see
    /// cref="Take"/>) for reuse.</summary>
    public void Give(ulong pointer, long bytes)
    {
        bytes = Rounded(bytes);
        // Before another thread can take it: a copy into it must follow the work issued with it so far.
        gpu.Retire(pointer);
        lock (_free)
        {
            if (!_free.TryGetValue(bytes, out var stack))
                _free[bytes] = stack = new Stack<ulong>();
            stack.Push(pointer);
        }
        Interlocked.Add(ref _cached, bytes);
    }

    /// <summary>
    /// Frees every kept block, each even when another could not be freed (after a failed run the driver may refuse;
    /// the memory goes with the context then), so that disposing never hides the failure that ended the run.
    /// </summary>
    public void Dispose()
    {
        lock (_free)
        {
            foreach (var p in _free.Values.SelectMany(s => s))
                try
                {
                    gpu.Free(p);
                }
                catch (Distributed.DeviceException) { }
            _free.Clear();
            _cached = 0;
        }
    }
}

/// <summary>
/// The arrays of one run on one GPU: allocates them (from a <see cref="GpuPool"/>), frees each once (a second free
/// or a use after the free is a runtime bug, reported as such), and frees what is left when the run ends. Without
/// a pool of its own, it keeps one for the run.
/// </summary>
public sealed class GpuHeap(GpuPool pool, bool ownsPool = false) : IDisposable
{
    private readonly HashSet<GpuArray> _live = new(ReferenceEqualityComparer.Instance);
    private readonly IGpuDriver gpu = pool.Gpu;

    /// <summary>A heap with a pool for this run only.</summary>
    public GpuHeap(IGpuDriver gpu)
        : this(new GpuPool(gpu), ownsPool: true) { }

    /// <summary>The GPU.</summary>
    public IGpuDriver Gpu => gpu;

    /// <summary>Arrays allocated and not yet freed.</summary>
    public int Live
    {
        get
        {
            lock (_live)
                return _live.Count;
        }
    }

    /// <summary>A new array; zero-filled when <paramref name="zero"/>.</summary>
    public GpuArray Allocate(DType dtype, long[] shape, bool zero)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long bytes = Math.Max(1, NDArray.ShapeSize(shape)) * GpuArray.ElementBytes;
        var a = new GpuArray(gpu, pool.Take(bytes), dtype, (long[])shape.Clone());
        if (zero)
            gpu.Zero(a.Pointer, bytes);
        lock (_live)
            _live.Add(a);
        return a;
    }

    /// <summary>Frees <paramref name="a"/>.</summary>
    public void Free(GpuArray a)
    {
        lock (_live)
            if (!_live.Remove(a))
                throw new InvalidOperationException($"{a} was freed twice or belongs to another run");
        pool.Give(a.Pointer, a.Bytes);
    }

    /// <summary>Scratch memory of <paramref name="bytes"/> outside any array (an address table), given back with <see
    /// cref="FreeScratch"/>.</summary>
    public ulong Scratch(long bytes) => pool.Take(bytes);

    /// <summary>Gives back scratch memory.</summary>
    public void FreeScratch(ulong pointer, long bytes) => pool.Give(pointer, bytes);

    /// <summary><paramref name="a"/>'s memory as a new array of <paramref name="shape"/> (as many elements); <paramref
    /// name="a"/> is no longer live.</summary>
    public GpuArray Reshape(GpuArray a, long[] shape)
    {
        if (NDArray.ShapeSize(shape) != a.Count)
            throw new ArgumentException($"cannot view {a.TypeString} as " + $"[{string.Join(", ", shape)}]");
        var b = new GpuArray(gpu, a.Pointer, a.DType, (long[])shape.Clone());
        lock (_live)
        {
            if (!_live.Remove(a))
                throw new InvalidOperationException($"{a} was already freed");
            _live.Add(b);
        }
        return b;
    }

    /// <summary>Throws unless <paramref name="a"/> is a live array of this heap's GPU.</summary>
    public void CheckLive(GpuArray a, string use)
    {
        if (a.Gpu != gpu)
            throw new InvalidOperationException($"{use}: {a} is not in the memory of {gpu.Name}");
        lock (_live)
            if (!_live.Contains(a))
                throw new InvalidOperationException($"{use}: {a} was already freed");
    }

    /// <summary>Frees every array still allocated.</summary>
    public void Dispose()
    {
        GpuArray[] left;
        lock (_live)
        {
            left = [.. _live];
            _live.Clear();
        }
        foreach (var a in left)
            pool.Give(a.Pointer, a.Bytes);
        if (ownsPool)
            pool.Dispose();
    }
}
