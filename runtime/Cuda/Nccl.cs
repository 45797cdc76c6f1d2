using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.Gpu;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// <see cref="INccl"/> over libnccl on the CUDA GPUs of this process: a group's communicators come from one
/// <c>ncclCommInitAll</c> over its members' GPUs; each call is issued on the default stream with the member's
/// context current, then waited for (without the GPU's lock), so it returns with the result in place.
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
        Issue(comm, c => NcclApi.AllReduce(send, recv, count, (int)type, (int)op, c));

    /// <inheritdoc/>
    public void AllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type) =>
        Issue(comm, c => NcclApi.AllGather(send, recv, sendCount, (int)type, c));

    /// <inheritdoc/>
    public void ReduceScatter(INcclComm comm, ulong send, ulong recv, long recvCount, NcclType type, NcclOp op) =>
        Issue(comm, c => NcclApi.ReduceScatter(send, recv, recvCount, (int)type, (int)op, c));

    /// <inheritdoc/>
    public void Exchange(
        INcclComm comm,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> sends,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> receives,
        NcclType type
    ) =>
        Issue(
            comm,
            c =>
            {
                NcclApi.GroupStart();
                try
                {
                    foreach (var (peer, buffer, count) in sends)
                        NcclApi.Send(buffer, count, (int)type, peer, c);
                    foreach (var (peer, buffer, count) in receives)
                        NcclApi.Recv(buffer, count, (int)type, peer, c);
                }
                finally
                {
                    NcclApi.GroupEnd();
                }
            }
        );

    // The call is queued holding the GPU's lock; the wait for the other members is made without it, and a wait
    // ended by an abort (another member failed) stops this member too.
    private void Issue(INcclComm comm, Action<IntPtr> call)
    {
        var c = (Comm)comm;
        _cancel.ThrowIfCancellationRequested();
        c.Cuda.WithContext(() => call(c.Handle));
        try
        {
            c.Cuda.Synchronize();
        }
        catch (CudaException) when (_cancel.IsCancellationRequested) { }
        _cancel.ThrowIfCancellationRequested();
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
