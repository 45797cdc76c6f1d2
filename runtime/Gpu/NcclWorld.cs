using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// The devices of a mesh on one GPU each: device r runs on its GPU with its own thread (the thread management,
/// cancellation and pipeline mailboxes of an <see cref="InProcessWorld{T}"/>), and its collectives go through the
/// NCCL communicators of <see cref="NcclGroups"/>. In one process every device of the mesh runs here; in a process of
/// an MPI job only the devices <see cref="First"/> to <see cref="First"/> + heaps - 1, and messages to and from the
/// other processes' devices go through NCCL's send and receive.
/// </summary>
public sealed class NcclWorld : IDeviceWorld<GpuArray>
{
    private readonly InProcessWorld<GpuArray> _inner;
    private readonly NcclGroups _groups;
    private readonly GpuHeap[] _heaps;
    private readonly GpuArrayOps[] _ops;
    private readonly Func<int, IDevice<GpuArray>> _device;

    /// <summary>A world over the GPUs of <paramref name="heaps"/> (device <paramref name="first"/> + k on heaps[k]'s
    /// GPU), communicating through <paramref name="groups"/>; devices outside them run in other processes.</summary>
    public NcclWorld(
        DeviceMesh mesh,
        TimeSpan timeout,
        NcclGroups groups,
        GpuHeap[] heaps,
        Func<int, IDevice<GpuArray>> device,
        int first = 0
    )
    {
        ArgumentNullException.ThrowIfNull(mesh);
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(heaps);
        bool whole = first == 0 && heaps.Length == mesh.DeviceCount;
        if (!whole && (first < 0 || heaps.Length == 0 || first + heaps.Length > mesh.DeviceCount))
            throw new ArgumentException(
                $"mesh {mesh} has {mesh.DeviceCount} devices: no devices {first} to {first + heaps.Length - 1}"
            );
        _heaps = heaps;
        First = first;
        _ops = heaps.Select(h => new GpuArrayOps(h)).ToArray();
        _device = device;
        var ops = new PerGpuOps(this);
        _inner = whole
            ? new InProcessWorld<GpuArray>(mesh, timeout, ops)
            : new InProcessWorld<GpuArray>(mesh, timeout, ops, new LocalDevices(first, heaps.Length));
        _groups = groups;
        groups.Nccl.BeginRun(timeout, _inner.Cancellation);
    }

    /// <summary>The first device this world runs (0 unless it is one process of an MPI job).</summary>
    public int First { get; }

    /// <summary>What device <paramref name="rank"/> is doing (waiting in which op), or null.</summary>
    public string? ActivityOf(int rank) => _inner.ActivityOf(rank);

    /// <summary>Whether device <paramref name="rank"/> runs in this process.</summary>
    internal bool IsLocal(int rank) => rank >= First && rank < First + _heaps.Length;

    /// <inheritdoc/>
    public DeviceMesh Mesh => _inner.Mesh;

    /// <summary>The NCCL in use.</summary>
    internal INccl Nccl => _groups.Nccl;

    /// <inheritdoc/>
    public TResult[] Run<TResult>(Func<IDevice<GpuArray>, ICommunicator<GpuArray>, TResult> body) =>
        _inner.Run(
            (rank, comm) =>
            {
                var nccl = new NcclCommunicator(rank, comm, this, _heaps[rank - First], _ops[rank - First]);
                var result = body(_device(rank), nccl);
                // Messages to other processes still held back are sent before the device's run ends.
                nccl.Flush();
                return result;
            }
        );

    /// <summary>The communicator of <paramref name="rank"/> in the group of devices <paramref name="members"/> (global
    /// ranks, in group order).</summary>
    internal INcclComm Group(int[] members, int rank) => _groups.Of(members, rank);

    /// <summary>The heap of the GPU <paramref name="gpu"/>.</summary>
    internal GpuHeap HeapOf(IGpuDriver gpu) => _heaps.First(h => h.Gpu == gpu);

    /// <summary>The operations of the GPU <paramref name="gpu"/>.</summary>
    internal GpuArrayOps OpsOf(IGpuDriver gpu) => _ops[Array.FindIndex(_heaps, h => h.Gpu == gpu)];

    /// <inheritdoc/>
    public void Dispose()
    {
        _groups.Nccl.EndRun();
        _inner.Dispose();
    }

    /// <summary>The devices of this process to the in-process world. Its communicators never take a call across:
    /// NCCL does, and messages to other processes' devices go through NCCL too.</summary>
    private sealed class LocalDevices(int first, int count) : IProcessLink<GpuArray>
    {
        public int First => first;

