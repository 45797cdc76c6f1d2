namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A device waited longer than the world's timeout in a collective or receive, usually because a peer skipped it
/// or is stuck in another one. The message names the waiting device with its mesh coordinates, the op and its
/// location, the step, the group, how long it waited, and the members that never arrived with what they were doing,
/// e.g. <c>device 3 (dp=1, tp=1) waited 5 s in dist.all_reduce over [tp] at step 12 (model.mpl:9:12); device 2 never
/// arrived</c>.
/// </summary>
public sealed class CollectiveTimeoutException : CollectiveException
{
    /// <summary>A timeout with a complete message.</summary>
    public CollectiveTimeoutException(string message)
        : base(message) { }
}
