using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// A GPU emulated on the host, for running the GPU back end where there is none: its memory is host memory that
/// only its own addresses reach (every address a copy or launch uses must lie in a live allocation of this GPU, so
/// a use after free, an overrun or an address of another GPU fails naming it), and its kernels are the bundle's GPU
/// kernels compiled for the host grid (<c>libkernels-grid.so</c>): called once per block of the launch shape, each
/// running its block's threads in turn between barriers. One launch at a time per GPU, as on one stream.
/// </summary>
public sealed unsafe class EmulatedGpu : IGpuDriver
{
    private readonly HostKernelLibrary _kernels;
    private readonly Dictionary<ulong, long> _allocations = [];
    private readonly Dictionary<string, IntPtr> _functions = [];
    private readonly Lock _gate = new();

    /// <summary>GPU <paramref name="ordinal"/>, running the host-grid kernels of <paramref name="kernels"/> (not
    /// owned).</summary>
    public EmulatedGpu(int ordinal, HostKernelLibrary kernels)
    {
        Ordinal = ordinal;
        _kernels = kernels;
    }

    /// <inheritdoc/>
    public int Ordinal { get; }

    /// <inheritdoc/>
    public string Name => $"emulated-gpu:{Ordinal}";

    /// <inheritdoc/>
    public GpuCounters Counters { get; } = new();

    /// <inheritdoc/>
    public ulong Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        bytes = Math.Max(bytes, 1);
        var p = (ulong)NativeMemory.AlignedAlloc((nuint)bytes, 256);
        NativeMemory.Fill((void*)p, (nuint)bytes, 0xFF); // NaN in every float: an element no kernel writes shows
        lock (_gate)
            _allocations[p] = bytes;
        Counters.Allocated(bytes);
        return p;
    }

    /// <inheritdoc/>
    public void Free(ulong pointer)
    {
        long bytes;
        lock (_gate)
            if (!_allocations.Remove(pointer, out bytes))
                throw new InvalidOperationException(
                    $"{Name}: free of 0x{pointer:x}, which is not an " + $"allocation of this GPU"
                );
        NativeMemory.AlignedFree((void*)pointer);
        Counters.Freed(bytes);
    }

    /// <inheritdoc/>
    public void Zero(ulong pointer, long bytes)
    {
        Check(pointer, bytes, "zero");
        NativeMemory.Clear((void*)pointer, (nuint)bytes);
    }

    /// <inheritdoc/>
    public void CopyToDevice(ulong dst, void* src, long bytes)
    {
        Check(dst, bytes, "copy to the device");
        Buffer.MemoryCopy(src, (void*)dst, bytes, bytes);
        Counters.ToDevice(bytes);
    }

    /// <inheritdoc/>
    public void CopyToHost(void* dst, ulong src, long bytes)
    {
        Check(src, bytes, "copy to the host");
        Buffer.MemoryCopy((void*)src, dst, bytes, bytes);
        Counters.ToHost(bytes);
    }

    /// <inheritdoc/>
    public void CopyOnDevice(ulong dst, ulong src, long bytes)
    {
        Check(src, bytes, "device copy (source)");
        Check(dst, bytes, "device copy (destination)");
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    public void CopyFromPeer(ulong dst, IGpuDriver peer, ulong src, long bytes)
    {
        if (peer is not EmulatedGpu other)
            throw new InvalidOperationException(
                $"{Name}: peer copy from {peer.Name}, " + $"which is not an emulated GPU"
            );
        other.Check(src, bytes, $"peer copy to {Name} (source)");
        Check(dst, bytes, $"peer copy from {peer.Name} (destination)");
        Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
        Counters.OnDevice(bytes);
    }

    /// <inheritdoc/>
    /// <remarks>Every call here completes before it returns.</remarks>
    public void Synchronize() { }

    /// <summary>The memory at [<paramref name="p"/>, <paramref name="p"/> + <paramref name="bytes"/>), which must lie
    /// in one live allocation (for the emulated NCCL).</summary>
    internal Span<byte> Memory(ulong p, long bytes, string what)
    {
        Check(p, bytes, what);
        return new Span<byte>((void*)p, checked((int)bytes));
    }

    /// <summary>Throws unless [<paramref name="p"/>, <paramref name="p"/> + <paramref name="bytes"/>) lies in one live
    /// allocation.</summary>
    private void Check(ulong p, long bytes, string what)
    {
        lock (_gate)
            foreach (var (start, size) in _allocations)
                if (p >= start && p - start + (ulong)bytes <= (ulong)size)
                    return;
        throw new InvalidOperationException(
            $"{Name}: {what} of {bytes} bytes at 0x{p:x} is outside every live " + $"allocation of this GPU"
        );
    }

    /// <inheritdoc/>
    public bool TimesKernels { get; set; }

    /// <inheritdoc/>
    public void Launch(KernelInfo launch, ReadOnlySpan<ulong> pointers, ReadOnlySpan<long> scalars)
    {
        ArgumentNullException.ThrowIfNull(launch);
        var args = new long[pointers.Length + scalars.Length];
        for (int i = 0; i < pointers.Length; i++)
        {
            Check(pointers[i], 1, $"kernel {launch.Name}, parameter {i}");
            args[i] = (long)pointers[i];
        }
        scalars.CopyTo(args.AsSpan(pointers.Length));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        lock (_gate)
        {
            if (!_functions.TryGetValue(launch.Name, out var fn))
            {
                try
                {
                    fn = _functions[launch.Name] = _kernels.Export(launch.Name);
                }
                catch (InvalidDataException)
                {
                    throw new InvalidOperationException(
                        $"{Name}: no kernel " + $"'{launch.Name}' in the host-grid library"
                    );
                }
            }
            fixed (long* table = args)
            {
                if (!launch.Barriers)
                    RunBlocks(fn, (IntPtr)table, launch.Grid, launch.Block);
                else
                    lock (s_sharedMemory)
                        RunBlocks(fn, (IntPtr)table, launch.Grid, launch.Block);
            }
        }
        Counters.Launched(launch.Name, TimesKernels ? clock.Elapsed.TotalMilliseconds : null);
    }

    // A block's shared memory (and, on the host grid, its threads' accumulators) are globals of the kernel library,
    // which the emulated GPUs of a process share: kernels with barriers run one at a time.
    private static readonly Lock s_sharedMemory = new();

    /// <summary>The registers a host-grid kernel is called with, in order (the thread indices are its own).</summary>
    public static IReadOnlyList<string> Registers { get; } = ["ntid.x", "ctaid.x", "ctaid.y", "ctaid.z", "nctaid.x"];

    /// <summary>
    /// Runs the host-grid kernel <paramref name="fn"/> over <paramref name="grid"/>: one call per block (the kernel
    /// runs the block's threads itself), <paramref name="table"/> its argument table (buffer addresses, then scalars).
    /// </summary>
    public static void RunBlocks(IntPtr fn, IntPtr table, int[] grid, int[] block)
    {
        var r = stackalloc long[5]; // in the order of Registers
        r[0] = block[0];
        r[4] = grid[0];
        for (int bz = 0; bz < grid[2]; bz++)
        for (int by = 0; by < grid[1]; by++)
        for (int bx = 0; bx < grid[0]; bx++)
        {
            (r[1], r[2], r[3]) = (bx, by, bz);
            ((delegate* unmanaged<IntPtr, long*, void>)fn)(table, r);
        }
    }

    /// <summary>Frees what is still allocated.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var p in _allocations.Keys)
                NativeMemory.AlignedFree((void*)p);
            _allocations.Clear();
        }
    }
}
