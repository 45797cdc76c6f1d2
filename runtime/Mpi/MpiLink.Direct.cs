using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// all_reduce and reduce_scatter where every process runs one device of the group (the GPU convention): Open MPI's
/// blocking collectives straight on the group's communicator, with the processes' agreement on the call carried by
/// the data instead of a call of its own. An array of at most <see cref="GatherBytes"/> over the group comes in one
/// <c>MPI_Allgather</c> of every member's hash and array, and each process sums them in group order; a larger one
/// takes <c>MPI_Allgather</c> of the hashes (8 bytes), <c>MPI_Alltoallv</c> of ranges (member i reduces range i in
/// group order) and <c>MPI_Allgatherv</c> in place of the reduced ranges into the result, or, for a reduce_scatter
/// over the first dimension, no gather at all (range i is member i's result). Every element is reduced over the
/// members in group order with the steps of <c>ArrayOps.Sum</c>/<c>Max</c>, so the result is the in-process one bit
/// for bit. Buffers are kept per group; an all_reduce's result comes from <see cref="HostBuffers"/>.
/// </summary>
public sealed unsafe partial class MpiLink
{
    /// <summary>The most bytes (one member's array times the group's members) reduced from one allgather.</summary>
    internal const long GatherBytes = 32 << 10;

    // The communicators whose processes have agreed, through the waiting exchange, since the step started: their
    // later calls carry the hash with the data.
    private readonly HashSet<nint> _agreed = [];

    /// <summary>A step starts: the first collective of each group checks the processes' agreement by the exchange
    /// that times out, so that a process that never comes is reported within the collective timeout.</summary>
    public void StartStep()
    {
        lock (_agreed)
            _agreed.Clear();
    }

    private bool Agreed(nint comm)
    {
        lock (_agreed)
            return _agreed.Contains(comm);
    }

    private void MarkAgreed(nint comm)
    {
        lock (_agreed)
            _agreed.Add(comm);
    }

    // FNV-1a over the call's signature, site and display (what CallText joins), without making the text.
    private static ulong Hash(CollectiveCall<NDArray> call)
    {
        ulong h = 14695981039346656037UL;
        static ulong Add(ulong h, ReadOnlySpan<char> s)
        {
            foreach (char c in s)
                h = (h ^ c) * 1099511628211UL;
            return (h ^ 0x1f) * 1099511628211UL;
        }
        h = Add(h, call.Signature);
        h = Add(h, call.Site.Op);
        h = Add(h, call.Site.Where);
        h = (h ^ (ulong)call.Site.Step) * 1099511628211UL;
        h = Add(h, call.Span);
        return Add(h, call.Display);
    }

