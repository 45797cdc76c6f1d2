using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.Gpu;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// <see cref="INccl"/> over libnccl on the CUDA GPUs of this process: a group's communicators come from one
/// <c>ncclCommInitAll</c> over its members' GPUs. Every call is issued on the member GPU's communication stream
/// after the work queued on its compute stream (<see cref="CudaDriver.Communicate"/>), with the member's context
/// current: one stream for all of a GPU's NCCL calls, so that they run in the order issued whatever their
/// communicator. A blocking call is then waited for (without the GPU's lock) and returns with the result in place;
/// a started one returns at once, and its wait makes the compute stream wait for it.
/// </summary>
public sealed class Nccl : INccl
{
    private readonly IReadOnlyList<IGpuDriver> _gpus;
    private readonly List<IntPtr> _comms = [];

    /// <summary>NCCL over <paramref name="gpus"/> (CUDA drivers); an input error when libnccl cannot be
    /// loaded.</summary>
    public Nccl(IReadOnlyList<IGpuDriver> gpus)
    {
        if (!NcclApi.Available(out string why))
            throw new Model.RunInputException($"one GPU per device needs NCCL: " + $"{why}");
        _gpus = gpus;
    }

    private sealed class Comm(int rank, int size, CudaDriver gpu, IntPtr handle) : INcclComm
    {
        public int Rank => rank;
        public int Size => size;
        public IGpuDriver Gpu => gpu;
        public CudaDriver Cuda => gpu;
        public IntPtr Handle => handle;
    }

    private CancellationToken _cancel;
    private CancellationTokenRegistration _abortOnCancel;

    /// <inheritdoc/>
    /// <remarks>
    /// A member that fails leaves the others waiting in NCCL for it: when the run is cancelled every communicator is
    /// aborted (<c>ncclCommAbort</c>), so their waits end and they stop; the next run makes new communicators.
    /// </remarks>
    public void BeginRun(TimeSpan timeout, CancellationToken cancel)
    {
        _abortOnCancel.Dispose();
        _cancel = cancel;
        _abortOnCancel = cancel.Register(Abort);
    }

    /// <inheritdoc/>
    public void EndRun()
    {
        _abortOnCancel.Dispose();
        _abortOnCancel = default;
        _cancel = CancellationToken.None;
    }

