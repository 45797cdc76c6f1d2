using System.Diagnostics;
using System.Text;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// This MPI process's side of a mesh spread over the processes of a job: process p runs devices p*k to p*k+k-1
/// (k = devices / processes) as threads of an <see cref="InProcessWorld{T}"/>, whose collectives meet in process
/// first; one member then takes the group's call across the processes here. Every group of devices has an MPI
/// communicator of its own (split from the world once, at construction, where every process takes part), so the
/// groups that one process's threads serve at the same time never share one. A collective gathers the call and
/// arrays of every process's members over the group's communicator, or shares a sum or max out (MpiLink.Reduce.cs),
/// and computes the results as the in-process world does, in group order, so they equal an
/// in-process run's bit for bit. Members that call different collectives fail naming both calls; every wait polls
/// against the collective timeout. MPI is called by one thread at a time (a lock; MPI_THREAD_SERIALIZED).
/// </summary>
public sealed unsafe partial class MpiLink : IProcessLink<NDArray>, IDisposable
{
    private readonly object _mpi = new();
    private readonly Dictionary<string, nint> _comms = [];
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<int[], GroupInfo> _groups = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(nint, int), byte[]> _scratch = new();
    private readonly List<(nint Request, byte[] Buffer)> _sends = [];
    private readonly TimeSpan _timeout;
    private readonly DeviceMesh _mesh;
    private readonly int _processes;

    /// <summary>Splits the world's communicator into one per group of <paramref name="mesh"/> that this process's
    /// devices belong to; every process of the world must construct it at the same point, after <see
    /// cref="SplitError"/> found the split sound.</summary>
    public MpiLink(DeviceMesh mesh, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        _mesh = mesh;
        _timeout = timeout;
        nint world = MpiNative.CommWorld;
        Process = MpiNative.CommRank(world);
        _processes = MpiNative.CommSize(world);
        if (SplitError(mesh, _processes) is { } error)
            throw new ArgumentException(error);
        Count = mesh.DeviceCount / _processes;
        First = Process * Count;
        int axes = mesh.AxisNames.Count;
        for (int mask = 1; mask < 1 << axes; mask++)
        {
            var names = mesh.AxisNames.Where((_, i) => (mask & (1 << i)) != 0).ToList();
            // The groups this process's devices are in, by lowest member; every process has as many (its devices
            // are a box of the mesh), and the nth of one process is the nth of every process it spans.
            var groups = Enumerable
                .Range(First, Count)
                .Select(d => mesh.Group(d, names).Order().ToArray())
                .DistinctBy(Key)
                .OrderBy(g => g[0]);
            foreach (var g in groups)
            {
                nint comm = MpiNative.CommSplit(world, g[0], Process);
                MpiNative.CommSetErrhandler(comm, MpiNative.ErrorsReturn);
                _comms[Key(g)] = comm;
            }
        }
    }

    /// <summary>This process's rank in the job.</summary>
    public int Process { get; }

    /// <inheritdoc/>
    public int First { get; }

    /// <inheritdoc/>
    public int Count { get; }

