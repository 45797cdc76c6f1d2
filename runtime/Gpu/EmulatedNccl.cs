using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// NCCL's semantics over <see cref="EmulatedGpu"/>s, so that the NCCL communicator runs where there is no GPU: each
/// call of a group is a meeting of its members (the nth call of every member's communicator meets the nth of the
/// others; members that disagree on the call fail naming both), the last to arrive computes every member's result
/// in rank order, and point-to-point sends are buffered so that an exchange completes once its messages arrived.
/// </summary>
public sealed class EmulatedNccl(IReadOnlyList<IGpuDriver> gpus) : INccl
{
    private TimeSpan timeout = TimeSpan.FromSeconds(60);
    private CancellationToken cancel;

    /// <inheritdoc/>
    public void BeginRun(TimeSpan timeout, CancellationToken cancel) => (this.timeout, this.cancel) = (timeout, cancel);

    /// <inheritdoc/>
    public void EndRun() => cancel = CancellationToken.None;

    private sealed class Meeting(int size)
    {
        public readonly string?[] Calls = new string?[size];
        public readonly (ulong Send, ulong Recv)[] Buffers = new (ulong, ulong)[size];
        public int Arrived;
        public string? Failure;
        public readonly ManualResetEventSlim Done = new(false);
    }

    private sealed class GroupState(EmulatedGpu[] gpus)
    {
        public readonly EmulatedGpu[] Gpus = gpus;
        public readonly int Size = gpus.Length;
        public readonly Dictionary<long, Meeting> Meetings = [];
        public readonly Dictionary<(int From, int To), Queue<byte[]>> Mail = [];
        public readonly SemaphoreSlim[] Arrivals = Enumerable
            .Range(0, gpus.Length)
            .Select(_ => new SemaphoreSlim(0))
            .ToArray();
    }

    private sealed class Comm(int rank, int size, EmulatedGpu gpu, GroupState group) : INcclComm
    {
        public int Rank => rank;
        public int Size => size;
        public IGpuDriver Gpu => gpu;
        public EmulatedGpu Emulated => gpu;
        public GroupState State => group;
        public long Sequence;
    }

    /// <inheritdoc/>
    public byte[] UniqueId() => throw new InvalidOperationException("the emulated NCCL runs within one process");

    /// <inheritdoc/>
    public IReadOnlyList<INcclComm> Join(byte[] id, int size, IReadOnlyList<(int Gpu, int Rank)> members) =>
        throw new InvalidOperationException("the emulated NCCL runs within one process");

    /// <inheritdoc/>
    public IReadOnlyList<INcclComm> Group(IReadOnlyList<int> members)
    {
        var emulated = members
            .Select(g =>
                gpus[g] as EmulatedGpu
                ?? throw new InvalidOperationException($"the emulated NCCL runs on emulated GPUs, not {gpus[g].Name}")
            )
            .ToArray();
        var state = new GroupState(emulated);
        return emulated.Select((gpu, k) => (INcclComm)new Comm(k, emulated.Length, gpu, state)).ToArray();
    }

    /// <inheritdoc/>
    public void AllReduce(INcclComm comm, ulong send, ulong recv, long count, NcclType type, NcclOp op) =>
        Meet(
            comm,
            $"all_reduce({op}, {count} x {type})",
            send,
            recv,
            (c, m) =>
            {
                var sum = Reduce(c, m, count, type, op);
                for (int k = 0; k < m.Buffers.Length; k++)
                    sum.CopyTo(Member(c, k).Memory(m.Buffers[k].Recv, sum.Length, "all_reduce receive buffer"));
            }
        );

    /// <inheritdoc/>
    public void AllGather(INcclComm comm, ulong send, ulong recv, long sendCount, NcclType type) =>
        Meet(
            comm,
            $"all_gather({sendCount} x {type})",
            send,
            recv,
            (c, m) =>
            {
                int n = m.Buffers.Length;
                long bytes = sendCount * 4;
                var all = new byte[n * bytes];
                for (int k = 0; k < n; k++)
                    Member(c, k)
                        .Memory(m.Buffers[k].Send, bytes, "all_gather send buffer")
                        .CopyTo(all.AsSpan((int)(k * bytes)));
                for (int k = 0; k < n; k++)
                    all.CopyTo(Member(c, k).Memory(m.Buffers[k].Recv, all.Length, "all_gather receive buffer"));
            }
        );

    /// <inheritdoc/>
    public void ReduceScatter(INcclComm comm, ulong send, ulong recv, long recvCount, NcclType type, NcclOp op) =>
        Meet(
            comm,
            $"reduce_scatter({op}, {recvCount} x {type})",
            send,
            recv,
            (c, m) =>
            {
                int n = m.Buffers.Length;
                var sum = Reduce(c, m, recvCount * n, type, op);
                long bytes = recvCount * 4;
                for (int k = 0; k < n; k++)
                    sum.AsSpan((int)(k * bytes), (int)bytes)
                        .CopyTo(Member(c, k).Memory(m.Buffers[k].Recv, bytes, "reduce_scatter receive buffer"));
            }
        );

