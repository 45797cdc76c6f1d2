using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>Where a collective was issued: the op, its location in the program and the step number; for messages only.</summary>
public readonly record struct CollectiveSite(string Op, string Where, long Step);

/// <summary>How an all_reduce combines.</summary>
public enum ReduceKind
{
    /// <summary>Elementwise sum.</summary>
    Sum,
    /// <summary>Elementwise maximum.</summary>
    Max,
}

/// <summary>
/// The collectives and transfers one device takes part in. Groups are named by mesh axes: the devices that
/// agree with this one on every other axis, ordered row-major over the axes as given. The in-process, MPI and
/// NCCL back ends implement it; every member of a group must issue the same collectives in the same order.
/// </summary>
public interface ICommunicator
{
    /// <summary>This device's rank in the mesh.</summary>
    int Rank { get; }
    /// <summary>The mesh.</summary>
    DeviceMesh Mesh { get; }
    /// <summary>Every member gets the elementwise reduction of all members' <paramref name="x"/>.</summary>
    NDArray AllReduce(NDArray x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site);
    /// <summary>The members' blocks concatenated along <paramref name="dim"/> in group order.</summary>
    NDArray AllGather(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site);
    /// <summary>The sum over the group; member i keeps chunk i of <paramref name="dim"/>.</summary>
    NDArray ReduceScatter(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site);
    /// <summary>Member i sends chunk j of <paramref name="splitDim"/> to member j and concatenates what it receives along <paramref name="concatDim"/>.</summary>
    NDArray AllToAll(NDArray x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site);
    /// <summary>All devices take part; each target gets its source's block, the others zeros.</summary>
    NDArray CollectivePermute(NDArray x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site);
    /// <summary>Sends to <paramref name="peer"/>; messages between two devices arrive in order.</summary>
    void Send(NDArray x, int peer, CollectiveSite site);
    /// <summary>Receives the next message from <paramref name="peer"/>, which must have this type and shape.</summary>
    NDArray Recv(int peer, DType dtype, long[] shape, CollectiveSite site);
}

/// <summary>A collective that cannot complete: members disagree, a transfer has the wrong shape, or a device waited too long.</summary>
public class CollectiveException(string message) : Exception(message);

/// <summary>A device waited longer than the timeout for the rest of its group (a mismatched program); names the device, op, step and who is missing.</summary>
public sealed class CollectiveTimeoutException(string message) : CollectiveException(message);
