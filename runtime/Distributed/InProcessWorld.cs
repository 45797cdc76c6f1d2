using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// N simulated devices in one process, one thread each, exchanging data through shared memory. A collective is
/// a rendezvous of its group: the last member to arrive computes every member's result. Members that disagree
/// on what they call fail at once, a member that waits past the timeout fails naming who never came, and one
/// failing device cancels the rest, so a wrong program never hangs.
/// </summary>
public sealed class InProcessWorld : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly ConcurrentDictionary<string, Rendezvous> _rendezvous = new();
    private readonly ConcurrentDictionary<(int, int), BlockingCollection<NDArray>> _mail = new();
    private readonly DeviceCommunicator[] _comms;

    /// <summary>The mesh.</summary>
    public DeviceMesh Mesh { get; }
    /// <summary>How long a device waits in one collective or receive.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>A world of <paramref name="mesh"/>'s devices.</summary>
    public InProcessWorld(DeviceMesh mesh, TimeSpan timeout)
    {
        Mesh = mesh;
        Timeout = timeout;
        _comms = Enumerable.Range(0, mesh.DeviceCount).Select(r => new DeviceCommunicator(this, r)).ToArray();
    }

    /// <summary>The communicator of device <paramref name="rank"/>.</summary>
    public ICommunicator Communicator(int rank) => _comms[rank];

    /// <summary>
    /// Runs <paramref name="body"/> on every device, each on its own thread; returns the results by rank. When a
    /// device throws, the others are cancelled and the first original exception is rethrown.
    /// </summary>
    public T[] Run<T>(Func<int, ICommunicator, T> body)
    {
        var results = new T[Mesh.DeviceCount];
        Exception? first = null;
        var threads = Enumerable.Range(0, Mesh.DeviceCount).Select(rank => new Thread(() =>
        {
            try { results[rank] = body(rank, _comms[rank]); }
            catch (Exception e)
            {
                if (e is not OperationCanceledException) Interlocked.CompareExchange(ref first, e, null);
                _cts.Cancel();
            }
        }, 64 * 1024 * 1024) { IsBackground = true, Name = $"device {rank}" }).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        if (first != null) ExceptionDispatchInfo.Capture(first).Throw();
        if (_cts.IsCancellationRequested) throw new OperationCanceledException("the devices were cancelled");
        return results;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _cts.Cancel();
        foreach (var r in _rendezvous.Values) r.Done.Dispose();
        foreach (var m in _mail.Values) m.Dispose();
        _cts.Dispose();
    }

    private string Who(int rank) => Mesh.DeviceCount == 1 || Mesh.AxisNames.Count == 0 ? $"device {rank}" : $"device {rank} ({Mesh.Describe(rank)})";

    private static string At(CollectiveSite site) => $"{site.Op} at step {site.Step}{(site.Where.Length > 0 ? $" ({site.Where})" : "")}";

    /// <summary>One collective of one group: contributions by group position, results once all arrived.</summary>
    private sealed class Rendezvous(int size)
    {
        public readonly NDArray?[] Inputs = new NDArray?[size];
        public readonly ManualResetEventSlim Done = new(false);
        public NDArray[]? Results;
        public string? Signature, FirstCall, Error;
        public int Arrived, Read;
    }

    private NDArray Collective(int rank, int[] group, string key, string signature, CollectiveSite site, NDArray x, Func<NDArray[], NDArray[]> compute)
    {
        int me = Array.IndexOf(group, rank);
        var rv = _rendezvous.GetOrAdd(key, _ => new Rendezvous(group.Length));
        string call = $"{Who(rank)} called {signature} in {At(site)}";
        lock (rv)
        {
            if (rv.Signature == null) { rv.Signature = signature; rv.FirstCall = call; }
            else if (rv.Signature != signature && rv.Error == null) rv.Error = $"mismatched collectives: {rv.FirstCall}, but {call}";
            rv.Inputs[me] = x;
            if (++rv.Arrived == group.Length || rv.Error != null)
            {
                if (rv.Error == null)
                {
                    try { rv.Results = compute(rv.Inputs!); }
                    catch (ArgumentException e) { rv.Error = $"{call}: {e.Message}"; }
                }
                rv.Done.Set();
            }
        }
        bool done;
        try { done = rv.Done.Wait(Timeout, _cts.Token); }
        catch (OperationCanceledException) { throw new OperationCanceledException($"{Who(rank)} was cancelled in {At(site)}"); }
        if (!done)
        {
            string missing;
            lock (rv) missing = string.Join(", ", group.Where((g, i) => rv.Inputs[i] == null));
            throw new CollectiveTimeoutException(
                $"{Who(rank)} waited {Timeout.TotalSeconds:0.###} s in {signature}, {At(site)}; device(s) {missing} never arrived (a mismatched program?)");
        }
        if (rv.Error != null) throw new CollectiveException(rv.Error);
        var result = rv.Results![me];
        if (Interlocked.Increment(ref rv.Read) == group.Length) _rendezvous.TryRemove(key, out _);
        return result;
    }

    private sealed class DeviceCommunicator(InProcessWorld world, int rank) : ICommunicator
    {
        private readonly Dictionary<string, long> _sequence = new();

        public int Rank => rank;
        public DeviceMesh Mesh => world.Mesh;

        private NDArray Run(IReadOnlyList<string> axes, string what, CollectiveSite site, NDArray x, Func<NDArray[], NDArray[]> compute)
        {
            var group = axes.Count == 0 ? [rank] : Mesh.Group(rank, axes);
            string signature = $"{what} over [{string.Join(", ", axes)}] on {x.TypeString}";
            if (group.Length == 1) return compute([x])[0];
            string gk = string.Join(",", group.Order());
            long seq = _sequence[gk] = _sequence.GetValueOrDefault(gk) + 1;
            return world.Collective(rank, group, $"{gk}#{seq}", signature, site, x, compute);
        }

        private static NDArray[] Copies(NDArray r, int n) => Enumerable.Range(0, n).Select(i => i == 0 ? r : ArrayOps.Copy(r)).ToArray();

        public NDArray AllReduce(NDArray x, IReadOnlyList<string> axes, ReduceKind kind, CollectiveSite site) =>
            Run(axes, $"all_reduce({kind.ToString().ToLowerInvariant()})", site, x,
                xs => Copies(kind == ReduceKind.Sum ? ArrayOps.Sum(xs) : ArrayOps.Max(xs), xs.Length));

        public NDArray AllGather(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
            Run(axes, $"all_gather(dim {dim})", site, x, xs => Copies(xs.Length == 1 ? ArrayOps.Copy(xs[0]) : ArrayOps.Concat(xs, dim), xs.Length));

        public NDArray ReduceScatter(NDArray x, IReadOnlyList<string> axes, int dim, CollectiveSite site) =>
            Run(axes, $"reduce_scatter(dim {dim})", site, x, xs => ArrayOps.Split(ArrayOps.Sum(xs), dim, xs.Length));

        public NDArray AllToAll(NDArray x, IReadOnlyList<string> axes, int splitDim, int concatDim, CollectiveSite site) =>
            Run(axes, $"all_to_all(split {splitDim}, concat {concatDim})", site, x, xs =>
            {
                var chunks = xs.Select(a => ArrayOps.Split(a, splitDim, xs.Length)).ToArray();
                return Enumerable.Range(0, xs.Length).Select(m => ArrayOps.Concat(chunks.Select(c => c[m]).ToArray(), concatDim)).ToArray();
            });

        public NDArray CollectivePermute(NDArray x, IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site)
        {
            if (pairs.Select(p => p.Source).Distinct().Count() != pairs.Count || pairs.Select(p => p.Target).Distinct().Count() != pairs.Count)
                throw new CollectiveException($"{world.Who(rank)}: collective_permute has a device twice as a source or twice as a target");
            var all = Enumerable.Range(0, Mesh.DeviceCount).ToArray();
            string signature = $"collective_permute [{string.Join(", ", pairs.Select(p => $"{p.Source}->{p.Target}"))}] on {x.TypeString}";
            NDArray[] Compute(NDArray[] xs)
            {
                var r = xs.Select(a => NDArray.Zeros(a.DType, a.Shape)).ToArray();
                foreach (var (s, t) in pairs) r[t] = ArrayOps.Copy(xs[s]);
                return r;
            }
            if (all.Length == 1) return Compute([x])[0];
            long seq = _sequence["*"] = _sequence.GetValueOrDefault("*") + 1;
            return world.Collective(rank, all, $"*#{seq}", signature, site, x, Compute);
        }

        public void Send(NDArray x, int peer, CollectiveSite site)
        {
            Mesh.Coords(peer);
            world._mail.GetOrAdd((rank, peer), _ => new BlockingCollection<NDArray>()).Add(ArrayOps.Copy(x));
        }

        public NDArray Recv(int peer, DType dtype, long[] shape, CollectiveSite site)
        {
            var box = world._mail.GetOrAdd((peer, rank), _ => new BlockingCollection<NDArray>());
            NDArray? x;
            try
            {
                if (!box.TryTake(out x, (int)world.Timeout.TotalMilliseconds, world._cts.Token))
                    throw new CollectiveTimeoutException($"{world.Who(rank)} waited {world.Timeout.TotalSeconds:0.###} s in recv from {world.Who(peer)}, {At(site)}; nothing was sent");
            }
            catch (OperationCanceledException) { throw new OperationCanceledException($"{world.Who(rank)} was cancelled in {At(site)}"); }
            if (x!.DType != dtype || !x.Shape.SequenceEqual(shape))
                throw new CollectiveException($"{world.Who(rank)} expected {dtype.Name()}[{string.Join(", ", shape)}] from {world.Who(peer)} in {At(site)}, got {x.TypeString}");
            return x;
        }
    }
}
