using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// One GPU as the runtime drives it: device memory (addresses are 64-bit device pointers), copies, and launches of
/// the bundle's kernels by name. <see cref="Cuda.CudaDriver"/> drives a real GPU through the CUDA driver API;
/// <see cref="EmulatedGpu"/> runs the same kernels' host-grid build over host memory with the same launch shapes,
/// checking every address, so everything above this interface runs the same way on machines without a GPU.
/// Calls may come from several threads (the logical devices sharing the GPU); copies to the host and between GPUs
/// complete before they return, launches may be queued.
/// </summary>
public interface IGpuDriver : IDisposable
{
    /// <summary>The GPU's number among the back end's GPUs.</summary>
    int Ordinal { get; }

    /// <summary>A name for messages: <c>cuda:0</c>, <c>emulated-gpu:1</c>.</summary>
    string Name { get; }

    /// <summary>What went through it so far.</summary>
    GpuCounters Counters { get; }

    /// <summary>A new allocation of <paramref name="bytes"/> (at least 1), contents undefined.</summary>
    ulong Allocate(long bytes);

    /// <summary>Frees an allocation.</summary>
    void Free(ulong pointer);

    /// <summary>Sets <paramref name="bytes"/> bytes at <paramref name="pointer"/> to zero.</summary>
    void Zero(ulong pointer, long bytes);

    /// <summary>Copies host memory to the device: <paramref name="src"/> may be reused once it returns, and work
    /// issued later on this GPU sees the copy; the copy may still run beside work issued before it (on a GPU, on a
    /// copy stream, after only that earlier work which used <paramref name="dst"/> before its <see cref="Retire"/>).
    /// </summary>
    unsafe void CopyToDevice(ulong dst, void* src, long bytes);

    /// <summary>The block at <paramref name="pointer"/> is kept for reuse once the work issued so far is done with
    /// it: a later <see cref="CopyToDevice"/> into it waits for that work. Nothing to do where copies run in the
    /// GPU's one order.</summary>
    void Retire(ulong pointer) { }

    /// <summary>Copies device memory to the host.</summary>
    unsafe void CopyToHost(void* dst, ulong src, long bytes);

    /// <summary>Copies within this GPU's memory.</summary>
    void CopyOnDevice(ulong dst, ulong src, long bytes);

    /// <summary>
    /// Copies from the memory of another GPU of the same back end into this one's, in this GPU's order only: it
    /// waits for nothing queued on the peer (the sender made the source complete with <see cref="Synchronize"/>
    /// before handing it over), so a peer waiting in a collective for this GPU's thread cannot hold it up.
    /// </summary>
    void CopyFromPeer(ulong dst, IGpuDriver peer, ulong src, long bytes);

    /// <summary>Waits for the work issued to this GPU so far.</summary>
    void Synchronize();

    /// <summary>
    /// Whether every launch is timed on the GPU (and waited for) and recorded in <see cref="GpuCounters.Kernels"/>;
    /// otherwise launches may be queued, in order, behind the work before them.
    /// </summary>
    bool TimesKernels { get; set; }

    /// <summary>
    /// Launches kernel <paramref name="launch"/>.Name with its grid and block on <paramref name="pointers"/> then
    /// <paramref name="scalars"/> (64-bit parameters, in that order). Work on one GPU runs in the order it was
    /// issued, and a copy to the host waits for the work before it.
    /// </summary>
    void Launch(KernelInfo launch, ReadOnlySpan<ulong> pointers, ReadOnlySpan<long> scalars);
}

/// <summary>Traffic and memory of one GPU, counted by its driver (thread-safe).</summary>
public sealed class GpuCounters
{
    private long _toDevice,
        _toHost,
        _onDevice,
        _launches,
        _inUse,
        _peak,
        _tables,
        _allocations;

    /// <summary>Bytes copied from the host.</summary>
    public long BytesToDevice => Interlocked.Read(ref _toDevice);

    /// <summary>Of <see cref="BytesToDevice"/>, the bytes of address tables for the collective sum and max
    /// kernels.</summary>
    public long BytesOfAddressTables => Interlocked.Read(ref _tables);

    /// <summary>Bytes copied to the host.</summary>
    public long BytesToHost => Interlocked.Read(ref _toHost);

    /// <summary>Bytes copied within the GPU or from a peer GPU.</summary>
    public long BytesOnDevice => Interlocked.Read(ref _onDevice);

    /// <summary>Kernels launched.</summary>
    public long Launches => Interlocked.Read(ref _launches);

    /// <summary>Allocations made (kept blocks reused by a <see cref="GpuPool"/> are not new ones).</summary>
    public long Allocations => Interlocked.Read(ref _allocations);

    /// <summary>Bytes allocated and not yet freed.</summary>
    public long BytesInUse => Interlocked.Read(ref _inUse);

    /// <summary>The most bytes in use at once.</summary>
    public long PeakBytes => Interlocked.Read(ref _peak);

    /// <summary>Per kernel, of its timed launches: how many, milliseconds in all, and the fastest.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<
        string,
        (int Launches, double Milliseconds, double Fastest)
    > Kernels { get; } = new();

    internal void ToDevice(long bytes) => Interlocked.Add(ref _toDevice, bytes);

    internal void AddressTable(long bytes) => Interlocked.Add(ref _tables, bytes);

    internal void ToHost(long bytes) => Interlocked.Add(ref _toHost, bytes);

    internal void OnDevice(long bytes) => Interlocked.Add(ref _onDevice, bytes);

    internal void Launched(string name, double? milliseconds)
    {
        Interlocked.Increment(ref _launches);
        if (milliseconds is double ms)
            Kernels.AddOrUpdate(
                name,
                (1, ms, ms),
                (_, x) => (x.Launches + 1, x.Milliseconds + ms, Math.Min(x.Fastest, ms))
            );
    }

    internal void Allocated(long bytes)
    {
        Interlocked.Increment(ref _allocations);
        long now = Interlocked.Add(ref _inUse, bytes);
        long peak;
        while (now > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, peak) != peak)
        { }
    }

    internal void Freed(long bytes) => Interlocked.Add(ref _inUse, -bytes);
}
