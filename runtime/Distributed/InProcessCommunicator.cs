using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// One device's view of an <see cref="InProcessWorld{T}"/>. It checks its own arguments before it meets its peers, so a
/// bad call fails on the device that made it, and numbers its collectives per group, so that the nth collective of
/// a group on one device meets the nth on every other member.
/// </summary>
internal sealed class InProcessCommunicator<T>(InProcessWorld<T> world, int rank) : ICommunicator<T>
    where T : class, IArray
{
    private readonly Dictionary<string, long> _sequence = [];
    private readonly Dictionary<string, (int[] Members, string Key)> _groups = [];
    private readonly CollectiveChecks _check = new(world.Mesh, rank);
    private (int[] Members, string Key)? _everyone;

    private IArrayOps<T> Ops => world.Ops;

    /// <inheritdoc/>
    public int Rank => rank;

    /// <inheritdoc/>
    public DeviceMesh Mesh => world.Mesh;

    /// <inheritdoc/>
    public T AllReduce(T x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site) =>
        IssueOne(x, axes, site, (span, _) => AllReduceCall(x, kind, site, span));

    /// <inheritdoc/>
    public PendingCollective<T> StartAllReduce(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        ReduceKind kind,
        CollectiveSite site
    ) => StartEach(xs, axes, site, (x, span, _) => AllReduceCall(x, kind, site, span));

    /// <inheritdoc/>
    public PendingCollective<T> StartReduceScatter(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => StartEach(xs, axes, site, (x, span, members) => ReduceScatterCall(x, dim, site, span, members));

    /// <inheritdoc/>
    public PendingCollective<T> StartAllGather(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        int dim,
        CollectiveSite site
    ) => StartEach(xs, axes, site, (x, span, _) => AllGatherCall(x, dim, site, span));

    // What one array's collective is, computes and moves, after its checks (given the group's span and size); the
    // blocking and the started op of a kind share it.
    private sealed record Call(
        string What,
        Func<T[], T[]> Compute,
        Reduction? Reduction = null,
        Movement? Moves = null
    );

    private Call AllReduceCall(T x, ReduceKind kind, CollectiveSite site, string span)
    {
        _check.Array(x, site, span);
        if (kind is not (ReduceKind.Sum or ReduceKind.Max))
            throw _check.Bad(site, span, $"unknown reduction {kind}");
        return new Call(
            $"all_reduce({(kind == ReduceKind.Sum ? "sum" : "max")})",
            ys => CollectiveMath.AllReduce(Ops, ys, kind),
            new Reduction(kind, -1)
        );
    }

    private Call ReduceScatterCall(T x, int dim, CollectiveSite site, string span, int members)
    {
        int d = _check.Dim(x, dim, "dim", site, span);
        _check.Divisible(x, d, members, site, span);
        return new Call(
            $"reduce_scatter(dim {d})",
            ys => CollectiveMath.ReduceScatter(Ops, ys, d),
            new Reduction(ReduceKind.Sum, d)
        );
    }

    private Call AllGatherCall(T x, int dim, CollectiveSite site, string span)
    {
        int d = _check.Dim(x, dim, "dim", site, span);
        return new Call(
            $"all_gather(dim {d})",
            ys => CollectiveMath.AllGather(Ops, ys, d),
            Moves: new Movement(Movement.AllGather, -1, d)
        );
    }

    // One blocking collective of the group.
    private T IssueOne(T x, IReadOnlyList<string> axes, CollectiveSite site, Func<string, int, Call> call)
    {
        var (group, key, span) = GroupOf(axes, site);
        var c = call(span, group.Length);
        return Issue(site, group, key, span, x, c.What, c.Compute, c.Reduction, c.Moves);
    }

    // Starts one collective of the group per array of a bucket.
    private PendingCollective<T> StartEach(
        IReadOnlyList<T> xs,
        IReadOnlyList<string> axes,
        CollectiveSite site,
        Func<T, string, int, Call> each
    )
    {
        ArgumentNullException.ThrowIfNull(xs);
        var (group, key, span) = GroupOf(axes, site);
        var parts = new List<Func<(T, long)>>();
        foreach (var x in xs)
        {
            var c = each(x, span, group.Length);
            parts.Add(Begin(site, group, key, span, x, c.What, c.Compute, c.Reduction, c.Moves));
        }
        return new PendingCollective<T>(parts);
    }

    /// <inheritdoc/>
    public T AllGather(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
        IssueOne(x, axes, site, (span, _) => AllGatherCall(x, dim, site, span));

    /// <inheritdoc/>
    public T ReduceScatter(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
        IssueOne(x, axes, site, (span, members) => ReduceScatterCall(x, dim, site, span, members));

    /// <inheritdoc/>
    public T AllToAll(T x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site)
    {
        var (group, key, span) = GroupOf(axes, site);
        int s = _check.Dim(x, splitDim, "split dim", site, span),
            c = _check.Dim(x, concatDim, "concat dim", site, span);
        _check.Divisible(x, s, group.Length, site, span);
        string what = $"all_to_all(split {s}, concat {c})";
        return Issue(
            site,
            group,
            key,
            span,
            x,
            what,
            xs => CollectiveMath.AllToAll(Ops, xs, s, c),
            moves: new Movement(Movement.AllToAll, s, c)
        );
    }

    /// <inheritdoc/>
    public T CollectivePermute(T x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site)
    {
        const string span = "over all devices";
        _check.Array(x, site, span);
        _check.Pairs(pairs, site, span);
        int n = Mesh.DeviceCount;
        var fixedPairs = pairs.ToArray(); // the caller's list may change after the call; the compute runs later
        if (n == 1)
            return CollectiveMath.Permute(Ops, [x], fixedPairs)[0];
        // Keyed like any other group of every device, so a permute that meets a collective over all axes is a mismatch.
        var (everyone, key) = _everyone ??= (
            Enumerable.Range(0, n).ToArray(),
            string.Join(",", Enumerable.Range(0, n))
        );
        string what = $"collective_permute({string.Join(", ", fixedPairs.Select(p => $"{p.Source}->{p.Target}"))})";
        return Issue(
            site,
            everyone,
            key,
            span,
            x,
            what,
            xs => CollectiveMath.Permute(Ops, xs, fixedPairs),
            moves: new Movement(Movement.Permute, -1, -1, fixedPairs)
        );
    }

    /// <inheritdoc/>
    public void Send(T x, int peer, CollectiveSite site, int tag = 0)
    {
        string span = $"to device {peer}";
        _check.Array(x, site, span);
        _check.Peer(peer, site, span);
        if (IsRemote(peer))
        {
            world.Link!.Send(x, rank, peer, tag, site);
            return;
        }
        // A copy, so that the receiver never aliases an array the sender may reuse.
        world.MailboxOf(rank, peer, tag).Post(Ops.Copy(x), site);
    }

    /// <inheritdoc/>
    public T Recv(int peer, DType dtype, long[] shape, CollectiveSite site, int tag = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        _check.Peer(peer, site, $"from device {peer}");
        string what = $"recv from {world.Who(peer)}, {site}";
        (T Value, CollectiveSite Site) message = default;
        bool arrived = IsRemote(peer)
            ? world.Waiting(
                rank,
                what,
                () => world.Link!.TryRecv(peer, rank, tag, world.Timeout, world.Cancellation, out message)
            )
            : world.TakeOrCancel(world.MailboxOf(peer, rank, tag), rank, what, out message);
        if (!arrived)
        {
            throw new CollectiveTimeoutException(
                $"{world.Who(rank)} waited {InProcessWorld<T>.Duration(world.Timeout)} in {what}; "
                    + $"{world.Missing([peer], null, "sent anything")}"
            );
        }
        T x = message.Value!;
        if (x.DType != dtype || !x.Shape.AsSpan().SequenceEqual(shape))
        {
            throw new CollectiveException(
                $"{world.Who(rank)} expected {dtype.Name()}[{string.Join(", ", shape)}] in "
                    + $"{what}, but "
                    + $"{world.Who(peer)} sent {x.TypeString} in send to {world.Who(rank)}, {message.Site}"
            );
        }
        return x;
    }

    private T Issue(
        CollectiveSite site,
        int[] group,
        string key,
        string span,
        T x,
        string what,
        Func<T[], T[]> compute,
        Reduction? reduction = null,
        Movement? moves = null
    ) => Begin(site, group, key, span, x, what, compute, reduction, moves)().Value;

    /// <summary>Arrives at the collective and returns what waits for this member's result (and when the collective
    /// completed); across processes it completes here.</summary>
    private Func<(T Value, long Completed)> Begin(
        CollectiveSite site,
        int[] group,
        string key,
        string span,
        T x,
        string what,
        Func<T[], T[]> compute,
        Reduction? reduction = null,
        Movement? moves = null
    )
    {
        // With one member every collective is the identity; a copy keeps results from aliasing inputs.
        if (group.Length == 1)
        {
            var copy = Ops.Copy(x);
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            return () => (copy, now);
        }
        string signature = $"{what} on [{string.Join(", ", group)}] of {x.TypeString}";
        string display = $"{what} {span} of {x.TypeString}";
        var call = new CollectiveCall<T>(rank, site, group, signature, display, span, compute) { Moves = moves };
        long sequence = _sequence.GetValueOrDefault(key);
        _sequence[key] = sequence + 1;
        if (world.Link is { } link && !group.All(m => m >= link.First && m < link.First + link.Count))
        {
            var local = group.Where(m => m >= link.First && m < link.First + link.Count).ToArray();
            if (local.Length == 1)
            {
                // The only member in this process (one device a process) has no one to meet here: straight across.
                T result;
                try
                {
                    result = world.AcrossProcesses(call, group, local, [x], reduction)[0];
                }
                catch (Exception e) when (e is ArgumentException or InsufficientMemoryException or OutOfMemoryException)
                {
                    throw new CollectiveException(world.CouldNotCompute(call, e), e);
                }
                long done = System.Diagnostics.Stopwatch.GetTimestamp();
                return () => (result, done);
            }
            // The members in this process meet here; the last to arrive takes the call to the other processes.
            var whole = call;
            call = call with
            {
                Group = local,
                Compute = xs => world.AcrossProcesses(whole, group, local, xs, reduction),
            };
        }
        if (world.Link != null)
        {
            // A collective through the link completes in the call: the link serves one collective at a time.
            var result = world.Collective(call, key, sequence, x);
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            return () => (result, now);
        }
        return world.Arrive(call, key, sequence, x);
    }

    private bool IsRemote(int peer) => world.Link is { } l && (peer < l.First || peer >= l.First + l.Count);

    private (int[] Members, string Key, string Span) GroupOf(IReadOnlyList<string> axes, CollectiveSite site)
    {
        ArgumentNullException.ThrowIfNull(axes);
        string axesKey = string.Join('\u001f', axes);
        if (!_groups.TryGetValue(axesKey, out var g))
        {
            var (members, _) = _check.Group(axes, site);
            g = (members, string.Join(",", members.Order()));
            _groups[axesKey] = g;
        }
        return (g.Members, g.Key, $"over [{string.Join(", ", axes)}]");
    }
}
