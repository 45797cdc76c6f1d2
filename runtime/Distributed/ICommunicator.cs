using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// The collectives and point-to-point transfers of one device over arrays of kind <typeparamref name="T"/> (host
/// arrays, or arrays in a GPU's memory); the in-process world (host
/// arrays or one shared GPU) and the NCCL communicator (one GPU per device) implement it.
/// A collective over <c>axes</c> spans <see cref="DeviceMesh.Group"/>: the devices that agree with this one on every
/// other axis, ordered row-major over the axes as given. Every member of a group must issue the same collectives,
/// with the same arguments and array types, in the same order; a back end reports a disagreement as a
/// <see cref="CollectiveException"/> and a member that never arrives as a <see cref="CollectiveTimeoutException"/>.
/// A group of one member gets a copy of its own array at once. Results never alias the inputs or another device's
/// result. One communicator is used by one thread at a time.
/// </summary>
public interface ICommunicator<T>
    where T : class, IArray
{
    /// <summary>This device's rank in <see cref="Mesh"/>.</summary>
    int Rank { get; }

    /// <summary>The mesh the ranks and axes refer to.</summary>
    DeviceMesh Mesh { get; }

    /// <summary>Every member of the group over <paramref name="axes"/> gets the elementwise reduction of all members'
    /// <paramref name="x"/>.</summary>
    T AllReduce(T x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site);

    /// <summary>Every member gets all members' <paramref name="x"/> concatenated along <paramref name="dim"/> in group
    /// order.</summary>
    T AllGather(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site);

    /// <summary>The sum over the group, split along <paramref name="dim"/> into group-size chunks; member i keeps chunk
    /// i.</summary>
    T ReduceScatter(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site);

    /// <summary>Member i sends chunk j of <paramref name="x"/> along <paramref name="splitDim"/> to member j and gets
    /// the chunks it receives from members 0..n-1 concatenated along <paramref name="concatDim"/>.</summary>
    T AllToAll(T x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site);

    /// <summary>Every device of the mesh calls it with the same global-rank <paramref name="pairs"/>; a target gets its
    /// source's <paramref name="x"/>, every other device zeros of <paramref name="x"/>'s shape.</summary>
    T CollectivePermute(T x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site);

    /// <summary>
    /// Starts the all-reduce of each of <paramref name="xs"/> (a bucket) and returns without waiting for the group;
    /// the device goes on computing until <see cref="PendingCollective{T}.Wait"/>. Each array is reduced exactly as
    /// <see cref="AllReduce"/> would, and the started collective takes its place among the group's collectives
    /// where it starts. The inputs must stay alive until the wait. A back end without asynchronous collectives
    /// runs them at once (the default).
    /// </summary>
    PendingCollective<T> StartAllReduce(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        ReduceKind kind,
        CollectiveSite site
    ) => PendingCollective<T>.Done(xs.Select(x => AllReduce(x, axes, kind, site)).ToArray());

    /// <summary>Starts the reduce-scatter of each of <paramref name="xs"/> along <paramref name="dim"/>, as <see
    /// cref="StartAllReduce"/> starts all-reduces.</summary>
    PendingCollective<T> StartReduceScatter(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => PendingCollective<T>.Done(xs.Select(x => ReduceScatter(x, axes, dim, site)).ToArray());

    /// <summary>Starts the all-gather of each of <paramref name="xs"/> along <paramref name="dim"/>, as <see
    /// cref="StartAllReduce"/> starts all-reduces.</summary>
    PendingCollective<T> StartAllGather(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => PendingCollective<T>.Done(xs.Select(x => AllGather(x, axes, dim, site)).ToArray());

    /// <summary>Sends a copy of <paramref name="x"/> to global rank <paramref name="peer"/> without waiting; messages
    /// from one device to another with the same <paramref name="tag"/> arrive in the order sent.</summary>
    void Send(T x, int peer, CollectiveSite site, int tag = 0);

    /// <summary>The next message from global rank <paramref name="peer"/>, waiting for it; a <see
    /// cref="CollectiveException"/> unless it has <paramref name="dtype"/> and <paramref name="shape"/>.</summary>
    T Recv(int peer, DType dtype, long[] shape, CollectiveSite site, int tag = 0);
}
