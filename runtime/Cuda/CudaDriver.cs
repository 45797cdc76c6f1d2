using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// A real GPU behind <see cref="IGpuDriver"/>: its primary context, the bundle's PTX loaded as a module, device
/// memory from <c>cuMemAlloc</c>. Calls from several threads are serialised and make the context current first.
/// Kernels, copies within the GPU and memsets are queued in order on a compute stream (a blocking one, so that the
/// synchronous copies to and from the host on the legacy default stream stay ordered with them; timed launches
/// wait, measured between two events); NCCL's calls go on a communication stream (non-blocking: nothing on the
/// legacy stream waits for a collective in flight), ordered by events: <see cref="Communicate"/> makes the
/// communication stream wait for the compute stream's work so far, and <see cref="WaitOnCompute"/> makes the
/// compute stream's later work wait for a collective.
/// </summary>
public sealed unsafe class CudaDriver : IGpuDriver
{
    private readonly CudaContext _context;
    private readonly CudaModule _module;
    private readonly IntPtr _compute,
        _communication,
        _copy;

    // Per pooled block, an event recorded on the compute stream when it was given back (Retire): a copy into it from
    // the host waits for it.
    private readonly Dictionary<ulong, IntPtr> _retired = [];
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
            CudaApi.Check(CudaApi.cuStreamCreate(out _compute, 0), $"cuStreamCreate on {Name}");
            // CU_STREAM_NON_BLOCKING: a collective in flight holds up no copy on the legacy stream.
            CudaApi.Check(CudaApi.cuStreamCreate(out _communication, 1), $"cuStreamCreate on {Name}");
            // Copies from the host: non-blocking too, so that a copy runs beside the kernels queued before it.
            CudaApi.Check(CudaApi.cuStreamCreate(out _copy, 1), $"cuStreamCreate on {Name}");
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
            CudaApi.Check(CudaApi.cuMemsetD8Async(pointer, 0, (nuint)bytes, _compute), "cuMemsetD8Async");
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// <c>cuMemcpyHtoDAsync</c> on the copy stream, after only the compute stream's work up to the block's <see
    /// cref="Retire"/> (none for a block fresh from the driver), so that it runs beside the kernels queued before it;
    /// then the compute stream waits for it, so that every later kernel (and what the communication and legacy
    /// streams order after the compute stream) sees it. From pageable memory the call returns once the source is
    /// staged, so the caller may reuse it.
    /// </remarks>
    public void CopyToDevice(ulong dst, void* src, long bytes)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            if (_retired.Remove(dst, out var retired))
                WaitAndDestroy(_copy, retired, s_drop != "retire", "the copy stream");
            CudaApi.Check(CudaApi.cuMemcpyHtoDAsync(dst, src, (nuint)bytes, _copy), "cuMemcpyHtoDAsync");
            var copied = Recorded(_copy, "cuEventRecord on the copy stream");
            WaitAndDestroy(_compute, copied, s_drop != "copy", "the compute stream");
        }
        Counters.ToDevice(bytes);
    }

    /// <inheritdoc/>
    public void Retire(ulong pointer)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            var given = Recorded(_compute, "cuEventRecord on the compute stream");
            if (_retired.Remove(pointer, out var older))
                CudaApi.cuEventDestroy(older);
            _retired[pointer] = given;
        }
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
            CudaApi.Check(CudaApi.cuMemcpyDtoDAsync(dst, src, (nuint)bytes, _compute), "cuMemcpyDtoDAsync");
        }
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// <c>cuMemcpyPeerAsync</c> on this GPU's compute stream, then a wait for it: unlike <c>cuMemcpyPeer</c>, it is
    /// not serialised with the work pending on the source GPU (which may be a collective waiting for this GPU's
    /// thread).
    /// </remarks>
    public void CopyFromPeer(ulong dst, IGpuDriver peer, ulong src, long bytes)
    {
        if (peer is not CudaDriver other)
            throw new InvalidOperationException($"{Name}: peer copy from {peer.Name}, " + $"which is not a CUDA GPU");
        lock (_gate)
        {
            _context.MakeCurrent();
            CudaApi.Check(
                CudaApi.cuMemcpyPeerAsync(dst, _context.Handle, src, other._context.Handle, (nuint)bytes, _compute),
                $"cuMemcpyPeerAsync({peer.Name} -> {Name})"
            );
            CudaApi.Check(
                CudaApi.cuStreamSynchronize(_compute),
                $"cuStreamSynchronize after the copy from {peer.Name}"
            );
        }
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The compute stream, not holding this GPU's lock (other threads may issue work meanwhile). A collective in
    /// flight is waited for only where the compute stream was made to wait for it (<see cref="WaitOnCompute"/>).
    /// </remarks>
    public void Synchronize()
    {
        _context.MakeCurrent();
        CudaApi.Check(CudaApi.cuStreamSynchronize(_compute), $"cuStreamSynchronize on {Name}");
    }

    // For the stand-in driver's tests only: MPLC_CUDA_DROP_EVENT_WAIT=start leaves out the communication stream's
    // wait for the compute stream at a started collective, =wait the compute stream's wait for it at its wait, =copy
    // the compute stream's wait for a copy from the host, =retire a copy's wait for the earlier users of its block,
    // so that a test can see the stand-in catch the race each makes.
    private static readonly string? s_drop = Environment.GetEnvironmentVariable("MPLC_CUDA_DROP_EVENT_WAIT");

    /// <summary>
    /// Issues <paramref name="call"/> (given the communication stream) after the work queued on the compute stream
    /// so far: an event recorded on the compute stream that the communication stream waits for. Returns an event
    /// recorded after it on the communication stream, which <see cref="WaitOnCompute"/> takes. <paramref
    /// name="started"/>: a collective started to overlap computation (what a test may leave unordered).
    /// </summary>
    public IntPtr Communicate(Action<IntPtr> call, bool started)
    {
        ArgumentNullException.ThrowIfNull(call);
        lock (_gate)
        {
            _context.MakeCurrent();
            var ready = Recorded(_compute, "cuEventRecord on the compute stream");
            WaitAndDestroy(_communication, ready, !(started && s_drop == "start"), "the communication stream");
            call(_communication);
            return Recorded(_communication, "cuEventRecord on the communication stream");
        }
    }

    /// <summary>Makes the compute stream's later work wait for the event <paramref name="done"/> of <see
    /// cref="Communicate"/> (the host does not wait), and destroys it.</summary>
    public void WaitOnCompute(IntPtr done, bool started)
    {
        lock (_gate)
        {
            _context.MakeCurrent();
            WaitAndDestroy(_compute, done, !(started && s_drop == "wait"), "the compute stream");
        }
    }

    /// <summary>Makes <paramref name="stream"/>'s later work wait for <paramref name="ev"/> (unless a test drops the
    /// wait) and destroys the event.</summary>
    private static void WaitAndDestroy(IntPtr stream, IntPtr ev, bool wait, string what)
    {
        try
        {
            if (wait)
                CudaApi.Check(CudaApi.cuStreamWaitEvent(stream, ev, 0), $"cuStreamWaitEvent on {what}");
        }
        finally
        {
            CudaApi.cuEventDestroy(ev);
        }
    }

    /// <summary>Waits for the work issued to the communication stream so far (not holding this GPU's
    /// lock).</summary>
    public void SynchronizeCommunication()
    {
        _context.MakeCurrent();
        CudaApi.Check(CudaApi.cuStreamSynchronize(_communication), $"cuStreamSynchronize on {Name}");
    }

    // A new event recorded on `stream` (destroyed again if the record fails).
    private static IntPtr Recorded(IntPtr stream, string what)
    {
        var e = NewEvent();
        try
        {
            CudaApi.Check(CudaApi.cuEventRecord(e, stream), what);
        }
        catch
        {
            CudaApi.cuEventDestroy(e);
            throw;
        }
        return e;
    }

    // CU_EVENT_DISABLE_TIMING: an event that only orders work is cheaper without a timestamp.
    private static IntPtr NewEvent()
    {
        CudaApi.Check(CudaApi.cuEventCreate(out var e, 2), "cuEventCreate");
        return e;
    }

    /// <inheritdoc/>
    public bool TimesKernels { get; set; }

    // MPLC_CUDA_SYNC=1 waits for every launch, so that a kernel's failure is reported by its own launch.
    private static readonly bool s_synchronous = Environment.GetEnvironmentVariable("MPLC_CUDA_SYNC") == "1";

    /// <inheritdoc/>
    /// <remarks>
    /// Launches are queued on the compute stream, which runs the work of every thread using the context in the order
    /// it was issued and which the synchronous copies and frees wait for: a kernel issued after another reads its
    /// result, and memory given back to a pool is reused only by later work. Timed launches wait.
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
                ms = kernel.Run(args, grid, block, _compute).TotalMilliseconds;
            else
            {
                kernel.Launch(args, grid, block, _compute);
                if (s_synchronous)
                    CudaApi.Check(CudaApi.cuStreamSynchronize(_compute), $"cuStreamSynchronize after {launch.Name}");
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
            foreach (var e in _retired.Values)
                CudaApi.cuEventDestroy(e);
            _retired.Clear();
            CudaApi.cuStreamDestroy(_compute);
            CudaApi.cuStreamDestroy(_communication);
            CudaApi.cuStreamDestroy(_copy);
            _module.Dispose();
            _context.Dispose();
        }
    }
}
