using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// One collective of one group in an <see cref="InProcessWorld{T}"/>: each member's call and array by group position,
/// then every member's result. All fields are guarded by locking the instance; <see cref="Done"/> is set once the
/// results or <see cref="Failure"/> can be read.
/// </summary>
internal sealed class Rendezvous<T>(int size)
    where T : class, IArray
{
    /// <summary>Each member's call, by group position; null until it arrives.</summary>
    public readonly CollectiveCall<T>?[] Calls = new CollectiveCall<T>?[size];

    /// <summary>Each member's array, by group position.</summary>
    public readonly T?[] Inputs = new T?[size];

    /// <summary>Set when <see cref="Results"/> or <see cref="Failure"/> is ready.</summary>
    public readonly ManualResetEventSlim Done = new(false);

    /// <summary>How many members have arrived.</summary>
    public int Arrived;

    /// <summary>How many members have taken their result; the last one retires the rendezvous.</summary>
    public int Collected;

    /// <summary>When the results were computed (a <see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public long CompletedAt;

    /// <summary>Each member's result, by group position, once all arrived.</summary>
    public T[]? Results;

    /// <summary>Why the collective cannot complete (members disagree), for every member.</summary>
    public string? Failure;

    /// <summary>Set when a member gave up waiting, so that late arrivals fail instead of completing without
    /// it.</summary>
    public string? Abandoned;
}