        public int Count => count;

        public GpuArray[] Collective(
            CollectiveCall<GpuArray> call,
            int[] group,
            int[] local,
            GpuArray[] inputs,
            Reduction? reduction,
            CancellationToken cancel
        ) => throw new InvalidOperationException("collectives between processes go through NCCL");

        public void Send(GpuArray x, int from, int to, int tag, CollectiveSite site) =>
            throw new InvalidOperationException("messages between processes go through NCCL");

        public bool TryRecv(
            int from,
            int to,
            int tag,
            TimeSpan timeout,
            CancellationToken cancel,
            out (GpuArray Value, CollectiveSite Site) message
        ) => throw new InvalidOperationException("messages between processes go through NCCL");
    }

    /// <summary>Operations on whichever GPU holds the arrays (what the in-process mailboxes copy with).</summary>
    private sealed class PerGpuOps(NcclWorld world) : IArrayOps<GpuArray>
    {
        public GpuArray Sum(IReadOnlyList<GpuArray> xs) => world.OpsOf(xs[0].Gpu).Sum(xs);

        public GpuArray Max(IReadOnlyList<GpuArray> xs) => world.OpsOf(xs[0].Gpu).Max(xs);

        public GpuArray Concat(IReadOnlyList<GpuArray> parts, int dim) => world.OpsOf(parts[0].Gpu).Concat(parts, dim);

        public GpuArray Slice(GpuArray x, int dim, long start, long length) =>
            world.OpsOf(x.Gpu).Slice(x, dim, start, length);

        // A message's copy, complete on its GPU before it is handed over: the receiver copies it without waiting
        // for anything queued there.
        public GpuArray Copy(GpuArray x)
        {
            var copy = world.OpsOf(x.Gpu).Copy(x);
            x.Gpu.Synchronize();
            return copy;
        }

        public GpuArray Zeros(DType dtype, long[] shape) => throw new InvalidOperationException("zeros on which GPU?");

        public void Release(GpuArray x) => world.HeapOf(x.Gpu).Free(x);
    }
}

