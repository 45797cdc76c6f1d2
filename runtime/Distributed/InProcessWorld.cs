using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// The devices of a mesh run in one process, one thread each, exchanging arrays of kind <typeparamref name="T"/>
/// through memory they share (host memory, or the memory of the one GPU they share); <see cref="Ops"/> computes
/// the results. A
/// collective is a rendezvous of its group: the last member to arrive computes every member's result. Members that
/// disagree on what they call fail at once; a member that waits past the timeout fails naming who never came and
/// what they were doing; and in <see cref="Run{T}"/> one failing device cancels the rest, so a wrong program never
/// hangs. After a failure the world is spent: create a new one.
/// </summary>
public class InProcessWorld<T> : IDisposable
    where T : class, IArray
{
    // deep interpreter recursion on big models; reserved, not committed
    private const int StackBytes = 64 * 1024 * 1024;

    private readonly CancellationTokenSource _cts = new();
    private readonly ConcurrentDictionary<(string Group, long Sequence), Rendezvous<T>> _rendezvous = new();
    private readonly ConcurrentDictionary<(int From, int To, int Tag), Mailbox<T>> _mail = new();
    private readonly InProcessCommunicator<T>[] _comms;
    private readonly string?[] _activity;
    private int _running;
    private bool _disposed;

    /// <summary>A world of <paramref name="mesh"/>'s devices whose collectives and receives give up after <paramref
    /// name="timeout"/>.</summary>
    public InProcessWorld(DeviceMesh mesh, TimeSpan timeout, IArrayOps<T> ops)
        : this(mesh, timeout, ops, null) { }

    /// <summary>A world that runs the devices <paramref name="link"/> names and reaches the rest of the mesh through
    /// it (every device when it is null).</summary>
    internal InProcessWorld(DeviceMesh mesh, TimeSpan timeout, IArrayOps<T> ops, IProcessLink<T>? link)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        ArgumentNullException.ThrowIfNull(ops);
        Ops = ops;
        if (timeout <= TimeSpan.Zero && timeout != System.Threading.Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), "the timeout must be positive or infinite");
        Mesh = mesh;
        Timeout = timeout;
        Link = link;
        _activity = new string?[mesh.DeviceCount];
        _comms = new InProcessCommunicator<T>[mesh.DeviceCount];
        for (int r = 0; r < _comms.Length; r++)
            _comms[r] = new InProcessCommunicator<T>(this, r);
    }

    /// <summary>How collectives compute their results from the members' arrays.</summary>
    public IArrayOps<T> Ops { get; }

    /// <summary>The mesh of the simulated devices.</summary>
    public DeviceMesh Mesh { get; }

    /// <summary>How long a device waits in one collective or receive before it fails.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The other processes of the job, or null when this process runs every device.</summary>
    internal IProcessLink<T>? Link { get; }

    /// <summary>Cancelled when a device fails in <see cref="Run{T}"/> or the world is disposed.</summary>
    internal CancellationToken Cancellation => _cts.Token;

    /// <summary>The communicator of device <paramref name="rank"/> (the same object on every call).</summary>
    public ICommunicator<T> Communicator(int rank)
    {
        if (rank < 0 || rank >= _comms.Length)
            throw new ArgumentOutOfRangeException(
                nameof(rank),
                $"rank {rank} is outside mesh {Mesh} of {_comms.Length} devices"
            );
        return _comms[rank];
    }

    /// <summary>
    /// Runs <paramref name="body"/>(rank, communicator) for every device this process runs, each on its own thread,
    /// and returns the results by rank (from the link's first device when the world spans processes). When a device
    /// throws, the world is cancelled so that every waiting device stops at once, and the first original exception is
    /// rethrown with its own type and stack trace.
    /// </summary>
    public TResult[] Run<TResult>(Func<int, ICommunicator<T>, TResult> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Cancellation.IsCancellationRequested)
            throw new InvalidOperationException("this world was cancelled by an earlier failure; create a new one");
        if (Interlocked.Exchange(ref _running, 1) != 0)
            throw new InvalidOperationException("the world is already running");
        try
        {
            int first = Link?.First ?? 0,
                n = Link?.Count ?? _comms.Length;
            var results = new TResult[n];
            var failures = new List<(Exception Error, bool Original)>();
            Array.Clear(_activity);
            // Dedicated threads, not the pool: every device blocks in collectives, and with dozens of devices the
            // pool would grow one thread at a time while the first arrivals wait for the rest.
            var threads = new Thread[n];
            for (int r = 0; r < n; r++)
            {
                int rank = first + r,
                    at = r;
                threads[r] = new Thread(
                    () =>
                    {
                        try
                        {
                            results[at] = body(rank, _comms[rank]);
                            SetActivity(rank, "finished its program");
                        }
                        catch (Exception e)
                        {
                            bool original = !IsConsequence(e);
                            // Recorded before the activity changes: a peer that reads "failed" then fails
                            // after this one.
                            lock (failures)
                                failures.Add((e, original));
                            if (original)
                                SetActivity(rank, $"failed with {e.GetType().Name}");
                            _cts.Cancel();
                        }
                    },
                    StackBytes
                )
                {
                    IsBackground = true,
                    Name = $"device {rank}",
                };
            }
            foreach (var t in threads)
                t.Start();
            foreach (var t in threads)
                t.Join();
            if (failures.Count > 0)
            {
                int original = failures.FindIndex(f => f.Original);
                ExceptionDispatchInfo.Throw(failures[Math.Max(original, 0)].Error);
            }
            return results;
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    /// <summary>Cancels anything still waiting; the world cannot run again.</summary>
    public void Dispose()
    {
        // The source is cancelled, never disposed: device threads may still be cancelling it, and a source without
        // timers or links holds nothing to release.
        _disposed = true;
        _cts.Cancel();
    }

    /// <summary>A device as messages name it: <c>device 3 (dp=1, tp=1)</c>, or <c>device 0</c> on a mesh without
    /// axes.</summary>
    internal string Who(int rank) => CollectiveChecks.Who(Mesh, rank);

    /// <summary>What <paramref name="rank"/> is doing (<c>is waiting in ...</c>), or null while it computes.</summary>
    internal string? ActivityOf(int rank) => Volatile.Read(ref _activity[rank]);

    /// <summary>
    /// The results of <paramref name="local"/> (the members of <paramref name="group"/> this process runs) of
    /// <paramref name="call"/> from their inputs, through the link to the other processes; what this device waits
    /// in meanwhile is recorded for its peers' messages.
    /// </summary>
    internal T[] AcrossProcesses(CollectiveCall<T> call, int[] group, int[] local, T[] inputs, Reduction? reduction)
    {
        SetActivity(call.Rank, $"is waiting in {Describe(call)}");
        var results = Link!.Collective(call, group, local, inputs, reduction, Cancellation);
        SetActivity(call.Rank, null);
        return results;
    }

    /// <summary>Why <paramref name="call"/> failed to compute its results (bad arguments, or no memory for
    /// them).</summary>
    internal string CouldNotCompute(CollectiveCall<T> call, Exception e) =>
        $"{Who(call.Rank)} could not compute {call.Display} in {Describe(call)}: {e.Message}";

    /// <summary>Records what <paramref name="rank"/> is doing, for the timeout messages of its peers; null while it
    /// computes.</summary>
    internal void SetActivity(int rank, string? what) => Volatile.Write(ref _activity[rank], what);

    /// <summary>The mailbox of messages from <paramref name="from"/> to <paramref name="to"/>.</summary>
    internal Mailbox<T> MailboxOf(int from, int to, int tag) =>
        _mail.GetOrAdd((from, to, tag), static _ => new Mailbox<T>());

    /// <summary>
    /// Takes part in collective <paramref name="call"/> with <paramref name="x"/>: the <paramref name="sequence"/>th
    /// collective of the group whose sorted ranks are <paramref name="groupKey"/>. Blocks until every member has
    /// arrived, then returns this member's result.
    /// </summary>
    internal T Collective(CollectiveCall<T> call, string groupKey, long sequence, T x) =>
        Arrive(call, groupKey, sequence, x)().Value;

    /// <summary>
    /// Arrives at collective <paramref name="call"/> like <see cref="Collective"/> without waiting for the other
    /// members: the returned function waits, then gives this member's result and when the collective completed
    /// (a <see cref="System.Diagnostics.Stopwatch"/> timestamp). A disagreement with a member already there fails
    /// here.
    /// </summary>
    internal Func<(T Value, long Completed)> Arrive(CollectiveCall<T> call, string groupKey, long sequence, T x)
    {
        int[] group = call.Group;
        int me = Array.IndexOf(group, call.Rank);
        var key = (groupKey, sequence);
        var rv = _rendezvous.GetOrAdd(key, static (_, n) => new Rendezvous<T>(n), group.Length);
        lock (rv)
        {
            if (rv.Failure != null)
                throw new CollectiveException(rv.Failure);
            if (rv.Abandoned != null)
                throw new CollectiveException($"{Who(call.Rank)} reached {Describe(call)}, but {rv.Abandoned}")
                {
                    Consequential = true,
                };
            if (Array.Find(rv.Calls, c => c != null) is { } other && other.Signature != call.Signature)
            {
                rv.Failure =
                    $"collective mismatch: {Who(other.Rank)} called {Describe(other)} as {other.Display}, "
                    + $"but {Who(call.Rank)} called {Describe(call)} as {call.Display}";
                rv.Done.Set();
                throw new CollectiveException(rv.Failure);
            }
            rv.Calls[me] = call;
            rv.Inputs[me] = x;
            if (++rv.Arrived == group.Length)
            {
                // Computed once, under the lock, by the last arrival: the others are all waiting for it anyway.
                try
                {
                    rv.Results = call.Compute(rv.Inputs!);
                }
                catch (Exception e) when (e is ArgumentException or InsufficientMemoryException or OutOfMemoryException)
                {
                    rv.Failure = CouldNotCompute(call, e);
                    rv.Done.Set();
                    throw new CollectiveException(rv.Failure, e);
                }
                catch (Exception e) when (e is CollectiveException or DeviceException)
                {
                    // Across processes: the local members waiting for this one fail with the same message.
                    rv.Failure = e.Message;
                    rv.Done.Set();
                    throw;
                }
                rv.CompletedAt = System.Diagnostics.Stopwatch.GetTimestamp();
                rv.Done.Set();
            }
        }
        return () =>
        {
            Wait(rv, call);
            T result = rv.Results![me];
            long completed = rv.CompletedAt;
            if (Interlocked.Increment(ref rv.Collected) == group.Length)
            {
                _rendezvous.TryRemove(key, out _);
                rv.Done.Dispose();
            }
            return (result, completed);
        };
    }

    private void Wait(Rendezvous<T> rv, CollectiveCall<T> call)
    {
        if (!WaitOrCancel(rv.Done, call.Rank, Describe(call)))
        {
            lock (rv)
            {
                if (!rv.Done.IsSet)
                {
                    var missing = call.Group.Where((_, i) => rv.Calls[i] == null).ToArray();
                    string waited = $"{Who(call.Rank)} waited {Duration(Timeout)} in {Describe(call)}";
                    rv.Abandoned = $"{Who(call.Rank)} had already given up waiting for it after {Duration(Timeout)}";
                    throw new CollectiveTimeoutException($"{waited}; {Missing(missing, call.Group)}");
                }
            }
        }
        if (rv.Failure != null)
            throw new CollectiveException(rv.Failure);
    }

    /// <summary>
    /// Waits for <paramref name="done"/> up to the timeout, telling peers meanwhile what this device waits in; false
    /// on timeout. Cancellation of the world surfaces as an <see cref="OperationCanceledException"/> on its token.
    /// </summary>
    internal bool WaitOrCancel(ManualResetEventSlim done, int rank, string what) =>
        Waiting(rank, what, () => done.Wait(Timeout, Cancellation));

    /// <summary>Like <see cref="WaitOrCancel(ManualResetEventSlim, int, string)"/>, for the next message of a
    /// mailbox.</summary>
    internal bool TakeOrCancel(Mailbox<T> box, int rank, string what, out (T Value, CollectiveSite Site) message)
    {
        (T Value, CollectiveSite Site) taken = default;
        bool ok = Waiting(rank, what, () => box.TryTake(Timeout, Cancellation, out taken));
        message = taken;
        return ok;
    }

    /// <summary>Runs <paramref name="wait"/> (false on timeout) as a wait of <paramref name="rank"/> in <paramref
    /// name="what"/>, for its peers' messages.</summary>
    internal bool Waiting(int rank, string what, Func<bool> wait)
    {
        SetActivity(rank, $"is waiting in {what}");
        bool done;
        try
        {
            done = wait();
        }
        catch (OperationCanceledException)
        {
            SetActivity(rank, $"was cancelled in {what}");
            throw new OperationCanceledException(
                $"{Who(rank)} stopped waiting in {what}: another device failed",
                Cancellation
            );
        }
        // After a timeout the activity still says where this device waited, so that a peer giving up at the same
        // moment can name it in its own message.
        SetActivity(rank, done ? null : $"gave up waiting in {what}");
        return done;
    }

    /// <summary>The devices that never came, with what each was doing instead: <c>device 2 of group [2, 3] never
    /// arrived (it finished its program)</c>.</summary>
    internal string Missing(IReadOnlyList<int> missing, IReadOnlyList<int>? group, string verb = "arrived")
    {
        string of = group == null ? "" : $" of group [{string.Join(", ", group)}]";
        string head =
            missing.Count == 1
                ? $"device {missing[0]}{of} never {verb}"
                : $"devices {string.Join(", ", missing)}{of} never {verb}";
        var doing = missing
            .Select(m => (m, what: Volatile.Read(ref _activity[m])))
            .Where(p => p.what != null)
            .ToArray();
        if (doing.Length == 0)
            return head;
        return missing.Count == 1
            ? $"{head} (it {doing[0].what})"
            : $"{head} ({string.Join("; ", doing.Select(p => $"device {p.m} {p.what}"))})";
    }

    /// <summary>A wait as messages print it, in the seconds that <c>--collective-timeout</c> takes: <c>0.3 s</c>, <c>5
    /// s</c>.</summary>
    internal static string Duration(TimeSpan t) =>
        t == System.Threading.Timeout.InfiniteTimeSpan ? "forever" : $"{t.TotalSeconds:0.###} s";

    private static string Describe(CollectiveCall<T> call) => Describe(call.Site, call.Span);

    /// <summary>A call as messages print it: <c>dist.all_reduce over [tp] at step 12 (model.mpl:9:12)</c>.</summary>
    internal static string Describe(CollectiveSite site, string span) =>
        $"{site.Op}{(span.Length > 0 ? " " + span : "")} at step "
        + $"{site.Step}{(string.IsNullOrEmpty(site.Where) ? "" : $" ({site.Where})")}";

    // A failure that only follows from another device's: a wait the world cancelled, or a late arrival at a
    // collective that a peer had already abandoned.
    private bool IsConsequence(Exception e) =>
        e is OperationCanceledException oce && oce.CancellationToken == Cancellation
        || e is CollectiveException { Consequential: true };
}

/// <summary>The devices of a mesh simulated in one process over host arrays.</summary>
public sealed class InProcessWorld(DeviceMesh mesh, TimeSpan timeout)
    : InProcessWorld<NDArray>(mesh, timeout, HostArrayOps.Instance);