    private void Abort()
    {
        lock (_comms)
        {
            foreach (var c in _comms)
                NcclApi.CommAbort(c);
            _comms.Clear();
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<INcclComm> Group(IReadOnlyList<int> gpus)
    {
        var drivers = gpus.Select(g =>
                _gpus[g] as CudaDriver
                ?? throw new InvalidOperationException($"NCCL runs on CUDA GPUs, not {_gpus[g].Name}")
            )
            .ToArray();
        IntPtr[] handles;
        lock (_comms)
        {
            handles = NcclApi.CommInitAll(drivers.Select(d => d.Context.Device).ToArray());
            _comms.AddRange(handles);
        }
        return drivers.Select((d, k) => (INcclComm)new Comm(k, drivers.Length, d, handles[k])).ToArray();
    }

    /// <inheritdoc/>
    public byte[] UniqueId() => NcclApi.GetUniqueId();

    /// <inheritdoc/>
    /// <remarks>The members are made without the lock on the communicators: the call waits for the other processes,
    /// which may be making another group with this one first.</remarks>
    public IReadOnlyList<INcclComm> Join(byte[] id, int size, IReadOnlyList<(int Gpu, int Rank)> members)
    {
        var drivers = members
            .Select(m =>
                _gpus[m.Gpu] as CudaDriver
                ?? throw new InvalidOperationException($"NCCL runs on CUDA GPUs, not {_gpus[m.Gpu].Name}")
            )
            .ToArray();
        var handles = new IntPtr[members.Count];
        NcclApi.GroupStart();
        try
        {
            for (int k = 0; k < members.Count; k++)
            {
                int at = k;
                drivers[k].WithContext(() => handles[at] = NcclApi.CommInitRank(size, id, members[at].Rank));
            }
        }
        finally
        {
            NcclApi.GroupEnd();
        }
        lock (_comms)
            _comms.AddRange(handles);
        return members.Select((m, k) => (INcclComm)new Comm(m.Rank, size, drivers[k], handles[k])).ToArray();
    }

    /// <inheritdoc/>
    public void AllReduce(INcclComm comm, ulong send, ulong recv, long count, NcclType type, NcclOp op) =>
        Issue(comm, (c, s) => NcclApi.AllReduce(send, recv, count, (int)type, (int)op, c, s));

    /// <inheritdoc/>
    public void AllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type) =>
        Issue(comm, (c, s) => NcclApi.AllGather(send, recv, sendCount, (int)type, c, s));

    /// <inheritdoc/>
    public void ReduceScatter(INcclComm comm, ulong send, ulong recv, long recvCount, NcclType type, NcclOp op) =>
        Issue(comm, (c, s) => NcclApi.ReduceScatter(send, recv, recvCount, (int)type, (int)op, c, s));

    /// <inheritdoc/>
    public Action StartAllReduce(INcclComm comm, ulong send, ulong recv, long count, NcclType type, NcclOp op) =>
        Start(comm, (c, s) => NcclApi.AllReduce(send, recv, count, (int)type, (int)op, c, s));

    /// <inheritdoc/>
    public Action StartReduceScatter(
        INcclComm comm,
        ulong send,
        ulong recv,
        long recvCount,
        NcclType type,
        NcclOp op
    ) => Start(comm, (c, s) => NcclApi.ReduceScatter(send, recv, recvCount, (int)type, (int)op, c, s));

    /// <inheritdoc/>
    public Action StartAllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type) =>
        Start(comm, (c, s) => NcclApi.AllGather(send, recv, sendCount, (int)type, c, s));

    /// <inheritdoc/>
    public void Exchange(
        INcclComm comm,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> sends,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> receives,
        NcclType type
    ) =>
        Issue(
            comm,
            (c, s) =>
            {
                NcclApi.GroupStart();
                try
                {
                    foreach (var (peer, buffer, count) in sends)
                        NcclApi.Send(buffer, count, (int)type, peer, c, s);
                    foreach (var (peer, buffer, count) in receives)
                        NcclApi.Recv(buffer, count, (int)type, peer, c, s);
                }
                finally
                {
                    NcclApi.GroupEnd();
                }
            }
        );

    // The call is queued holding the GPU's lock; the wait for the other members is made without it, and a wait
    // ended by an abort (another member failed) stops this member too.
    private void Issue(INcclComm comm, Action<IntPtr, IntPtr> call)
    {
        var c = (Comm)comm;
        _cancel.ThrowIfCancellationRequested();
        var done = c.Cuda.Communicate(stream => call(c.Handle, stream), started: false);
        try
        {
            c.Cuda.SynchronizeCommunication();
        }
        catch (CudaException) when (_cancel.IsCancellationRequested) { }
        c.Cuda.WaitOnCompute(done, started: false);
        _cancel.ThrowIfCancellationRequested();
    }

    // Queued like a blocking call, not waited for: the wait the caller is given orders the compute stream's later
    // work after it.
    private Action Start(INcclComm comm, Action<IntPtr, IntPtr> call)
    {
        var c = (Comm)comm;
        _cancel.ThrowIfCancellationRequested();
        var done = c.Cuda.Communicate(stream => call(c.Handle, stream), started: true);
        return () =>
        {
            _cancel.ThrowIfCancellationRequested();
            c.Cuda.WaitOnCompute(done, started: true);
        };
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _abortOnCancel.Dispose();
        lock (_comms)
        {
            foreach (var c in _comms)
                NcclApi.CommDestroy(c);
            _comms.Clear();
        }
    }
}