    private NDArray[] Direct(
        nint comm,
        int[] group,
        int[][] owners,
        NDArray x,
        Reduction reduction,
        CollectiveCall<NDArray> at,
        CancellationToken cancel
    )
    {
        int g = group.Length;
        long elements = x.Size;
        if (elements * 4 * g + 8L * g > int.MaxValue)
            throw new CollectiveException(
                $"{Who(at.Rank)} in {InProcessWorld<NDArray>.Describe(at.Site, at.Span)}: the group's arrays come to "
                    + "more bytes than one MPI call moves"
            );
        // Communicator rank of each member (by group position), and this process's position.
        var rankOf = new int[g];
        for (int q = 0; q < owners.Length; q++)
            rankOf[Array.IndexOf(group, owners[q][0])] = q;
        int me = Array.IndexOf(group, at.Rank);
        ulong hash = Hash(at);
        int bytes = (int)elements * 4;
        var src = Bytes(x);
        // The result's buffer comes from the pool the executor gives it back to at the result's last use, unless the
        // result is a reduce_scatter's chunk (a copy of part of it).
        bool pooled = reduction.ScatterDim < 0;
        float[]? wholeF =
            x.DType == DType.I32 ? null
            : pooled ? HostBuffers.Floats((int)elements)
            : GC.AllocateUninitializedArray<float>((int)elements);
        int[]? wholeI =
            wholeF != null ? null
            : pooled ? HostBuffers.Ints((int)elements)
            : GC.AllocateUninitializedArray<int>((int)elements);
        Span<byte> whole =
            wholeF != null ? MemoryMarshal.AsBytes(wholeF.AsSpan()) : MemoryMarshal.AsBytes(wholeI.AsSpan());
        var shape = (long[])x.Shape.Clone();
        NDArray Result() =>
            wholeF != null ? NDArray.FromFloats(x.DType, shape, wholeF) : NDArray.FromInts(shape, wholeI!);
        if ((long)bytes * g <= GatherBytes)
        {
            // One allgather of [hash, array] from every member; each process sums them all in group order.
            int chunk = 8 + bytes;
            var send = Scratch(comm, 2, chunk);
            var recv = Scratch(comm, 0, chunk * g);
            MemoryMarshal.Write(send, hash);
            src.CopyTo(send.AsSpan(8));
            fixed (
                byte* s = send,
                    r = recv
            )
                lock (_mpi)
                    MpiNative.AllgatherBytes(s, chunk, r, comm);
            CheckHashes(comm, recv, chunk, g, hash, owners, at, cancel);
            Span<byte> Member(int i) => recv.AsSpan(rankOf[i] * chunk + 8, bytes);
            Member(0).CopyTo(whole);
            for (int i = 1; i < g; i++)
                Combine(x.DType, reduction.Kind, whole, Member(i));
            return Split(Result(), reduction, group, at.Rank);
        }
        var hashes = Scratch(comm, 3, 8 * g);
        var mine = Scratch(comm, 4, 8);
        MemoryMarshal.Write(mine, hash);
        fixed (
            byte* m = mine,
                h = hashes
        )
            lock (_mpi)
                MpiNative.AllgatherBytes(m, 8, h, comm);
        CheckHashes(comm, hashes, 8, g, hash, owners, at, cancel);
        // Range i (of the elements, cut in g) is reduced by member i.
        var bound = new long[g + 1];
        for (int i = 0; i <= g; i++)
            bound[i] = elements * i / g;
        int Len(int i) => (int)(bound[i + 1] - bound[i]);
        var sendCounts = new int[g];
        var sendDispls = new int[g];
        var recvCounts = new int[g];
        var recvDispls = new int[g];
        int mineLen = Len(me) * 4;
        for (int i = 0; i < g; i++)
        {
            int q = rankOf[i];
            (sendCounts[q], sendDispls[q]) = (Len(i) * 4, (int)bound[i] * 4);
            (recvCounts[q], recvDispls[q]) = (mineLen, q * mineLen);
        }
        var parts = Scratch(comm, 0, mineLen * g);
        fixed (
            byte* s = src,
                r = parts
        )
        fixed (
            int* sc = sendCounts,
                sd = sendDispls,
                rc = recvCounts,
                rd = recvDispls
        )
            lock (_mpi)
                MpiNative.AlltoallvBytes(s, sc, sd, r, rc, rd, comm, blocking: true);
        bool scatterFirst = reduction.ScatterDim == 0;
        // Member i's range, reduced in group order: into the result, or into this member's own block.
        var ownShape = scatterFirst ? [shape[0] / g, .. shape[1..]] : shape;
        float[]? ownF = scatterFirst && wholeF != null ? GC.AllocateUninitializedArray<float>(Len(me)) : null;
        int[]? ownI = scatterFirst && wholeI != null ? GC.AllocateUninitializedArray<int>(Len(me)) : null;
        Span<byte> acc =
            !scatterFirst ? whole.Slice((int)bound[me] * 4, mineLen)
            : ownF != null ? MemoryMarshal.AsBytes(ownF.AsSpan())
            : MemoryMarshal.AsBytes(ownI.AsSpan());
        parts.AsSpan(rankOf[0] * mineLen, mineLen).CopyTo(acc);
        for (int i = 1; i < g; i++)
            Combine(x.DType, reduction.Kind, acc, parts.AsSpan(rankOf[i] * mineLen, mineLen));
        if (scatterFirst)
            return [ownF != null ? NDArray.FromFloats(x.DType, ownShape, ownF) : NDArray.FromInts(ownShape, ownI!)];
        for (int i = 0; i < g; i++)
            (recvCounts[rankOf[i]], recvDispls[rankOf[i]]) = (Len(i) * 4, (int)bound[i] * 4);
        fixed (byte* w = whole)
        fixed (
            int* c = recvCounts,
                d = recvDispls
        )
            lock (_mpi)
                MpiNative.AllgathervBytes(MpiNative.InPlace, 0, w, c, d, comm);
        return Split(Result(), reduction, group, at.Rank);
    }

