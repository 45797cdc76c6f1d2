namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A collective or transfer that cannot complete because the program is wrong: group members issued different
/// collectives at the same point, a received array has the wrong type, or the arguments are invalid. The message
/// names the devices and the calls involved. Not sealed: <see cref="CollectiveTimeoutException"/> derives from it,
/// so an executor can treat every communication failure with one catch.
/// </summary>
public class CollectiveException : Exception
{
    /// <summary>An error with a complete message naming the devices and calls.</summary>
    public CollectiveException(string message)
        : base(message) { }

    /// <summary>An error caused by a lower-level exception, kept as the inner exception.</summary>
    public CollectiveException(string message, Exception inner)
        : base(message, inner) { }

    /// <summary>
    /// True when this device failed only because another one did (it gave up on a collective a peer had already
    /// abandoned); <see cref="InProcessWorld{T}.Run{TResult}"/> then reports the peer's failure instead.
    /// </summary>
    internal bool Consequential { get; init; }
}
