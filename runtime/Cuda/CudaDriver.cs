using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// A real GPU behind <see cref="IGpuDriver"/>: its primary context, the bundle's PTX loaded as a module, device
/// memory from <c>cuMemAlloc</c>. Calls from several threads are serialised and make the context current first;
/// every launch synchronises, so its time is the kernel's.
/// </summary>
public sealed unsafe class CudaDriver : IGpuDriver
{
    private readonly CudaContext _context;
    private readonly CudaModule _module;
    private readonly Dictionary<string, CudaKernel> _kernels = [];
    private readonly Dictionary<ulong, long> _sizes = [];
    private readonly Lock _gate = new();

    /// <summary>Opens GPU <paramref name="ordinal"/> and loads <paramref name="ptx"/> on it.</summary>
    public CudaDriver(int ordinal, string ptx)
    {
        Ordinal = ordinal;
        _context = new CudaContext(ordinal);
        try { _module = _context.LoadModulePtx(ptx); }
        catch
        {
            _context.Dispose();
            throw;
        }
    }

    /// <summary>The context (for peer copies).</summary>
    public CudaContext Context => _context;

    /// <inheritdoc/>
    public int Ordinal { get; }

    /// <inheritdoc/>
    public string Name => $"cuda:{Ordinal}";

    /// <inheritdoc/>
    public GpuCounters Counters { get; } = new();

    /// <inheritdoc/>
    public ulong Allocate(long bytes)
    {
        bytes = Math.Max(bytes, 1);
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemAlloc(out var p, (nuint)bytes), $"cuMemAlloc({bytes}) on {Name}");
            _sizes[p] = bytes;
            Counters.Allocated(bytes);
            return p;
        }
    }

    /// <inheritdoc/>
    public void Free(ulong pointer)
    {
        lock (_gate)
        {
            if (!_sizes.Remove(pointer, out long bytes)) throw new InvalidOperationException($"{Name}: free of 0x{pointer:x}, which is not an allocation of this GPU");
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemFree(pointer), "cuMemFree");
            Counters.Freed(bytes);
        }
    }

    /// <inheritdoc/>
    public void Zero(ulong pointer, long bytes)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemsetD8(pointer, 0, (nuint)bytes), "cuMemsetD8");
        }
    }

    /// <inheritdoc/>
    public void CopyToDevice(ulong dst, void* src, long bytes)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemcpyHtoD(dst, src, (nuint)bytes), "cuMemcpyHtoD");
        }
        Counters.ToDevice(bytes);
    }

    /// <inheritdoc/>
    public void CopyToHost(void* dst, ulong src, long bytes)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemcpyDtoH(dst, src, (nuint)bytes), "cuMemcpyDtoH");
        }
        Counters.ToHost(bytes);
    }

    /// <inheritdoc/>
    public void CopyOnDevice(ulong dst, ulong src, long bytes)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemcpyDtoD(dst, src, (nuint)bytes), "cuMemcpyDtoD");
        }
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    public void CopyFromPeer(ulong dst, IGpuDriver peer, ulong src, long bytes)
    {
        if (peer is not CudaDriver other) throw new InvalidOperationException($"{Name}: peer copy from {peer.Name}, which is not a CUDA GPU");
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(CudaApi.cuMemcpyPeer(dst, _context.Handle, src, other._context.Handle, (nuint)bytes), $"cuMemcpyPeer({peer.Name} -> {Name})");
        }
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    public TimeSpan Launch(KernelInfo launch, ReadOnlySpan<ulong> pointers, ReadOnlySpan<long> scalars)
    {
        Span<ulong> args = stackalloc ulong[pointers.Length + scalars.Length];
        pointers.CopyTo(args);
        for (int i = 0; i < scalars.Length; i++) args[pointers.Length + i] = (ulong)scalars[i];
        TimeSpan t;
        lock (_gate)
        {
            _context.MakeCurrent();
            if (!_kernels.TryGetValue(launch.Name, out var kernel))
                kernel = _kernels[launch.Name] = _module.Kernel(launch.Name, ((uint)launch.Grid[0], (uint)launch.Grid[1], (uint)launch.Grid[2]), ((uint)launch.Block[0], (uint)launch.Block[1], (uint)launch.Block[2]));
            t = kernel.Run(args, ((uint)launch.Grid[0], (uint)launch.Grid[1], (uint)launch.Grid[2]), ((uint)launch.Block[0], (uint)launch.Block[1], (uint)launch.Block[2]));
        }
        Counters.Launched(launch.Name, t);
        return t;
    }

    /// <summary>Runs <paramref name="action"/> with this GPU's context current, serialised with its other calls.</summary>
    public void WithContext(Action action)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            action();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            foreach (var p in _sizes.Keys) CudaApi.cuMemFree(p);
            _sizes.Clear();
            _module.Dispose();
            _context.Dispose();
        }
    }
}