    // Every member's hash (at the start of each of g chunks) equals this one's, or every process, having seen the
    // same hashes, exchanges the calls' texts and fails naming both.
    private void CheckHashes(
        nint comm,
        byte[] all,
        int chunk,
        int g,
        ulong hash,
        int[][] owners,
        CollectiveCall<NDArray> at,
        CancellationToken cancel
    )
    {
        bool same = true;
        for (int q = 0; q < g; q++)
            same &= MemoryMarshal.Read<ulong>(all.AsSpan(q * chunk, 8)) == hash;
        if (same)
            return;
        string text = CallText(at);
        var parts = Exchange(comm, System.Text.Encoding.UTF8.GetBytes(text), [], owners.Length, at, cancel);
        for (int q = 0; q < owners.Length; q++)
            CheckSame(parts[q].Call, text, owners[q][0], at);
        throw new CollectiveException(
            $"collective mismatch: {Who(at.Rank)}'s call {InProcessWorld<NDArray>.Describe(at.Site, at.Span)} does "
                + "not match its group's in another process"
        );
    }

    // The result of a reduce_scatter is this member's chunk of the reduced array; of an all_reduce, all of it.
    private static NDArray[] Split(NDArray result, Reduction reduction, int[] group, int member) =>
        reduction.ScatterDim < 0
            ? [result]
            : [HostArrayOps.Instance.Split(result, reduction.ScatterDim, group.Length)[Array.IndexOf(group, member)]];

    private static void Combine(DType dtype, ReduceKind kind, Span<byte> acc, Span<byte> b)
    {
        if (dtype == DType.I32)
        {
            var ai = MemoryMarshal.Cast<byte, int>(acc);
            var bi = MemoryMarshal.Cast<byte, int>(b);
            if (kind == ReduceKind.Sum)
                ArrayOps.SumInto(ai, bi);
            else
                ArrayOps.MaxInto(ai, bi);
        }
        else
        {
            var af = MemoryMarshal.Cast<byte, float>(acc);
            var bf = MemoryMarshal.Cast<byte, float>(b);
            if (kind == ReduceKind.Sum)
                ArrayOps.SumInto(dtype, af, bf);
            else
                ArrayOps.MaxInto(af, bf);
        }
    }

