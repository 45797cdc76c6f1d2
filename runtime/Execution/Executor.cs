using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>A failure while running a device program, naming the device, the step and the op.</summary>
public sealed class ExecutionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Walks a <see cref="DeviceProgram"/> on one device: kernels go to the <see cref="IDevice"/>, collectives and
/// transfers to the <see cref="ICommunicator"/>. The same executor serves every back end; only those two differ.
/// </summary>
public static class Executor
{
    /// <summary>
    /// Runs <paramref name="program"/> with this device's argument blocks; <paramref name="parameter"/> gives this
    /// device's block of a parameter by path and <paramref name="update"/> receives its new block (training).
    /// Returns this device's result blocks (copied to the host).
    /// </summary>
    public static NDArray[] Run<T>(
        DeviceProgram program,
        IDevice<T> device,
        ICommunicator<T> comm,
        IReadOnlyList<NDArray> inputs,
        Func<string, NDArray> parameter,
        Action<string, NDArray>? update = null,
        Trace? trace = null
    )
        where T : class, IArray
    {
        if (program.PipelineAxis != null)
            throw new ExecutionException("a pipelined program runs through the " + "PipelineExecutor");
        var slots = new T?[program.NumSlots];
        var pending = new StartedCollectives<T>(trace, comm.Rank);
        for (int step = 0; step < program.Instructions.Count; step++)
        {
            var ins = program.Instructions[step];
            Step(
                ins,
                slots,
                new CollectiveSite(ins.Op, ins.Where, step),
                device,
                comm,
                inputs,
                parameter,
                update,
                trace,
                pending
            );
            foreach (int dead in program.LastUses[step])
            {
                if (slots[dead] is { } value)
                    device.Release(value);
                slots[dead] = null;
            }
        }
        var results = program.Results.Select(s => device.CopyOut(slots[s]!)).ToArray();
        foreach (var value in slots)
            if (value != null)
                device.Release(value);
        return results;
    }

    /// <summary>Runs one instruction (anything but a pipeline send or receive) on this device's slots.</summary>
    internal static void Step<T>(
        Instruction ins,
        T?[] slots,
        CollectiveSite site,
        IDevice<T> device,
        ICommunicator<T> comm,
        IReadOnlyList<NDArray> inputs,
        Func<string, NDArray> parameter,
        Action<string, NDArray>? update,
        Trace? trace,
        StartedCollectives<T> pending
    )
        where T : class, IArray
    {
        try
        {
            StepOn(ins, slots, site, device, comm, inputs, parameter, update, trace, pending);
        }
        catch (DeviceException e)
        {
            throw Fail(comm, site, e.Message, e);
        }
    }

    private static void StepOn<T>(
        Instruction ins,
        T?[] slots,
        CollectiveSite site,
        IDevice<T> device,
        ICommunicator<T> comm,
        IReadOnlyList<NDArray> inputs,
        Func<string, NDArray> parameter,
        Action<string, NDArray>? update,
        Trace? trace,
        StartedCollectives<T> pending
    )
        where T : class, IArray
    {
        double start = trace?.Now ?? 0;
        switch (ins)
        {
            case InputInstr i:
                slots[i.Output] = device.CopyIn(inputs[i.Index]);
                break;
            case ParamInstr p:
                var value = parameter(p.Path);
                if (value.DType != p.DType || !value.Shape.SequenceEqual(p.Shape))
                    throw Fail(
                        comm,
                        site,
                        $"parameter '{p.Path}' must be "
                            + $"{p.DType.Name()}[{string.Join(", ", p.Shape)}] on each device, got {value.TypeString}"
                    );
                slots[p.Output] = device.CopyIn(value);
                break;
            case LaunchInstr l:
                var output = device.Allocate(l.DType, l.Shape, zero: false);
                try
                {
                    device.Launch(l.Kernel, l.Inputs.Select(s => slots[s]!).ToArray(), [output]);
                }
                catch (Exception e) when (e is not OperationCanceledException and not CollectiveException)
                {
                    throw Fail(comm, site, e.Message, e);
                }
                slots[l.Output] = output;
                break;
            case CollectiveInstr c:
                slots[c.Output] = Collective(c, slots[c.Input]!, device, comm, site);
                break;
            case StartInstr s:
                var xs = s.Inputs.Select(i => slots[i]!).ToArray();
                pending.Add(
                    s,
                    s.Kind switch
                    {
                        CollectiveKind.AllReduce => comm.StartAllReduce(xs, s.Axes, s.Reduce, site),
                        CollectiveKind.ReduceScatter => comm.StartReduceScatter(xs, s.Axes, s.Dim, site),
                        CollectiveKind.AllGather => comm.StartAllGather(xs, s.Axes, s.Dim, site),
                        _ => throw Fail(comm, site, $"{s.Kind} cannot be started asynchronously"),
                    }
                );
                break;
            case WaitInstr w:
                var results = pending.Wait(w, comm, site);
                for (int k = 0; k < w.Outputs.Length; k++)
                    slots[w.Outputs[k]] = results[k];
                break;
            case SendInstr s:
                if (Peer(comm, s.Axis, s.Shift) is int to)
                    comm.Send(slots[s.Input]!, to, site);
                break;
            case UpdateInstr u:
                if (update == null)
                    throw Fail(comm, site, $"the program updates '{u.Path}' but the run keeps no parameters");
                update(u.Path, device.CopyOut(slots[u.Input]!));
                break;
            case RecvInstr r:
                slots[r.Output] = Peer(comm, r.Axis, -r.Shift) is int from
                    ? comm.Recv(from, r.DType, r.Shape, site)
                    : device.Allocate(r.DType, r.Shape);
                break;
            default:
                throw Fail(comm, site, $"no rule for {ins.GetType().Name}");
        }
        if (trace != null && Category(ins) is { } category)
            trace.Add(comm.Rank, ins.Op, category, start, ins.Where);
    }

