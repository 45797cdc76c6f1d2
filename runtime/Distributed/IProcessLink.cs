using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// What an <see cref="InProcessWorld{T}"/> that runs only some of a mesh's devices needs from the other processes
/// of its job (an MPI job): the devices this process runs, the collectives whose groups span processes (the local
/// members meet in process first; one of them then takes the whole group's call across), and the transfers to
/// and from devices of other processes.
/// </summary>
internal interface IProcessLink<T>
    where T : class, IArray
{
    /// <summary>The first device this process runs; it runs <see cref="Count"/> devices from it.</summary>
    int First { get; }

    /// <summary>How many devices this process runs.</summary>
    int Count { get; }

    /// <summary>
    /// The results of the <paramref name="local"/> members (in their order) of <paramref name="call"/> over
    /// <paramref name="group"/> (global ranks in group order), from their <paramref name="inputs"/>: the other
    /// processes' members' inputs are fetched, or the reduction is shared out, as the link does it, and every
    /// result equals what <paramref name="call"/>.Compute gives from all inputs in group order. <paramref
    /// name="reduction"/> says when the call is a sum or max (and, for a reduce_scatter, the dimension).
    /// </summary>
    T[] Collective(
        CollectiveCall<T> call,
        int[] group,
        int[] local,
        T[] inputs,
        Reduction? reduction,
        CancellationToken cancel
    );

    /// <summary>Sends a copy of <paramref name="x"/> from local device <paramref name="from"/> to device <paramref
    /// name="to"/> of another process, without waiting.</summary>
    void Send(T x, int from, int to, int tag, CollectiveSite site);

    /// <summary>The next message from device <paramref name="from"/> of another process to local device <paramref
    /// name="to"/>, with the site it was sent at; false when none came within <paramref name="timeout"/>.</summary>
    bool TryRecv(
        int from,
        int to,
        int tag,
        TimeSpan timeout,
        CancellationToken cancel,
        out (T Value, CollectiveSite Site) message
    );
}

/// <summary>A collective that reduces: its kind and, for a reduce_scatter, the dimension it cuts (else
/// -1).</summary>
internal sealed record Reduction(ReduceKind Kind, int ScatterDim);