    // all_gather, all_to_all and collective_permute where every process runs one device of the group: one blocking
    // call moves what each member needs and nothing more, with the call's hash before each member's bytes; null when
    // the permute is not one (a source sending to several targets), which then takes the gathering path.
    private NDArray[]? Move(
        nint comm,
        int[] group,
        int[][] owners,
        NDArray x,
        Movement moves,
        CollectiveCall<NDArray> at,
        CancellationToken cancel
    )
    {
        int g = group.Length;
        var rankOf = new int[g];
        for (int q = 0; q < owners.Length; q++)
            rankOf[Array.IndexOf(group, owners[q][0])] = q;
        ulong hash = Hash(at);
        var ops = HostArrayOps.Instance;
        var src = Bytes(x);
        if ((long)src.Length * g + 8L * g > int.MaxValue)
            throw new CollectiveException(
                $"{Who(at.Rank)} in {InProcessWorld<NDArray>.Describe(at.Site, at.Span)}: the group's arrays come to "
                    + "more bytes than one MPI call moves"
            );
        switch (moves.Kind)
        {
            case Movement.AllGather:
            {
                int chunk = 8 + src.Length;
                var send = Scratch(comm, 2, chunk);
                var recv = Scratch(comm, 0, chunk * g);
                MemoryMarshal.Write(send, hash);
                src.CopyTo(send.AsSpan(8));
                fixed (
                    byte* s = send,
                        r = recv
                )
                    lock (_mpi)
                        MpiNative.AllgatherBytes(s, chunk, r, comm);
                CheckHashes(comm, recv, chunk, g, hash, owners, at, cancel);
                var parts = new NDArray[g];
                for (int i = 0; i < g; i++)
                    parts[i] = ArrayOf(recv.AsSpan(rankOf[i] * chunk + 8, src.Length), x.DType, x.Shape);
                return [ops.Concat(parts, moves.ConcatDim)];
            }
            case Movement.AllToAll:
            {
                var pieces = ops.Split(x, moves.SplitDim, g);
                int each = src.Length / g,
                    chunk = 8 + each;
                var send = Scratch(comm, 2, chunk * g);
                var recv = Scratch(comm, 0, chunk * g);
                for (int i = 0; i < g; i++)
                {
                    MemoryMarshal.Write(send.AsSpan(rankOf[i] * chunk), hash);
                    Bytes(pieces[i]).CopyTo(send.AsSpan(rankOf[i] * chunk + 8));
                }
                fixed (
                    byte* s = send,
                        r = recv
                )
                    lock (_mpi)
                        MpiNative.AlltoallBytes(s, chunk, r, comm);
                CheckHashes(comm, recv, chunk, g, hash, owners, at, cancel);
                var column = new NDArray[g];
                for (int i = 0; i < g; i++)
                    column[i] = ArrayOf(recv.AsSpan(rankOf[i] * chunk + 8, each), x.DType, pieces[0].Shape);
                return [ops.Concat(column, moves.ConcatDim)];
            }
            default:
            {
                var pairs = moves.Pairs!;
                int me = at.Rank;
                if (pairs.Count(p => p.Source == me) > 1 || pairs.Any(p => pairs.Count(o => o.Source == p.Source) > 1))
                    return null;
                int target = Array.FindIndex(pairs, p => p.Source == me),
                    source = Array.FindIndex(pairs, p => p.Target == me);
                int chunk = 8 + src.Length;
                var send = Scratch(comm, 2, chunk);
                var recv = Scratch(comm, 0, chunk);
                MemoryMarshal.Write(send, hash);
                src.CopyTo(send.AsSpan(8));
                int to = target < 0 ? -1 : rankOf[Array.IndexOf(group, pairs[target].Target)],
                    from = source < 0 ? -1 : rankOf[Array.IndexOf(group, pairs[source].Source)];
                fixed (
                    byte* s = send,
                        r = recv
                )
                    lock (_mpi)
                        MpiNative.SendrecvBytes(s, to < 0 ? -1 : chunk, to, r, from < 0 ? -1 : chunk, from, 0, comm);
                if (from < 0)
                    return [ops.Zeros(x.DType, x.Shape)];
                if (MemoryMarshal.Read<ulong>(recv) != hash)
                    throw new CollectiveException(
                        $"collective mismatch: {Who(pairs[source].Source)} sent to {Who(me)} from a call that differs "
                            + $"from {Who(me)}'s {InProcessWorld<NDArray>.Describe(at.Site, at.Span)} as {at.Display}"
                    );
                return [ArrayOf(recv.AsSpan(8, src.Length), x.DType, x.Shape)];
            }
        }
    }

    // A new array of the bytes of one member's array.
    private static NDArray ArrayOf(ReadOnlySpan<byte> bytes, DType dtype, long[] shape)
    {
        if (dtype == DType.I32)
            return NDArray.FromInts((long[])shape.Clone(), MemoryMarshal.Cast<byte, int>(bytes).ToArray());
        return NDArray.FromFloats(dtype, (long[])shape.Clone(), MemoryMarshal.Cast<byte, float>(bytes).ToArray());
    }
}
