using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// Sums and maxima across processes, shared out: the elements are cut into one range a process; every process
/// sends each its range of every member's array (<c>MPI_Ialltoallv</c>), reduces the range it owns over all
/// members in group order with the steps of <see cref="ArrayOps.Sum"/> and <see cref="ArrayOps.Max"/>, and the
/// reduced ranges are gathered by all (<c>MPI_Iallgatherv</c>). Each element is reduced by one process, in the same
/// order as in process, so the result is the in-process one bit for bit, while each process moves about twice its
/// array (as a ring all-reduce does) instead of every member's.
/// </summary>
public sealed unsafe partial class MpiLink
{
    // The members' calls agree when their texts hash alike on every process; otherwise the gathering path says how
    // they differ.
    private bool Agree(nint comm, int n, string text, CollectiveCall<NDArray> at, CancellationToken cancel)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in text)
            h = (h ^ c) * 1099511628211UL;
        var all = AllGatherInts(comm, [(int)h, (int)(h >> 32)], n, at, cancel);
        for (int i = 2; i < all.Length; i++)
            if (all[i] != all[i % 2])
                return false;
        return true;
    }

    // Once every process has agreed on the call (so every member is in it), the data moves by Open MPI's blocking
    // collectives, much faster than its nonblocking ones (which advance only as they are tested); a process that dies
    // meanwhile makes the launcher end the job. Only where this process runs one device: a thread blocked in MPI
    // holds the lock, which another device's thread of the same process may need for the peer it waits for.
    private bool Blocking => Count == 1;

    private NDArray[] Reduce(
        nint comm,
        int[] group,
        int[] local,
        int[][] owners,
        NDArray[] inputs,
        Reduction reduction,
        CollectiveCall<NDArray> at,
        CancellationToken cancel
    )
    {
        int p = owners.Length,
            me = Array.FindIndex(owners, o => o[0] == local[0]);
        var x0 = inputs[0];
        long elements = x0.Size;
        if (elements * 4 * group.Length > int.MaxValue)
            throw new CollectiveException(
                $"{Who(at.Rank)} in {InProcessWorld<NDArray>.Describe(at.Site, at.Span)}: the group's arrays come to "
                    + "more bytes than one MPI call moves"
            );
        var bound = new long[p + 1];
        for (int q = 0; q <= p; q++)
            bound[q] = elements * q / p;
        int Len(int q) => (int)(bound[q + 1] - bound[q]);
        // What goes to process q: range q of each local member, in group order.
        var sendCounts = Pinned(new int[p]);
        var sendDispls = Pinned(new int[p]);
        var recvCounts = Pinned(new int[p]);
        var recvDispls = Pinned(new int[p]);
        // One member: its array is sent as it is (pinned while MPI reads it).
        Span<byte> send;
        if (inputs.Length == 1)
        {
            send = Bytes(x0);
            for (int q = 0; q < p; q++)
                (sendCounts[q], sendDispls[q]) = (Len(q) * 4, (int)bound[q] * 4);
        }
        else
        {
            send = Scratch(comm, 2, (int)elements * 4 * inputs.Length);
            int at0 = 0;
            for (int q = 0; q < p; q++)
            {
                sendDispls[q] = at0;
                foreach (var x in inputs)
                {
                    Bytes(x).Slice((int)bound[q] * 4, Len(q) * 4).CopyTo(send[at0..]);
                    at0 += Len(q) * 4;
                }
                sendCounts[q] = at0 - sendDispls[q];
            }
        }
        int total = 0;
        for (int q = 0; q < p; q++)
        {
            recvDispls[q] = total;
            recvCounts[q] = owners[q].Length * Len(me) * 4;
            total += recvCounts[q];
        }
        var recv = Scratch(comm, 0, total);
        fixed (
            byte* s = send,
                r = recv
        )
        fixed (
            int* sc = sendCounts,
                sd = sendDispls,
                rc = recvCounts,
                rd = recvDispls
        )
        {
            nint req;
            lock (_mpi)
                req = MpiNative.AlltoallvBytes(s, sc, sd, r, rc, rd, comm, Blocking);
            if (!Blocking)
                Wait(ref req, at, cancel);
        }
        // This process's range, reduced over the members in group order.
        int len = Len(me);
        Span<byte> Part(int member)
        {
            int q = Array.FindIndex(owners, o => o.Contains(member));
            return recv.AsSpan(recvDispls[q] + Array.IndexOf(owners[q], member) * len * 4, len * 4);
        }
        var acc = Scratch(comm, 1, len * 4).AsSpan(0, len * 4);
        Part(group[0]).CopyTo(acc);
        for (int i = 1; i < group.Length; i++)
        {
            var b = Part(group[i]);
            if (x0.DType == DType.I32)
            {
                var ai = MemoryMarshal.Cast<byte, int>(acc);
                var bi = MemoryMarshal.Cast<byte, int>(b);
                if (reduction.Kind == ReduceKind.Sum)
                    ArrayOps.SumInto(ai, bi);
                else
                    ArrayOps.MaxInto(ai, bi);
            }
            else
            {
                var af = MemoryMarshal.Cast<byte, float>(acc);
                var bf = MemoryMarshal.Cast<byte, float>(b);
                if (reduction.Kind == ReduceKind.Sum)
                    ArrayOps.SumInto(x0.DType, af, bf);
                else
                    ArrayOps.MaxInto(af, bf);
            }
        }
        var counts = Pinned(new int[p]);
        var displs = Pinned(new int[p]);
        for (int q = 0; q < p; q++)
            (counts[q], displs[q]) = (Len(q) * 4, (int)bound[q] * 4);
        // The result is the program's array: new each call (on the pinned heap unless the call blocks).
        float[]? wholeF =
            x0.DType == DType.I32 ? null
            : Blocking ? new float[elements]
            : Fresh<float>((int)elements);
        int[]? wholeI =
            wholeF != null ? null
            : Blocking ? new int[elements]
            : Fresh<int>((int)elements);
        Span<byte> whole =
            wholeF != null ? MemoryMarshal.AsBytes(wholeF.AsSpan()) : MemoryMarshal.AsBytes(wholeI.AsSpan());
        fixed (
            byte* s = acc,
                w = whole
        )
        fixed (
            int* c = counts,
                d = displs
        )
        {
            if (Blocking)
                lock (_mpi)
                    MpiNative.AllgathervBytes(s, acc.Length, w, c, d, comm);
            else
            {
                nint req;
                lock (_mpi)
                    req = MpiNative.IallgathervBytes(s, acc.Length, w, c, d, comm);
                Wait(ref req, at, cancel);
            }
        }
        var shape = (long[])x0.Shape.Clone();
        var result = wholeF != null ? NDArray.FromFloats(x0.DType, shape, wholeF) : NDArray.FromInts(shape, wholeI!);
        var ops = HostArrayOps.Instance;
        if (reduction.ScatterDim >= 0)
        {
            var chunks = ops.Split(result, reduction.ScatterDim, group.Length);
            return Array.ConvertAll(local, d => chunks[Array.IndexOf(group, d)]);
        }
        var results = new NDArray[local.Length];
        results[0] = result;
        for (int i = 1; i < results.Length; i++)
            results[i] = ops.Copy(result);
        return results;
    }

    // A buffer of at least n bytes for one use of one group's calls, kept for the next (each group's calls come one
    // at a time; fresh pages for every call of a large array cost more than the reduction).
    private byte[] Scratch(nint comm, int use, int n)
    {
        var key = (comm, use);
        if (!_scratch.TryGetValue(key, out var b) || b.Length < n)
            _scratch[key] = b = Fresh<byte>(n);
        return b;
    }

    private static Span<byte> Bytes(NDArray x) =>
        x.F != null ? MemoryMarshal.AsBytes(x.F.AsSpan()) : MemoryMarshal.AsBytes(x.I!.AsSpan());
}