    /// <summary>The trace category of an instruction: compute, collective, send or recv (null: not traced).</summary>
    internal static string? Category(Instruction ins) =>
        ins switch
        {
            LaunchInstr => "compute",
            CollectiveInstr or StartInstr => "collective",
            WaitInstr => "wait",
            SendInstr or PipeSendInstr => "send",
            RecvInstr or PipeRecvInstr => "recv",
            _ => null,
        };

    /// <summary>
    /// The collectives a device has started and not yet waited for, by handle; with a trace, each one's flight (from
    /// its start to when its group completed it) is a span of category <c>async</c> on the device's communication
    /// track.
    /// </summary>
    internal sealed class StartedCollectives<T>(Trace? trace, int rank)
        where T : class, IArray
    {
        private readonly Dictionary<int, (PendingCollective<T> Pending, double Start, string Op)> _open = [];

        /// <summary>Records what <paramref name="start"/> began.</summary>
        public void Add(StartInstr start, PendingCollective<T> pending) =>
            _open.Add(start.Handle, (pending, trace?.Now ?? 0, start.Op));

        /// <summary>Waits for the collective <paramref name="wait"/> names and gives its results.</summary>
        public T[] Wait(WaitInstr wait, ICommunicator<T> comm, CollectiveSite site)
        {
            if (!_open.Remove(wait.Handle, out var started))
                throw Fail(comm, site, $"no collective was started with handle {wait.Handle}");
            var results = started.Pending.Wait();
            if (results.Length != wait.Outputs.Length)
                throw Fail(
                    comm,
                    site,
                    $"the start gave {results.Length} results, the wait takes {wait.Outputs.Length}"
                );
            if (trace != null)
                trace.AddSpan(
                    rank,
                    started.Op,
                    Trace.AsyncCategory,
                    started.Start,
                    trace.At(started.Pending.CompletedAt),
                    wait.Where
                );
            return results;
        }
    }

    private static T Collective<T>(
        CollectiveInstr c,
        T x,
        IDevice<T> device,
        ICommunicator<T> comm,
        CollectiveSite site
    )
        where T : class, IArray =>
        c.Kind switch
        {
            CollectiveKind.AllReduce => comm.AllReduce(x, c.Axes, c.Reduce, site),
            CollectiveKind.AllGather => comm.AllGather(x, c.Axes, c.Dim, site),
            CollectiveKind.ReduceScatter => comm.ReduceScatter(x, c.Axes, c.Dim, site),
            CollectiveKind.AllToAll => comm.AllToAll(x, c.Axes, c.Dim, c.Dim2, site),
            CollectiveKind.CollectivePermute => comm.CollectivePermute(x, c.Pairs, site),
            CollectiveKind.AllSlice => LocalSlice(x, c.Axes, c.Dim, device.Ops, comm),
            _ => throw new ArgumentOutOfRangeException(nameof(c)),
        };

    /// <summary>This device's block of dimension <paramref name="dim"/> when it is split over <paramref
    /// name="axes"/>.</summary>
    public static T LocalSlice<T>(T x, IReadOnlyList<string> axes, int dim, IArrayOps<T> ops, ICommunicator<T> comm)
        where T : class, IArray
    {
        long n = comm.Mesh.Product(axes);
        long len = x.Shape[dim] / n;
        return ops.Slice(x, dim, comm.Mesh.IndexInGroup(comm.Rank, axes) * len, len);
    }

    /// <summary>The rank <paramref name="shift"/> steps along <paramref name="axis"/>, or null beyond the mesh's
    /// edge.</summary>
    private static int? Peer<T>(ICommunicator<T> comm, string axis, int shift)
        where T : class, IArray
    {
        var coords = comm.Mesh.Coords(comm.Rank);
        int a = comm.Mesh.AxisNames.ToList().IndexOf(axis);
        coords[a] += shift;
        return coords[a] < 0 || coords[a] >= comm.Mesh.Sizes[a] ? null : comm.Mesh.RankOf(coords);
    }

    internal static ExecutionException Fail<T>(
        ICommunicator<T> comm,
        CollectiveSite site,
        string message,
        Exception? inner = null
    )
        where T : class, IArray
    {
        var (mesh, rank) = (comm.Mesh, comm.Rank);
        var coords = mesh.Coords(rank);
        string where =
            mesh.DeviceCount == 1
                ? ""
                : $"device {rank} ({string.Join(", ", mesh.AxisNames.Select((a, i) => $"{a}={coords[i]}"))}), ";
        return new ExecutionException(
            $"{where}step {site.Step}, " + $"{site.Op}{(site.Where.Length > 0 ? $" at {site.Where}" : "")}: {message}",
            inner
        );
    }
}