    /// <summary>
    /// Why <paramref name="processes"/> processes cannot run <paramref name="mesh"/>, or null: they must divide its
    /// devices, and each one's devices (consecutive ranks) must be a box of the mesh, whole rows of the last axes and
    /// an equal part of the one before, so that every group of devices spans the same processes from each of its
    /// members.
    /// </summary>
    public static string? SplitError(DeviceMesh mesh, int processes)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        int devices = mesh.DeviceCount;
        if (processes < 1 || devices % processes != 0)
            return $"{processes} processes cannot share the {devices} device(s) of mesh {mesh}: the process count "
                + "must divide the device count";
        long k = devices / processes,
            block = 1;
        for (int a = mesh.AxisNames.Count - 1; a >= 0 && block < k; a--)
        {
            long size = mesh.Sizes[a],
                rest = k / block;
            if (k % block != 0 || (rest < size ? size % rest != 0 : rest % size != 0))
                break;
            block *= Math.Min(rest, size);
        }
        if (block == k)
            return null;
        return $"{processes} processes cannot split mesh {mesh}: each would run {k} consecutive devices, which are "
            + "not whole rows of the last axes and an equal part of the one before (choose a process count for which "
            + "each process's devices form such a block, e.g. one process a device)";
    }

    /// <inheritdoc/>
    NDArray[] IProcessLink<NDArray>.Collective(
        CollectiveCall<NDArray> call,
        int[] group,
        int[] local,
        NDArray[] inputs,
        Reduction? reduction,
        CancellationToken cancel
    )
    {
        var (comm, owners) = GroupOf(group);
        // With one device a process, a group whose processes have agreed this step reduces by blocking calls that
        // carry the call's hash (MpiLink.Direct.cs); no text is made unless the processes' calls differ.
        if (Blocking && Agreed(comm))
        {
            if (reduction != null)
                return Direct(comm, group, owners, inputs[0], reduction, call, cancel);
            if (call.Moves is { } moves && Move(comm, group, owners, inputs[0], moves, call, cancel) is { } r)
                return r;
        }
        string text = CallText(call);
        // Else the call starts with the processes comparing what they call, so that all of them take the same path.
        bool agree = Agree(comm, owners.Length, text, call, cancel);
        if (agree && Blocking)
            MarkAgreed(comm);
        if (agree && reduction != null)
            return Reduce(comm, group, local, owners, inputs, reduction, call, cancel);
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true))
            foreach (var x in inputs)
                ArrayWire.Write(w, x);
        var parts = Exchange(comm, Encoding.UTF8.GetBytes(text), m.ToArray(), owners.Length, call, cancel);
        var all = new NDArray[group.Length];
        for (int i = 0; i < owners.Length; i++)
        {
            var (theirs, bytes, offset, count) = parts[i];
            CheckSame(theirs, text, owners[i][0], call);
            using var r = new BinaryReader(new MemoryStream(bytes, offset, count));
            foreach (int member in owners[i])
                all[Array.IndexOf(group, member)] = ArrayWire.Read(r)!;
        }
        var results = call.Compute(all);
        return Array.ConvertAll(local, d => results[Array.IndexOf(group, d)]);
    }

    /// <inheritdoc/>
    public void Send(NDArray x, int from, int to, int tag, CollectiveSite site)
    {
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(site.Op);
            w.Write(site.Where);
            w.Write(site.Step);
            ArrayWire.Write(w, x);
        }
        var buffer = Pinned(m.ToArray());
        lock (_mpi)
        {
            PruneSends();
            fixed (byte* p = buffer)
            {
                nint req = MpiNative.IsendBytes(p, buffer.Length, to / Count, Tag(from, to, tag), MpiNative.CommWorld);
                _sends.Add((req, buffer));
            }
        }
    }

    /// <inheritdoc/>
    public bool TryRecv(
        int from,
        int to,
        int tag,
        TimeSpan timeout,
        CancellationToken cancel,
        out (NDArray Value, CollectiveSite Site) message
    )
    {
        var clock = Stopwatch.StartNew();
        int size;
        for (int spins = 0; ; spins++)
        {
            lock (_mpi)
            {
                PruneSends();
                size = MpiNative.IprobeBytes(from / Count, Tag(from, to, tag), MpiNative.CommWorld);
            }
            if (size >= 0)
                break;
            cancel.ThrowIfCancellationRequested();
            if (clock.Elapsed > timeout)
            {
                message = default;
                return false;
            }
            Pause(spins);
        }
        var buffer = Pinned(new byte[size]);
        lock (_mpi)
            fixed (byte* p = buffer)
                MpiNative.RecvBytes(p, size, from / Count, Tag(from, to, tag), MpiNative.CommWorld);
        using var r = new BinaryReader(new MemoryStream(buffer));
        var site = new CollectiveSite(r.ReadString(), r.ReadString(), r.ReadInt64());
        message = (ArrayWire.Read(r)!, site);
        return true;
    }

    /// <summary>Every process's <paramref name="data"/> by rank (the results of a run, gathered on every
    /// process).</summary>
    internal byte[][] AllGatherBytes(byte[] data)
    {
        if (_processes == 1)
            return [data];
        var call = new CollectiveCall<NDArray>(First, new("gather results", "", -1), [], "", "", "", xs => xs);
        var parts = Exchange(MpiNative.CommWorld, [], data, _processes, call, CancellationToken.None);
        return Array.ConvertAll(parts, p => p.Bytes.AsSpan(p.Offset, p.Count).ToArray());
    }

    /// <summary>Every process's <paramref name="data"/> by rank on process 0 (the results of a step), null on the
    /// others.</summary>
    internal byte[][]? GatherOnRoot(byte[] data)
    {
        if (_processes == 1)
            return [data];
        var call = new CollectiveCall<NDArray>(First, new("gather results", "", -1), [], "", "", "", xs => xs);
        var parts = Exchange(MpiNative.CommWorld, [], data, _processes, call, CancellationToken.None, root: 0);
        return Process == 0 ? Array.ConvertAll(parts, p => p.Bytes.AsSpan(p.Offset, p.Count).ToArray()) : null;
    }

    /// <summary>Process <paramref name="root"/>'s <paramref name="data"/> on every process of the group of devices
    /// <paramref name="members"/>, over the group's communicator (an NCCL unique id, for the group's NCCL
    /// communicator).</summary>
    internal byte[] Broadcast(int[] members, int root, byte[] data)
    {
        var sorted = members.Order().ToArray();
        var processes = sorted.Select(d => d / Count).Distinct().ToArray();
        var call = new CollectiveCall<NDArray>(First, new("make NCCL communicator", "", -1), [], "", "", "", xs => xs);
        var parts = Exchange(_comms[Key(sorted)], [], data, processes.Length, call, CancellationToken.None);
        var (_, bytes, offset, count) = parts[Array.IndexOf(processes, root)];
        return bytes.AsSpan(offset, count).ToArray();
    }

    /// <summary>Waits (within the timeout) for the sends still in flight; the split communicators stay until MPI is
    /// finalized.</summary>
    public void Dispose()
    {
        var clock = Stopwatch.StartNew();
        for (int spins = 0; clock.Elapsed < _timeout; spins++)
        {
            lock (_mpi)
            {
                PruneSends();
                if (_sends.Count == 0)
                    return;
            }
            Pause(spins);
        }
    }

    // A group's communicator and its members by process (ascending, as the communicator ranks them), each in group
    // order; kept with the group's array, which a device's communicator keeps for every call over the same axes, for
    // as long as that array lives.
    private (nint Comm, int[][] Owners) GroupOf(int[] group)
    {
        var info = _groups.GetValue(
            group,
            g => new GroupInfo(
                _comms[Key(g.Order().ToArray())],
                [.. g.GroupBy(d => d / Count).OrderBy(p => p.Key).Select(p => p.ToArray())]
            )
        );
        return (info.Comm, info.Owners);
    }

    private sealed record GroupInfo(nint Comm, int[][] Owners);

    // What the processes compare: the call's signature, site and display.
    private static string CallText(CollectiveCall<NDArray> call) =>
        $"{call.Signature}\u001f{InProcessWorld<NDArray>.Describe(call.Site, call.Span)}\u001f{call.Display}";

    private void CheckSame(string theirs, string mine, int them, CollectiveCall<NDArray> call)
    {
        var a = theirs.Split('\u001f');
        var b = mine.Split('\u001f');
        if (a[0] != b[0])
            throw new CollectiveException(
                $"collective mismatch: {Who(them)} called {a[1]} as {a[2]}, but {Who(call.Rank)} called {b[1]} as "
                    + b[2]
            );
    }

    // Messages between two devices of two processes, per tag, keep their order: one MPI tag each.
    private int Tag(int from, int to, int tag) => (tag * Count + from % Count) * Count + to % Count;

    private string Who(int rank) => CollectiveChecks.Who(_mesh, rank);

    private static string Key(int[] sortedMembers) => string.Join(",", sortedMembers);
}
