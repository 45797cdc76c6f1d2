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
    private (int[] Members, string Key)? _everyone;

    private IArrayOps<T> Ops => world.Ops;

    /// <inheritdoc/>
    public int Rank => rank;

    /// <inheritdoc/>
    public DeviceMesh Mesh => world.Mesh;

    /// <inheritdoc/>
    public T AllReduce(T x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site)
    {
        var (group, key, span) = GroupOf(axes, site);
        CheckArray(x, site, span);
        Func<T[], T[]> compute = kind switch
        {
            ReduceKind.Sum => xs => Copies(Ops.Sum(xs), xs.Length),
            ReduceKind.Max => xs => Copies(Ops.Max(xs), xs.Length),
            _ => throw Bad(site, span, $"unknown reduction {kind}"),
        };
        return Issue(site, group, key, span, x, $"all_reduce({(kind == ReduceKind.Sum ? "sum" : "max")})", compute);
    }

    /// <inheritdoc/>
    public T AllGather(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (group, key, span) = GroupOf(axes, site);
        int d = Dim(x, dim, "dim", site, span);
        return Issue(site, group, key, span, x, $"all_gather(dim {d})", xs => Copies(Ops.Concat(xs, d), xs.Length));
    }

    /// <inheritdoc/>
    public T ReduceScatter(T x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (group, key, span) = GroupOf(axes, site);
        int d = Dim(x, dim, "dim", site, span);
        Divisible(x, d, group.Length, site, span);
        return Issue(
            site,
            group,
            key,
            span,
            x,
            $"reduce_scatter(dim {d})",
            xs =>
            {
                var sum = Ops.Sum(xs);
                var chunks = Ops.Split(sum, d, xs.Length);
                Ops.Release(sum);
                return chunks;
            }
        );
    }

    /// <inheritdoc/>
    public T AllToAll(T x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site)
    {
        var (group, key, span) = GroupOf(axes, site);
        int s = Dim(x, splitDim, "split dim", site, span),
            c = Dim(x, concatDim, "concat dim", site, span);
        Divisible(x, s, group.Length, site, span);
        return Issue(
            site,
            group,
            key,
            span,
            x,
            $"all_to_all(split {s}, concat {c})",
            xs =>
            {
                int n = xs.Length;
                var chunks = Array.ConvertAll(xs, a => Ops.Split(a, s, n));
                var results = new T[n];
                var column = new T[n];
                for (int j = 0; j < n; j++)
                {
                    for (int i = 0; i < n; i++)
                        column[i] = chunks[i][j];
                    results[j] = Ops.Concat(column, c);
                }
                foreach (var chunk in chunks.SelectMany(x => x))
                    Ops.Release(chunk);
                return results;
            }
        );
    }

    /// <inheritdoc/>
    public T CollectivePermute(T x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site)
    {
        const string span = "over all devices";
        ArgumentNullException.ThrowIfNull(pairs);
        CheckArray(x, site, span);
        int n = Mesh.DeviceCount;
        var isSource = new bool[n];
        var isTarget = new bool[n];
        foreach (var (source, target) in pairs)
        {
            if (source < 0 || source >= n || target < 0 || target >= n)
                throw Bad(site, span, $"pair {source}->{target} names a device outside mesh {Mesh} of {n} devices");
            if (isSource[source])
                throw Bad(site, span, $"device {source} is the source of two pairs");
            if (isTarget[target])
                throw Bad(site, span, $"device {target} is the target of two pairs");
            isSource[source] = isTarget[target] = true;
        }
        var fixedPairs = pairs.ToArray(); // the caller's list may change after the call; the compute runs later
        T[] Compute(T[] xs)
        {
            var results = new T[xs.Length];
            foreach (var (source, target) in fixedPairs)
                results[target] = Ops.Copy(xs[source]);
            for (int i = 0; i < results.Length; i++)
                results[i] ??= Ops.Zeros(xs[i].DType, xs[i].Shape);
            return results;
        }
        if (n == 1)
            return Compute([x])[0];
        // Keyed like any other group of every device, so a permute that meets a collective over all axes is a mismatch.
        var (everyone, key) = _everyone ??= (
            Enumerable.Range(0, n).ToArray(),
            string.Join(",", Enumerable.Range(0, n))
        );
        string what = $"collective_permute({string.Join(", ", fixedPairs.Select(p => $"{p.Source}->{p.Target}"))})";
        return Issue(site, everyone, key, span, x, what, Compute);
    }

    /// <inheritdoc/>
    public void Send(T x, int peer, CollectiveSite site, int tag = 0)
    {
        string span = $"to device {peer}";
        CheckArray(x, site, span);
        CheckPeer(peer, site, span);
        // A copy, so that the receiver never aliases an array the sender may reuse.
        world.MailboxOf(rank, peer, tag).Post(Ops.Copy(x), site);
    }

    /// <inheritdoc/>
    public T Recv(int peer, DType dtype, long[] shape, CollectiveSite site, int tag = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        CheckPeer(peer, site, $"from device {peer}");
        string what = $"recv from {world.Who(peer)}, {site}";
        if (!world.TakeOrCancel(world.MailboxOf(peer, rank, tag), rank, what, out var message))
        {
            throw new CollectiveTimeoutException(
                $"{world.Who(rank)} waited {InProcessWorld<T>.Duration(world.Timeout)} in {what}; "
                    + $"{world.Missing([peer], null, "sent anything")}"
            );
        }
        T x = message.Value;
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

    private T Issue(CollectiveSite site, int[] group, string key, string span, T x, string what, Func<T[], T[]> compute)
    {
        // With one member every collective is the identity; a copy keeps results from aliasing inputs.
        if (group.Length == 1)
            return Ops.Copy(x);
        string signature = $"{what} on [{string.Join(", ", group)}] of {x.TypeString}";
        var call = new CollectiveCall<T>(
            rank,
            site,
            group,
            signature,
            $"{what} {span} of {x.TypeString}",
            span,
            compute
        );
        long sequence = _sequence.GetValueOrDefault(key);
        _sequence[key] = sequence + 1;
        return world.Collective(call, key, sequence, x);
    }

    private (int[] Members, string Key, string Span) GroupOf(IReadOnlyList<string> axes, CollectiveSite site)
    {
        ArgumentNullException.ThrowIfNull(axes);
        string span = $"over [{string.Join(", ", axes)}]";
        string axesKey = string.Join('\u001f', axes);
        if (!_groups.TryGetValue(axesKey, out var g))
        {
            int[] members;
            try
            {
                members = Mesh.Group(rank, axes);
            }
            catch (ArgumentException e)
            {
                throw Bad(site, span, e.Message, e);
            }
            g = (members, string.Join(",", members.Order()));
            _groups[axesKey] = g;
        }
        return (g.Members, g.Key, span);
    }

    private void CheckArray(T x, CollectiveSite site, string span)
    {
        if (x is null)
            throw new ArgumentNullException(
                nameof(x),
                $"{world.Who(rank)} passed no array to {InProcessWorld<T>.Describe(site, span)}"
            );
    }

    private int Dim(T x, int dim, string what, CollectiveSite site, string span)
    {
        CheckArray(x, site, span);
        int rank = x.Shape.Length;
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank)
            throw Bad(site, span, $"{what} {dim} is out of range for {x.TypeString}");
        return d;
    }

    private void Divisible(T x, int dim, int n, CollectiveSite site, string span)
    {
        if (x.Shape[dim] % n != 0)
            throw Bad(
                site,
                span,
                $"dim {dim} of {x.TypeString} does not split into {n} equal chunks for a group of {n}"
            );
    }

    private void CheckPeer(int peer, CollectiveSite site, string span)
    {
        if (peer < 0 || peer >= Mesh.DeviceCount)
            throw Bad(site, span, $"device {peer} is outside mesh {Mesh} of {Mesh.DeviceCount} devices");
    }

    private CollectiveException Bad(CollectiveSite site, string span, string message, Exception? inner = null)
    {
        string text = $"{world.Who(rank)} in {InProcessWorld<T>.Describe(site, span)}: {message}";
        return inner == null ? new CollectiveException(text) : new CollectiveException(text, inner);
    }

    // The first member keeps the computed array; every other one gets its own copy, so no two devices alias.
    private T[] Copies(T r, int n)
    {
        var results = new T[n];
        results[0] = r;
        for (int i = 1; i < n; i++)
            results[i] = Ops.Copy(r);
        return results;
    }
}