    /// <inheritdoc/>
    public void Exchange(
        INcclComm comm,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> sends,
        IReadOnlyList<(int Peer, ulong Buffer, long Count)> receives,
        NcclType type
    )
    {
        var c = (Comm)comm;
        var g = c.State;
        foreach (var (peer, buffer, count) in sends)
        {
            var data = c.Emulated.Memory(buffer, count * 4, "send buffer").ToArray();
            lock (g)
            {
                if (!g.Mail.TryGetValue((c.Rank, peer), out var q))
                    g.Mail[(c.Rank, peer)] = q = new Queue<byte[]>();
                q.Enqueue(data);
            }
            g.Arrivals[peer].Release();
        }
        var pending = receives.ToList();
        while (pending.Count > 0)
        {
            for (int i = pending.Count - 1; i >= 0; i--)
            {
                var (peer, buffer, count) = pending[i];
                byte[]? data = null;
                lock (g)
                    if (g.Mail.TryGetValue((peer, c.Rank), out var q) && q.Count > 0)
                        data = q.Dequeue();
                if (data == null)
                    continue;
                if (data.Length != count * 4)
                    throw new CollectiveException(
                        $"NCCL rank {c.Rank} expected {count} elements from rank {peer}, "
                            + $"which sent {data.Length / 4}"
                    );
                data.CopyTo(c.Emulated.Memory(buffer, data.Length, "receive buffer"));
                pending.RemoveAt(i);
            }
            if (pending.Count > 0 && !g.Arrivals[c.Rank].Wait(timeout, cancel))
                throw new CollectiveTimeoutException(
                    $"NCCL rank {c.Rank} waited {timeout.TotalSeconds:0.###} s for a "
                        + $"message from rank(s) {string.Join(", ", pending.Select(p => p.Peer))}"
                );
        }
    }

    private static EmulatedGpu Member(Comm c, int k) => c.State.Gpus[k];

    private void Meet(INcclComm comm, string call, ulong send, ulong recv, Action<Comm, Meeting> compute)
    {
        var c = (Comm)comm;
        var g = c.State;
        Meeting m;
        long seq = c.Sequence++;
        lock (g)
        {
            if (!g.Meetings.TryGetValue(seq, out m!))
                g.Meetings[seq] = m = new Meeting(g.Size);
            if (Array.FindIndex(m.Calls, x => x != null) is int other and >= 0 && m.Calls[other] != call)
                m.Failure ??= $"NCCL call mismatch: rank {other} called {m.Calls[other]}, rank {c.Rank} called {call}";
            m.Calls[c.Rank] = call;
            m.Buffers[c.Rank] = (send, recv);
            if (++m.Arrived == g.Size)
            {
                g.Meetings.Remove(seq);
                if (m.Failure == null)
                {
                    try
                    {
                        compute(c, m);
                    }
                    catch (InvalidOperationException e)
                    {
                        m.Failure = e.Message;
                    }
                }
                m.Done.Set();
            }
        }
        if (!m.Done.Wait(timeout, cancel))
            throw new CollectiveTimeoutException(
                $"NCCL rank {c.Rank} waited {timeout.TotalSeconds:0.###} s in "
                    + $"{call}; ranks {string.Join(", ", Enumerable.Range(0, g.Size).Where(k => m.Calls[k] == null))} "
                    + $"never called it"
            );
        if (m.Failure != null)
            throw new CollectiveException(m.Failure);
    }

    private static byte[] Reduce(Comm c, Meeting m, long count, NcclType type, NcclOp op)
    {
        int n = m.Buffers.Length;
        var result = Member(c, 0).Memory(m.Buffers[0].Send, count * 4, "send buffer").ToArray();
        for (int k = 1; k < n; k++)
        {
            var x = Member(c, k).Memory(m.Buffers[k].Send, count * 4, "send buffer");
            if (type == NcclType.Int32)
            {
                var a = MemoryMarshal.Cast<byte, int>(result.AsSpan());
                var b = MemoryMarshal.Cast<byte, int>(x);
                for (int i = 0; i < a.Length; i++)
                    a[i] = op == NcclOp.Sum ? unchecked(a[i] + b[i]) : Math.Max(a[i], b[i]);
            }
            else
            {
                var a = MemoryMarshal.Cast<byte, float>(result.AsSpan());
                var b = MemoryMarshal.Cast<byte, float>(x);
                // NCCL's float maximum is fmaxf: a NaN loses to a number.
                for (int i = 0; i < a.Length; i++)
                    a[i] =
                        op == NcclOp.Sum ? a[i] + b[i]
                        : float.IsNaN(a[i]) ? b[i]
                        : float.IsNaN(b[i]) ? a[i]
                        : MathF.Max(a[i], b[i]);
            }
        }
        return result;
    }

    /// <inheritdoc/>
    public void Dispose() { }
}
