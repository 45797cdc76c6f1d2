using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>The messages in flight from one device to another in an <see cref="InProcessWorld{T}"/>, first in first
/// out.</summary>
internal sealed class Mailbox<T>
    where T : class
{
    private readonly Queue<(T Value, CollectiveSite Site)> _queue = new();
    private readonly SemaphoreSlim _count = new(0);

    /// <summary>Queues a message; never blocks, as a send with an unbounded buffer.</summary>
    public void Post(T value, CollectiveSite site)
    {
        lock (_queue)
            _queue.Enqueue((value, site));
        _count.Release();
    }

    /// <summary>The oldest message, waiting up to <paramref name="timeout"/>; false if none came in time.</summary>
    public bool TryTake(TimeSpan timeout, CancellationToken cancel, out (T Value, CollectiveSite Site) message)
    {
        if (!_count.Wait(timeout, cancel))
        {
            message = default;
            return false;
        }
        lock (_queue)
            message = _queue.Dequeue();
        return true;
    }
}
