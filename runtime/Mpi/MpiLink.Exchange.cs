using System.Diagnostics;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>The gathering of every process's call and bytes over a group's communicator, and the waits.</summary>
public sealed unsafe partial class MpiLink
{
    // Every process's call text and bytes, in communicator (ascending process rank) order; with a root, on the root
    // only (MPI_Igatherv), and nothing on the others.
    private (string Call, byte[] Bytes, int Offset, int Count)[] Exchange(
        nint comm,
        byte[] call,
        byte[] data,
        int n,
        CollectiveCall<NDArray> at,
        CancellationToken cancel,
        int root = -1
    )
    {
        var headers = AllGatherInts(comm, [call.Length, data.Length], n, at, cancel);
        var counts = Pinned(new int[n]);
        var displs = Pinned(new int[n]);
        long total = 0;
        for (int i = 0; i < n; i++)
        {
            counts[i] = headers[2 * i] + headers[2 * i + 1];
            displs[i] = (int)total;
            total += counts[i];
        }
        if (total > int.MaxValue)
            throw new CollectiveException(
                $"{Who(at.Rank)} in {InProcessWorld<NDArray>.Describe(at.Site, at.Span)}: the group's arrays come to "
                    + $"{total} bytes, more than one MPI call moves"
            );
        var mine = Pinned(new byte[call.Length + data.Length]);
        call.CopyTo(mine, 0);
        data.CopyTo(mine, call.Length);
        bool receives = root < 0 || MpiNative.CommRank(comm) == root;
        var all = Fresh<byte>(receives ? (int)total : 0);
        fixed (
            byte* s = mine,
                a = all
        )
        fixed (
            int* c = counts,
                d = displs
        )
        {
            nint req;
            lock (_mpi)
                req =
                    root < 0
                        ? MpiNative.IallgathervBytes(s, mine.Length, a, c, d, comm)
                        : MpiNative.IgathervBytes(s, mine.Length, a, c, d, root, comm);
            Wait(ref req, at, cancel);
        }
        if (!receives)
            return [];
        var result = new (string, byte[], int, int)[n];
        for (int i = 0; i < n; i++)
        {
            int callLength = headers[2 * i];
            string text = System.Text.Encoding.UTF8.GetString(all, displs[i], callLength);
            result[i] = (text, all, displs[i] + callLength, headers[2 * i + 1]);
        }
        return result;
    }

    // Every process's ints (as many from each), in communicator order, within the timeout.
    private int[] AllGatherInts(nint comm, int[] values, int n, CollectiveCall<NDArray> at, CancellationToken cancel)
    {
        var mine = Pinned(values);
        var all = Fresh<int>(values.Length * n);
        fixed (
            int* m = mine,
                a = all
        )
        {
            nint req;
            lock (_mpi)
                req = MpiNative.Iallgather(m, values.Length, MpiNative.Int, a, comm);
            Wait(ref req, at, cancel);
        }
        return all;
    }

    private void Wait(ref nint request, CollectiveCall<NDArray> at, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        for (int spins = 0; ; spins++)
        {
            lock (_mpi)
                if (MpiNative.Test(ref request))
                    return;
            // The buffers are pinned and never freed while the request is pending: the process ends after this.
            cancel.ThrowIfCancellationRequested();
            if (clock.Elapsed > _timeout)
                throw new CollectiveTimeoutException(
                    $"{Who(at.Rank)} waited {InProcessWorld<NDArray>.Duration(_timeout)} in "
                        + $"{InProcessWorld<NDArray>.Describe(at.Site, at.Span)}; a member of its group in another "
                        + "process never arrived (its process is stuck, gone, or in another collective)"
                );
            Pause(spins);
        }
    }

    // Called under the lock.
    private void PruneSends()
    {
        for (int i = _sends.Count - 1; i >= 0; i--)
        {
            var (req, _) = _sends[i];
            if (MpiNative.Test(ref req))
                _sends.RemoveAt(i);
        }
    }

    // Spins briefly, then yields the core: ranks often outnumber cores, and a waiting rank must let the one it
    // waits for run (sleeping a millisecond at a time made a call of a few microseconds take several); after about
    // a second of yields it sleeps, so a long wait costs no core.
    private static void Pause(int spins)
    {
        if (spins < 64)
            Thread.SpinWait(16);
        else if (spins < 1_000_000)
            Thread.Yield();
        else
            Thread.Sleep(1);
    }

    // A buffer MPI writes into, on the pinned heap.
    private static T[] Fresh<T>(int n)
        where T : unmanaged => GC.AllocateUninitializedArray<T>(n, pinned: true);

    // Buffers MPI reads or writes live on the pinned heap, so a request abandoned on a timeout never sees them move.
    private static T[] Pinned<T>(T[] values)
        where T : unmanaged
    {
        var a = GC.AllocateUninitializedArray<T>(values.Length, pinned: true);
        values.CopyTo(a, 0);
        return a;
    }
}
