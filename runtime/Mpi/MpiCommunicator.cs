using System.Diagnostics;
using System.Text;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// The communicator of the one device this MPI process runs (global rank = MPI rank in <c>MPI_COMM_WORLD</c>,
/// whose size is the mesh's device count). A collective gathers every member's array over the group's
/// communicator (split from the world once per set of axes, at construction, where every process takes part) and
/// computes the result as the in-process communicator does, with the same operations in the same group order, so
/// the results are bit for bit those of an in-process run. Members exchange what they call with the arrays, so a
/// mismatch is a <see cref="CollectiveException"/> naming both calls; every wait polls against the timeout, so a
/// member that never comes (stuck, or its process gone) is a <see cref="CollectiveTimeoutException"/>. Sends are
/// nonblocking and receives check the type, as in process. Every MPI call comes from one thread at a time.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator<NDArray>, IDisposable
{
    private readonly Dictionary<int, nint> _comms = [];
    private readonly Dictionary<string, (int[] Members, int Mask)> _groups = [];
    private readonly List<(nint Request, byte[] Buffer)> _sends = [];
    private readonly TimeSpan _timeout;
    private readonly IArrayOps<NDArray> _ops = HostArrayOps.Instance;
    private string? _activity;

    /// <summary>Splits the world's communicator into one per set of <paramref name="mesh"/>'s axes; every process
    /// of the world must construct it at the same point.</summary>
    public MpiCommunicator(DeviceMesh mesh, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        Mesh = mesh;
        _timeout = timeout;
        nint world = MpiNative.CommWorld;
        Rank = MpiNative.CommRank(world);
        int size = MpiNative.CommSize(world);
        if (size != mesh.DeviceCount)
            throw new ArgumentException(
                $"the MPI world has {size} processes, the mesh {mesh} {mesh.DeviceCount} devices"
            );
        int axes = mesh.AxisNames.Count;
        for (int mask = 1; mask < 1 << axes; mask++)
        {
            var members = mesh.Group(Rank, AxesOf(mask));
            nint comm = MpiNative.CommSplit(world, members.Min(), Rank);
            MpiNative.CommSetErrhandler(comm, MpiNative.ErrorsReturn);
            _comms[mask] = comm;
        }
    }

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public DeviceMesh Mesh { get; }

    /// <summary>The collective or receive this device waits in, e.g. <c>dist.all_reduce over [tp] at step 12</c>, or
    /// null while it computes (read from another thread, for the message when the job is stopped).</summary>
    public string? Activity => Volatile.Read(ref _activity);

    /// <inheritdoc/>
    public NDArray AllReduce(NDArray x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site)
    {
        var (group, mask, span) = GroupOf(axes, site);
        CheckArray(x, site, span);
        Func<NDArray[], NDArray> compute = kind switch
        {
            ReduceKind.Sum => xs => _ops.Sum(xs),
            ReduceKind.Max => xs => _ops.Max(xs),
            _ => throw Bad(site, span, $"unknown reduction {kind}"),
        };
        string what = $"all_reduce({(kind == ReduceKind.Sum ? "sum" : "max")})";
        return Issue(site, group, mask, span, x, what, (xs, _) => compute(xs));
    }

    /// <inheritdoc/>
    public NDArray AllGather(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (group, mask, span) = GroupOf(axes, site);
        int d = Dim(x, dim, "dim", site, span);
        return Issue(site, group, mask, span, x, $"all_gather(dim {d})", (xs, _) => _ops.Concat(xs, d));
    }

    /// <inheritdoc/>
    public NDArray ReduceScatter(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site)
    {
        var (group, mask, span) = GroupOf(axes, site);
        int d = Dim(x, dim, "dim", site, span);
        Divisible(x, d, group.Length, site, span);
        return Issue(
            site,
            group,
            mask,
            span,
            x,
            $"reduce_scatter(dim {d})",
            (xs, me) => _ops.Split(_ops.Sum(xs), d, xs.Length)[me]
        );
    }

    /// <inheritdoc/>
    public NDArray AllToAll(NDArray x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site)
    {
        var (group, mask, span) = GroupOf(axes, site);
        int s = Dim(x, splitDim, "split dim", site, span),
            c = Dim(x, concatDim, "concat dim", site, span);
        Divisible(x, s, group.Length, site, span);
        return Issue(
            site,
            group,
            mask,
            span,
            x,
            $"all_to_all(split {s}, concat {c})",
            (xs, me) => _ops.Concat(Array.ConvertAll(xs, a => _ops.Split(a, s, xs.Length)[me]), c)
        );
    }

    /// <inheritdoc/>
    public NDArray CollectivePermute(NDArray x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site)
    {
        const string span = "over all devices";
        ArgumentNullException.ThrowIfNull(pairs);
        CheckArray(x, site, span);
        int n = Mesh.DeviceCount;
        var isSource = new bool[n];
        var isTarget = new bool[n];
        int from = -1;
        foreach (var (source, target) in pairs)
        {
            if (source < 0 || source >= n || target < 0 || target >= n)
                throw Bad(site, span, $"pair {source}->{target} names a device outside mesh {Mesh} of {n} devices");
            if (isSource[source])
                throw Bad(site, span, $"device {source} is the source of two pairs");
            if (isTarget[target])
                throw Bad(site, span, $"device {target} is the target of two pairs");
            isSource[source] = isTarget[target] = true;
            if (target == Rank)
                from = source;
        }
        if (n == 1)
            return from < 0 ? _ops.Zeros(x.DType, x.Shape) : _ops.Copy(x);
        string what = $"collective_permute({string.Join(", ", pairs.Select(p => $"{p.Source}->{p.Target}"))})";
        int all = (1 << Mesh.AxisNames.Count) - 1;
        var everyone = Enumerable.Range(0, n).ToArray();
        return Issue(
            site,
            everyone,
            all,
            span,
            x,
            what,
            (xs, me) => from < 0 ? _ops.Zeros(xs[me].DType, xs[me].Shape) : _ops.Copy(xs[from])
        );
    }

    /// <inheritdoc/>
    public void Send(NDArray x, int peer, CollectiveSite site, int tag = 0)
    {
        string span = $"to device {peer}";
        CheckArray(x, site, span);
        CheckPeer(peer, site, span);
        PruneSends();
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(site.ToString());
            ArrayWire.Write(w, x);
        }
        var buffer = Pinned(m.ToArray());
        fixed (byte* p = buffer)
            _sends.Add((MpiNative.IsendBytes(p, buffer.Length, peer, tag, MpiNative.CommWorld), buffer));
    }

    /// <inheritdoc/>
    public NDArray Recv(int peer, DType dtype, long[] shape, CollectiveSite site, int tag = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        CheckPeer(peer, site, $"from device {peer}");
        string what = $"recv from {Who(peer)}, {site}";
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref _activity, what);
        int size;
        for (int spins = 0; (size = MpiNative.IprobeBytes(peer, tag, MpiNative.CommWorld)) < 0; spins++)
        {
            PruneSends();
            if (clock.Elapsed > _timeout)
                throw new CollectiveTimeoutException(
                    $"{Who(Rank)} waited {Duration(_timeout)} in {what}; {Who(peer)} never sent anything "
                        + "(its process is stuck or gone)"
                );
            Pause(spins);
        }
        Volatile.Write(ref _activity, null);
        var buffer = Pinned(new byte[size]);
        fixed (byte* p = buffer)
            MpiNative.RecvBytes(p, size, peer, tag, MpiNative.CommWorld);
        using var r = new BinaryReader(new MemoryStream(buffer));
        string sentAt = r.ReadString();
        var x = ArrayWire.Read(r)!;
        if (x.DType != dtype || !x.Shape.AsSpan().SequenceEqual(shape))
            throw new CollectiveException(
                $"{Who(Rank)} expected {dtype.Name()}[{string.Join(", ", shape)}] in {what}, but "
                    + $"{Who(peer)} sent {x.TypeString} in send to {Who(Rank)}, {sentAt}"
            );
        return x;
    }

    /// <summary>Every device's <paramref name="data"/> by rank (the results of a run, gathered on every process);
    /// <paramref name="site"/> names the exchange in a timeout.</summary>
    internal byte[][] AllGatherBytes(byte[] data, CollectiveSite site)
    {
        int n = Mesh.DeviceCount;
        if (n == 1)
            return [data];
        var parts = Exchange(_comms[(1 << Mesh.AxisNames.Count) - 1], [], data, n, site, "over all devices");
        return Array.ConvertAll(parts, p => p.Bytes.AsSpan(p.Offset, p.Count).ToArray());
    }

    /// <summary>Waits (within the timeout) for the sends still in flight; the split communicators stay until MPI is
    /// finalized.</summary>
    public void Dispose()
    {
        var clock = Stopwatch.StartNew();
        for (int spins = 0; _sends.Count > 0 && clock.Elapsed < _timeout; spins++)
        {
            PruneSends();
            Pause(spins);
        }
    }

    private NDArray Issue(
        CollectiveSite site,
        int[] group,
        int mask,
        string span,
        NDArray x,
        string what,
        Func<NDArray[], int, NDArray> compute
    )
    {
        if (group.Length == 1)
            return _ops.Copy(x);
        string signature = $"{what} on [{string.Join(", ", group)}] of {x.TypeString}";
        string display = $"{what} {span} of {x.TypeString}";
        string call = $"{signature}\u001f{Describe(site, span)}\u001f{display}";
        var sorted = group.Order().ToArray();
        Volatile.Write(ref _activity, Describe(site, span));
        var parts = Exchange(_comms[mask], Encoding.UTF8.GetBytes(call), ArrayWire.Bytes(x), group.Length, site, span);
        Volatile.Write(ref _activity, null);
        var xs = new NDArray[group.Length];
        for (int i = 0; i < sorted.Length; i++)
        {
            var (text, bytes, offset, count) = parts[i];
            var fields = text.Split('\u001f');
            if (fields[0] != signature)
                throw new CollectiveException(
                    $"collective mismatch: {Who(sorted[i])} called {fields[1]} as {fields[2]}, "
                        + $"but {Who(Rank)} called {Describe(site, span)} as {display}"
                );
            xs[Array.IndexOf(group, sorted[i])] = ArrayWire.FromBytes(bytes, offset, count);
        }
        return compute(xs, Array.IndexOf(group, Rank));
    }

    // Every member's call text and array bytes, in communicator (ascending global rank) order.
    private (string Call, byte[] Bytes, int Offset, int Count)[] Exchange(
        nint comm,
        byte[] call,
        byte[] data,
        int n,
        CollectiveSite site,
        string span
    )
    {
        var header = Pinned(new int[] { call.Length, data.Length });
        var headers = Pinned(new int[2 * n]);
        fixed (
            int* h = header,
                hs = headers
        )
        {
            nint req = MpiNative.Iallgather(h, 2, MpiNative.Int, hs, comm);
            Wait(ref req, site, span);
        }
        var counts = Pinned(new int[n]);
        var displs = Pinned(new int[n]);
        long total = 0;
        for (int i = 0; i < n; i++)
        {
            counts[i] = headers[2 * i] + headers[2 * i + 1];
            displs[i] = (int)total;
            total += counts[i];
        }
        if (total > int.MaxValue)
            throw Bad(site, span, $"the group's arrays come to {total} bytes, more than one MPI call moves");
        var mine = Pinned(new byte[call.Length + data.Length]);
        call.CopyTo(mine, 0);
        data.CopyTo(mine, call.Length);
        var all = Pinned(new byte[total]);
        fixed (
            byte* s = mine,
                a = all
        )
        fixed (
            int* c = counts,
                d = displs
        )
        {
            nint req = MpiNative.IallgathervBytes(s, mine.Length, a, c, d, comm);
            Wait(ref req, site, span);
        }
        var result = new (string, byte[], int, int)[n];
        for (int i = 0; i < n; i++)
        {
            int callLength = headers[2 * i];
            string text = Encoding.UTF8.GetString(all, displs[i], callLength);
            result[i] = (text, all, displs[i] + callLength, headers[2 * i + 1]);
        }
        return result;
    }

    private void Wait(ref nint request, CollectiveSite site, string span)
    {
        var clock = Stopwatch.StartNew();
        for (int spins = 0; !MpiNative.Test(ref request); spins++)
        {
            if (clock.Elapsed > _timeout)
                // The buffers are pinned and never freed while the request is pending: the process ends after this.
                throw new CollectiveTimeoutException(
                    $"{Who(Rank)} waited {Duration(_timeout)} in {Describe(site, span)}; a member of its group never "
                        + "arrived (its process is stuck, gone, or in another collective)"
                );
            Pause(spins);
        }
    }

    private void PruneSends()
    {
        for (int i = _sends.Count - 1; i >= 0; i--)
        {
            var (req, _) = _sends[i];
            if (MpiNative.Test(ref req))
                _sends.RemoveAt(i);
        }
    }

    private static void Pause(int spins)
    {
        if (spins < 2000)
            Thread.SpinWait(20);
        else
            Thread.Sleep(spins < 20000 ? 0 : 1);
    }

    // Buffers MPI reads or writes live on the pinned heap, so a request abandoned on a timeout never sees them move.
    private static T[] Pinned<T>(T[] values)
        where T : unmanaged
    {
        var a = GC.AllocateUninitializedArray<T>(values.Length, pinned: true);
        values.CopyTo(a, 0);
        return a;
    }

    private List<string> AxesOf(int mask) => [.. Mesh.AxisNames.Where((_, i) => (mask & (1 << i)) != 0)];

    private (int[] Members, int Mask, string Span) GroupOf(IReadOnlyList<string> axes, CollectiveSite site)
    {
        ArgumentNullException.ThrowIfNull(axes);
        string span = $"over [{string.Join(", ", axes)}]";
        string axesKey = string.Join('\u001f', axes);
        if (!_groups.TryGetValue(axesKey, out var g))
        {
            int[] members;
            try
            {
                members = Mesh.Group(Rank, axes);
            }
            catch (ArgumentException e)
            {
                throw new CollectiveException($"{Who(Rank)} in {Describe(site, span)}: {e.Message}", e);
            }
            int mask = 0;
            foreach (var a in axes)
                mask |= 1 << Mesh.AxisNames.ToList().IndexOf(a);
            g = (members, mask);
            _groups[axesKey] = g;
        }
        return (g.Members, g.Mask, span);
    }

    private string Who(int rank) =>
        Mesh.AxisNames.Count == 0 ? $"device {rank}" : $"device {rank} ({Mesh.Describe(rank)})";

    private static string Describe(CollectiveSite site, string span) => InProcessWorld<NDArray>.Describe(site, span);

    private static string Duration(TimeSpan t) => InProcessWorld<NDArray>.Duration(t);

    private void CheckArray(NDArray x, CollectiveSite site, string span)
    {
        if (x is null)
            throw new ArgumentNullException(nameof(x), $"{Who(Rank)} passed no array to {Describe(site, span)}");
    }

    private int Dim(NDArray x, int dim, string what, CollectiveSite site, string span)
    {
        CheckArray(x, site, span);
        int rank = x.Shape.Length;
        int d = dim < 0 ? dim + rank : dim;
        if (d < 0 || d >= rank)
            throw Bad(site, span, $"{what} {dim} is out of range for {x.TypeString}");
        return d;
    }

    private void Divisible(NDArray x, int dim, int n, CollectiveSite site, string span)
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

    private CollectiveException Bad(CollectiveSite site, string span, string message) =>
        new($"{Who(Rank)} in {Describe(site, span)}: {message}");
}
