using System.Diagnostics;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// Collectives a device has started and not yet waited for (<see cref="ICommunicator{T}.StartAllReduce"/>): one
/// part per array of a bucket. <see cref="Wait"/> blocks until every part has finished and gives the results in
/// order; it is called once.
/// </summary>
public sealed class PendingCollective<T>
    where T : class, IArray
{
    private readonly Func<(T Value, long Completed)>[] _parts;
    private T[]? _results;

    /// <summary>Parts that each wait for their result and say when (a <see cref="Stopwatch"/> timestamp) the
    /// collective completed.</summary>
    public PendingCollective(IReadOnlyList<Func<(T Value, long Completed)>> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        _parts = parts.ToArray();
    }

    /// <summary>Collectives that already finished: results computed at the start (a back end without
    /// asynchronous collectives runs them there).</summary>
    public static PendingCollective<T> Done(IEnumerable<T> results)
    {
        long now = Stopwatch.GetTimestamp();
        return new PendingCollective<T>(results.Select(r => (Func<(T, long)>)(() => (r, now))).ToArray());
    }

    /// <summary>When the last part completed (a <see cref="Stopwatch"/> timestamp), once <see cref="Wait"/> has
    /// returned.</summary>
    public long CompletedAt { get; private set; }

    /// <summary>Blocks until every part has finished; the results, in the order of the started arrays.</summary>
    public T[] Wait()
    {
        if (_results != null)
            throw new InvalidOperationException("a started collective is waited for once");
        var results = new T[_parts.Length];
        long last = 0;
        for (int i = 0; i < _parts.Length; i++)
        {
            var (value, completed) = _parts[i]();
            results[i] = value;
            last = Math.Max(last, completed);
        }
        CompletedAt = last;
        return _results = results;
    }
}