/// <summary>
/// One device's collectives through NCCL. NCCL gathers rank-major and scatters contiguous chunks, so gathers and
/// scatters along another dimension reorder blocks with the copy kernel; f16 and bf16 sums gather the members'
/// arrays and add them in group order with the generated sum kernel, rounding after every addition as the host
/// does (NCCL would add in f32 in its own order). Pipeline sends and receives go through the in-process mailboxes
/// and a peer copy.
/// </summary>
internal sealed class NcclCommunicator(
    int rank,
    ICommunicator<GpuArray> inner,
    NcclWorld world,
    GpuHeap heap,
    GpuArrayOps ops
) : ICommunicator<GpuArray>
{
    private INccl Nccl => world.Nccl;

    public int Rank => rank;

    public DeviceMesh Mesh => inner.Mesh;

    private (INcclComm Comm, int[] Members) GroupOf(IReadOnlyList<string> axes)
    {
        var members = Mesh.Group(rank, axes);
        return (members.Length == 1 ? null! : world.Group(members, rank), members);
    }

    private static NcclType Type(GpuArray x) => x.DType == DType.I32 ? NcclType.Int32 : NcclType.Float32;

    private static NcclOp Op(ReduceKind kind) => kind == ReduceKind.Sum ? NcclOp.Sum : NcclOp.Max;

    public GpuArray AllReduce(GpuArray x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site) =>
        Within(site, $"over [{string.Join(", ", axes)}]", () => AllReduceOn(x, axes, kind, site));

    private GpuArray AllReduceOn(GpuArray x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site)
    {
        var (comm, members) = GroupOf(axes);
        if (members.Length == 1)
            return ops.Copy(x);
        if (NeedsOwnReduction(kind, x.DType))
            return GatheredReduction(comm, x, kind);
        var output = heap.Allocate(x.DType, x.Shape, zero: false);
        Nccl.AllReduce(comm, x.Pointer, output.Pointer, x.Count, Type(x), Op(kind));
        return output;
    }

    // Reductions NCCL would compute otherwise than the host: f16/bf16 sums (the host rounds after each addition)
    // and float maxima (NCCL's is fmaxf, which drops a NaN; the host's keeps it).
    private static bool NeedsOwnReduction(ReduceKind kind, DType dtype) =>
        kind == ReduceKind.Sum ? dtype is DType.F16 or DType.BF16 : dtype != DType.I32;

    // Every member's array, gathered, then reduced in group order by the generated kernels, as on the host.
    private GpuArray GatheredReduction(INcclComm comm, GpuArray x, ReduceKind kind)
    {
        var all = Gathered(comm, x);
        try
        {
            return ops.ReduceAt(
                kind,
                x.DType,
                x.Shape,
                Enumerable.Range(0, comm.Size).Select(k => all.Pointer + (ulong)(k * x.Bytes)).ToArray()
            );
        }
        finally
        {
            heap.Free(all);
        }
    }

    // [n, ...x.Shape]: member k's array at position k.
    private GpuArray Gathered(INcclComm comm, GpuArray x)
    {
        var all = heap.Allocate(x.DType, [comm.Size, .. x.Shape], zero: false);
        Nccl.AllGather(comm, x.Pointer, all.Pointer, x.Count, Type(x));
        return all;
    }

    public GpuArray AllGather(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
        Within(site, $"over [{string.Join(", ", axes)}]", () => AllGatherOn(x, axes, dim, site));

    private GpuArray AllGatherOn(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (comm, members) = GroupOf(axes);
        int n = members.Length;
        if (n == 1)
            return ops.Copy(x);
        return Along(Gathered(comm, x), x, dim, n);
    }

    // The members' arrays gathered one after another ([n, ...x.Shape]) as the concatenation along dim: along
    // dimension 0 the same buffer; along another, a new one with the blocks put in place (and `all` given back).
    private GpuArray Along(GpuArray all, GpuArray x, int dim, int n)
    {
        if (dim == 0)
            return Reshaped(all, Scaled(x.Shape, 0, n));
        try
        {
            var output = heap.Allocate(x.DType, Scaled(x.Shape, dim, n), zero: false);
            long outer = ArrayOps.Outer(x.Shape, dim),
                len = x.Shape[dim] * ArrayOps.Inner(x.Shape, dim);
            for (int k = 0; k < n; k++)
                ops.CopyBlocks(output, all, outer, len, len, k * x.Count, n * len, k * len);
            return output;
        }
        finally
        {
            heap.Free(all);
        }
    }

    public GpuArray ReduceScatter(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
        Within(site, $"over [{string.Join(", ", axes)}]", () => ReduceScatterOn(x, axes, dim, site));

    private GpuArray ReduceScatterOn(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (comm, members) = GroupOf(axes);
        int n = members.Length;
        if (n == 1)
            return ops.Copy(x);
        long chunk = x.Shape[dim] / n;
        int me = Array.IndexOf(members, rank);
        if (x.DType is DType.F16 or DType.BF16)
        {
            var sum = GatheredReduction(comm, x, ReduceKind.Sum);
            try
            {
                return ops.Slice(sum, dim, me * chunk, chunk);
            }
            finally
            {
                heap.Free(sum);
            }
        }
        var (packed, output) = ScatterBuffers(x, dim, n);
        try
        {
            Nccl.ReduceScatter(comm, packed.Pointer, output.Pointer, output.Count, Type(x), NcclOp.Sum);
        }
        finally
        {
            if (packed != x)
                heap.Free(packed);
        }
        return output;
    }

    // The output of a reduce-scatter of x along dim over n members, and what NCCL scatters: x itself along
    // dimension 0, else a copy with chunk k of the dimension brought together (NCCL scatters contiguous chunks).
    private (GpuArray Packed, GpuArray Output) ScatterBuffers(GpuArray x, int dim, int n)
    {
        long chunk = x.Shape[dim] / n;
        var shape = (long[])x.Shape.Clone();
        shape[dim] = chunk;
        var output = heap.Allocate(x.DType, shape, zero: false);
        if (dim == 0)
            return (x, output);
        long outer = ArrayOps.Outer(x.Shape, dim),
            inner = ArrayOps.Inner(x.Shape, dim),
            len = chunk * inner;
        var packed = heap.Allocate(x.DType, x.Shape, zero: false);
        for (int k = 0; k < n; k++)
            ops.CopyBlocks(packed, x, outer, len, x.Shape[dim] * inner, k * len, len, k * outer * len);
        return (packed, output);
    }

    // Started collectives: each array's NCCL call goes on the GPU's communication stream now, and its part of the
    // pending collective makes the compute stream wait for it (the host does not wait; the trace's flight ends at
    // the wait). What NCCL cannot reduce as the host does (f16/bf16 sums), and groups of one, run at once.
    public PendingCollective<GpuArray> StartAllReduce(
        IReadOnlyList<GpuArray> xs,
        IReadOnlyList<string> axes,
        ReduceKind kind,
        CollectiveSite site
    ) => new(xs.Select(x => Started(site, axes, () => StartAllReduceOn(x, axes, kind, site))).ToArray());

    public PendingCollective<GpuArray> StartReduceScatter(
        IReadOnlyList<GpuArray> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => new(xs.Select(x => Started(site, axes, () => StartReduceScatterOn(x, axes, dim, site))).ToArray());

    public PendingCollective<GpuArray> StartAllGather(
        IReadOnlyList<GpuArray> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => new(xs.Select(x => Started(site, axes, () => StartAllGatherOn(x, axes, dim, site))).ToArray());

    private Func<(GpuArray, long)> Started(CollectiveSite site, IReadOnlyList<string> axes, Func<Func<GpuArray>> start)
    {
        string span = $"over [{string.Join(", ", axes)}]";
        var wait = Within(site, span, start);
        return () =>
        {
            var result = Within(site, span, wait);
            return (result, System.Diagnostics.Stopwatch.GetTimestamp());
        };
    }

    private Func<GpuArray> StartAllReduceOn(
        GpuArray x,
        IReadOnlyList<string> axes,
        ReduceKind kind,
        CollectiveSite site
    )
    {
        var (comm, members) = GroupOf(axes);
        if (members.Length == 1 || NeedsOwnReduction(kind, x.DType))
        {
            var done = AllReduceOn(x, axes, kind, site);
            return () => done;
        }
        var output = heap.Allocate(x.DType, x.Shape, zero: false);
        var wait = Nccl.StartAllReduce(comm, x.Pointer, output.Pointer, x.Count, Type(x), Op(kind));
        return () =>
        {
            wait();
            return output;
        };
    }

    private Func<GpuArray> StartReduceScatterOn(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (comm, members) = GroupOf(axes);
        if (members.Length == 1 || x.DType is DType.F16 or DType.BF16)
        {
            var done = ReduceScatterOn(x, axes, dim, site);
            return () => done;
        }
        var (packed, output) = ScatterBuffers(x, dim, members.Length);
        var wait = Nccl.StartReduceScatter(comm, packed.Pointer, output.Pointer, output.Count, Type(x), NcclOp.Sum);
        return () =>
        {
            wait();
            // Given back once the compute stream waits for the collective, so that later work reuses it after.
            if (packed != x)
                heap.Free(packed);
            return output;
        };
    }

    // Started on the communication stream; the blocks are put in place (along a dimension other than 0) on the
    // compute stream once it has waited for the gather.
    private Func<GpuArray> StartAllGatherOn(GpuArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (comm, members) = GroupOf(axes);
        int n = members.Length;
        if (n == 1)
        {
            var done = AllGatherOn(x, axes, dim, site);
            return () => done;
        }
        var all = heap.Allocate(x.DType, [n, .. x.Shape], zero: false);
        var wait = Nccl.StartAllGather(comm, x.Pointer, all.Pointer, x.Count, Type(x));
        return () =>
        {
            wait();
            return Along(all, x, dim, n);
        };
    }

    public GpuArray AllToAll(
        GpuArray x,
        IReadOnlyList<string> axes,
        int splitDim,
        int concatDim,
        CollectiveSite site
    ) => Within(site, $"over [{string.Join(", ", axes)}]", () => AllToAllOn(x, axes, splitDim, concatDim, site));

    private GpuArray AllToAllOn(
        GpuArray x,
        IReadOnlyList<string> axes,
        int splitDim,
        int concatDim,
        CollectiveSite site
    )
    {
        var (comm, members) = GroupOf(axes);
        int n = members.Length;
        if (n == 1)
            return ops.Copy(x);
        int me = Array.IndexOf(members, rank);
        var chunks = ops.Split(x, splitDim, n);
        var received = chunks.Select((c, j) => j == me ? c : heap.Allocate(c.DType, c.Shape, zero: false)).ToArray();
        try
        {
            var peers = Enumerable.Range(0, n).Where(j => j != me).ToArray();
            Nccl.Exchange(
                comm,
                peers.Select(j => (j, chunks[j].Pointer, chunks[j].Count)).ToArray(),
                peers.Select(j => (j, received[j].Pointer, received[j].Count)).ToArray(),
                Type(x)
            );
            return ops.Concat(received, concatDim);
        }
        finally
        {
            foreach (var c in chunks.Concat(received).Distinct())
                heap.Free(c);
        }
    }

    public GpuArray CollectivePermute(GpuArray x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site) =>
        Within(site, "over all devices", () => CollectivePermuteOn(x, pairs, site));

    private GpuArray CollectivePermuteOn(GpuArray x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site)
    {
        int devices = Mesh.DeviceCount;
        var output = heap.Allocate(x.DType, x.Shape, zero: true);
        var sends = pairs
            .Where(p => p.Source == rank && p.Target != rank)
            .Select(p => (p.Target, x.Pointer, x.Count))
            .ToArray();
        var receives = pairs
            .Where(p => p.Target == rank && p.Source != rank)
            .Select(p => (p.Source, output.Pointer, x.Count))
            .ToArray();
        if (pairs.Any(p => p.Source == rank && p.Target == rank))
            heap.Gpu.CopyOnDevice(output.Pointer, x.Pointer, x.Bytes);
        if (devices > 1)
            Nccl.Exchange(world.Group(Enumerable.Range(0, devices).ToArray(), rank), sends, receives, Type(x));
        return output;
    }

    // Messages to other processes' devices, held until this device next receives or its run ends. NCCL's sends wait
    // for their receives, so two stages that send to each other at once (1F1B's forward and backward) would each
    // wait in its send; issued in one NCCL group with the next receive, the sends and receives of both meet.
    private readonly List<(int Peer, GpuArray X)> _held = [];

    // The message's copy is complete on this GPU before it is handed over (PerGpuOps.Copy).
    public void Send(GpuArray x, int peer, CollectiveSite site, int tag = 0)
    {
        if (!world.IsLocal(peer))
        {
            // A copy, as every send makes: the sender may free or overwrite its array before the copy goes.
            _held.Add((peer, ops.Copy(x)));
            return;
        }
        inner.Send(x, peer, site, tag);
    }

    public GpuArray Recv(int peer, DType dtype, long[] shape, CollectiveSite site, int tag = 0)
    {
        if (!world.IsLocal(peer))
            return Within(
                site,
                $"from device {peer}",
                () =>
                {
                    var output = heap.Allocate(dtype, shape, zero: false);
                    ExchangeHeld(output, peer);
                    return output;
                }
            );
        var message = inner.Recv(peer, dtype, shape, site, tag);
        if (message.Gpu == heap.Gpu)
            return message;
        var local = heap.Allocate(dtype, shape, zero: false);
        heap.Gpu.CopyFromPeer(local.Pointer, message.Gpu, message.Pointer, message.Bytes);
        world.HeapOf(message.Gpu).Free(message);
        return local;
    }

    /// <summary>Sends the messages to other processes still held (at the end of the device's run).</summary>
    internal void Flush()
    {
        if (_held.Count > 0)
            ExchangeHeld(null, -1);
    }

    // The held sends and a receive (when given) as one NCCL group over the communicator of all devices, in which a
    // device's NCCL rank is its rank; messages between two devices arrive in the order they were sent. Every GPU
    // array element is 4 bytes, so all go as ncclFloat32 words, which send and receive copy unchanged.
    private void ExchangeHeld(GpuArray? received, int from)
    {
        var comm = world.Group(Enumerable.Range(0, Mesh.DeviceCount).ToArray(), rank);
        var sends = _held.Select(h => (h.Peer, h.X.Pointer, h.X.Count)).ToArray();
        var receives = received == null ? [] : new[] { (from, received.Pointer, received.Count) };
        Nccl.Exchange(comm, sends, receives, NcclType.Float32);
        foreach (var (_, x) in _held)
            heap.Free(x);
        _held.Clear();
    }

    // An NCCL failure (a mismatch the emulated NCCL detects, a member that never came) named with this device and the
    // op.
    private TResult Within<TResult>(CollectiveSite site, string span, Func<TResult> body)
    {
        try
        {
            return body();
        }
        catch (CollectiveException e) when (!e.Consequential)
        {
            string text =
                $"device {rank} ({Mesh.Describe(rank)}) in {InProcessWorld<GpuArray>.Describe(site, span)}: "
                + $"{e.Message}";
            throw e is CollectiveTimeoutException
                ? new CollectiveTimeoutException(text)
                : new CollectiveException(text, e);
        }
    }

    private static long[] Scaled(long[] shape, int dim, int n)
    {
        var s = (long[])shape.Clone();
        s[dim] *= n;
        return s;
    }

    // The same memory under another shape of as many elements (the gathered [n, ...] as the concatenation along 0).
    private GpuArray Reshaped(GpuArray a, long[] shape) => heap.Reshape(a, shape);
}
