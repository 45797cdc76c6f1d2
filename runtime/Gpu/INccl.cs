namespace ParallelCompiler.Runtime.Gpu;

/// <summary>NCCL's element types used here (ncclDataType_t values).</summary>
public enum NcclType
{
    /// <summary>ncclInt32.</summary>
    Int32 = 2,

    /// <summary>ncclFloat32 (f16 and bf16 too: a GPU array holds them as f32).</summary>
    Float32 = 7,
}

/// <summary>NCCL's reductions used here (ncclRedOp_t values).</summary>
public enum NcclOp
{
    /// <summary>ncclSum.</summary>
    Sum = 0,

    /// <summary>ncclMax.</summary>
    Max = 2,
}

/// <summary>One member's communicator of a group: its NCCL rank (its position in the group) on its GPU.</summary>
public interface INcclComm
{
    /// <summary>Position in the group.</summary>
    int Rank { get; }

    /// <summary>Members in the group.</summary>
    int Size { get; }

    /// <summary>The member's GPU.</summary>
    IGpuDriver Gpu { get; }
}

/// <summary>
/// The NCCL calls the runtime makes, on the GPUs of one process (one per device): communicators for a group made
/// together (<c>ncclCommInitAll</c>), the three collectives, and point-to-point exchanges issued as one group
/// (<c>ncclGroupStart</c>, <c>ncclSend</c>/<c>ncclRecv</c>, <c>ncclGroupEnd</c>). Every call returns once its result
/// is in the receive buffer, except the started all-reduce and reduce-scatter, whose result the GPU's later work
/// waits for. <see cref="Cuda.Nccl"/> calls libnccl; <see cref="EmulatedNccl"/> does the same over
/// emulated GPUs, with NCCL's buffer layouts (all_gather rank-major, reduce_scatter chunk k to rank k).
/// </summary>
public interface INccl : IDisposable
{
    /// <summary>
    /// The run the next calls belong to: how long a call may wait, and what cancels the wait (a failed device); a
    /// call cancelled so throws <see cref="OperationCanceledException"/>.
    /// </summary>
    void BeginRun(TimeSpan timeout, CancellationToken cancel);

    /// <summary>The run ended (its world is about to be disposed, which cancels it): its cancellation no longer
    /// concerns these calls.</summary>
    void EndRun();

    /// <summary>Communicators of a group whose member k runs on GPU <paramref name="gpus"/>[k] (indices into this
    /// NCCL's GPUs).</summary>
    IReadOnlyList<INcclComm> Group(IReadOnlyList<int> gpus);

    /// <summary>The bytes that name a new communicator made across processes (<c>ncclGetUniqueId</c>): one member's
    /// process makes them and sends them to the others.</summary>
    byte[] UniqueId();

    /// <summary>
    /// This process's members of a group of <paramref name="size"/> that spans processes, member k on GPU
    /// <paramref name="members"/>[k].Gpu (an index into this NCCL's GPUs) with the group position .Rank: every
    /// process of the group joins the communicator <paramref name="id"/> names (<c>ncclCommInitRank</c>, this
    /// process's members made together between <c>ncclGroupStart</c> and <c>ncclGroupEnd</c>).
    /// </summary>
    IReadOnlyList<INcclComm> Join(byte[] id, int size, IReadOnlyList<(int Gpu, int Rank)> members);

    /// <summary>recv = the reduction over the group of every member's send (count elements).</summary>
    void AllReduce(INcclComm comm, ulong send, ulong recv, long count, NcclType type, NcclOp op);

    /// <summary>recv = member 0's send, member 1's send, ... (sendCount elements each).</summary>
    void AllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type);

    /// <summary>recv = chunk k (recvCount elements) of the reduction over the group of the sends, on member
    /// k.</summary>
    void ReduceScatter(INcclComm comm, ulong send, ulong recv, long recvCount, NcclType type, NcclOp op);

    /// <summary>
    /// Starts what <see cref="AllReduce"/> does, after the work issued to the member's GPU so far, and returns without
    /// waiting; the action returned (called once, on the member's thread) makes the GPU's work issued after it wait
    /// for the result, without the host waiting. The buffers stay the caller's until then. A back end without
    /// streams runs it at once (the default).
    /// </summary>
    Action StartAllReduce(INcclComm comm, ulong send, ulong recv, long count, NcclType type, NcclOp op)
    {
        AllReduce(comm, send, recv, count, type, op);
        return static () => { };
    }

    /// <summary>Starts what <see cref="ReduceScatter"/> does, as <see cref="StartAllReduce"/> starts an
    /// all-reduce.</summary>
    Action StartReduceScatter(INcclComm comm, ulong send, ulong recv, long recvCount, NcclType type, NcclOp op)
    {
        ReduceScatter(comm, send, recv, recvCount, type, op);
        return static () => { };
    }

    /// <summary>Starts what <see cref="AllGather"/> does, as <see cref="StartAllReduce"/> starts an
    /// all-reduce.</summary>
    Action StartAllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type)
    {
        AllGather(comm, send, recv, sendCount, type);
        return static () => { };
    }

    /// <summary>Sends and receives between members, issued together.</summary>
    void Exchange(
        INcclComm comm,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> sends,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> receives,
        NcclType type
    );
}
