using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// A real GPU behind <see cref="IGpuDriver"/>: its primary context, the bundle's PTX loaded as a module, device
/// memory from <c>cuMemAlloc</c>. Calls from several threads are serialised and make the context current first;
/// launches are queued (timed ones wait, measured between two events).
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
        try
        {
            _module = _context.LoadModulePtx(ptx);
        }
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
            if (!_sizes.Remove(pointer, out long bytes))
                throw new InvalidOperationException(
                    $"{Name}: free of " + $"0x{pointer:x}, which is not an allocation of this GPU"
                );
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
    /// <remarks>
    /// <c>cuMemcpyPeerAsync</c> on this GPU's default stream, then a wait for this GPU: unlike <c>cuMemcpyPeer</c>,
    /// it is not serialised with the work pending on the source GPU (which may be a collective waiting for this
    /// GPU's thread).
    /// </remarks>
    public void CopyFromPeer(ulong dst, IGpuDriver peer, ulong src, long bytes)
    {
        if (peer is not CudaDriver other)
            throw new InvalidOperationException($"{Name}: peer copy from {peer.Name}, " + $"which is not a CUDA GPU");
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(
                CudaApi.cuMemcpyPeerAsync(dst, _context.Handle, src, other._context.Handle, (nuint)bytes, IntPtr.Zero),
                $"cuMemcpyPeerAsync({peer.Name} -> {Name})"
            );
            CudaApi.Check(CudaApi.cuCtxSynchronize(), $"cuCtxSynchronize after the copy from {peer.Name}");
        }
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    /// <remarks>Not holding this GPU's lock: other threads may issue work meanwhile.</remarks>
    public void Synchronize()
    {
        _context.MakeCurrent();
        CudaApi.Check(CudaApi.cuCtxSynchronize(), $"cuCtxSynchronize on {Name}");
    }

    /// <inheritdoc/>
    public bool TimesKernels { get; set; }

    // MPLC_CUDA_SYNC=1 waits for every launch, so that a kernel's failure is reported by its own launch.
    private static readonly bool s_synchronous = Environment.GetEnvironmentVariable("MPLC_CUDA_SYNC") == "1";

    /// <inheritdoc/>
    /// <remarks>
    /// Launches are queued on the legacy default stream, which runs the work of every thread using the context in
    /// the order it was issued and which the synchronous copies and frees wait for: a kernel issued after another
    /// reads its result, and memory given back to a pool is reused only by later work. Timed launches wait.
    /// </remarks>
    public void Launch(KernelInfo launch, ReadOnlySpan<ulong> pointers, ReadOnlySpan<long> scalars)
    {
        Span<ulong> args = stackalloc ulong[pointers.Length + scalars.Length];
        pointers.CopyTo(args);
        for (int i = 0; i < scalars.Length; i++)
            args[pointers.Length + i] = (ulong)scalars[i];
        var grid = ((uint)launch.Grid[0], (uint)launch.Grid[1], (uint)launch.Grid[2]);
        var block = ((uint)launch.Block[0], (uint)launch.Block[1], (uint)launch.Block[2]);
        double? ms = null;
        lock (_gate)
        {
            _context.MakeCurrent();
            if (!_kernels.TryGetValue(launch.Name, out var kernel))
                kernel = _kernels[launch.Name] = _module.Kernel(launch.Name, grid, block);
            if (TimesKernels)
                ms = kernel.Run(args, grid, block).TotalMilliseconds;
            else
            {
                kernel.Launch(args, grid, block);
                if (s_synchronous)
                    CudaApi.Check(CudaApi.cuCtxSynchronize(), $"cuCtxSynchronize after {launch.Name}");
            }
        }
        Counters.Launched(launch.Name, ms);
    }

    /// <summary>Runs <paramref name="action"/> with this GPU's context current, serialised with its other
    /// calls.</summary>
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
            foreach (var p in _sizes.Keys)
                CudaApi.cuMemFree(p);
            _sizes.Clear();
            _module.Dispose();
            _context.Dispose();
        }
    }
}
