using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>
/// Runs a pipelined (and possibly microbatched) <see cref="DeviceProgram"/> on one device. This device runs the
/// stages whose number modulo the pipeline axis size is its coordinate on that axis, and works through its tasks
/// in the order of the program's schedule: the forward or backward (or, split from it, the weight gradient) of one
/// microbatch on one of its stages, each running that stage's instructions of that phase over the microbatch's own
/// slots. Sends and receives between
/// stages are blocking point-to-point messages tagged by channel and microbatch. The microbatch axis is run in
/// time: what sums over it (the loss, every gradient) and what reads those sums (the update) runs once after the
/// schedule, on the sum of the microbatches' values. A microbatch's values are freed once the last of this
/// device's instructions that reads them has run, so the memory held follows the schedule.
/// </summary>
public static class PipelineExecutor
{
    /// <summary>
    /// Runs the program; <paramref name="inputs"/>[j] are microbatch j's argument blocks. Returns, per result, the
    /// value of each microbatch (the same array for all when it is summed over them; null on devices of other stages).
    /// </summary>
    public static NDArray?[][] Run<T>(
        DeviceProgram program,
        IDevice<T> device,
        ICommunicator<T> comm,
        IReadOnlyList<IReadOnlyList<NDArray>> inputs,
        Func<string, NDArray> parameter,
        Action<string, NDArray>? update,
        Trace? trace = null
    )
        where T : class, IArray
    {
        int m = program.Microbatches,
            n = program.Instructions.Count;
        string axis =
            program.PipelineAxis ?? throw new ExecutionException("not a pipelined program: run it with the Executor");
        var schedule =
            program.Schedule ?? throw new ExecutionException("the pipelined program has no schedule (pipe.schedule)");
        string mb = program.MicrobatchAxis ?? "";
        int p = comm.Mesh.Size(axis),
            me = comm.Mesh.Coords(comm.Rank)[comm.Mesh.AxisNames.ToList().IndexOf(axis)];
        if (schedule.Count != p)
            throw new ExecutionException(
                $"the schedule orders {schedule.Count} device(s) but " + $"pipeline axis '{axis}' has {p}"
            );
        bool Mine(int stage) => stage < 0 || stage % p == me;

        // How many of this device's per-microbatch instructions read each slot; slots read after the schedule or
        // returned are kept.
        var readers = new int[program.NumSlots];
        var keep = new bool[program.NumSlots];
        foreach (var ins in program.Instructions)
        foreach (int s in DeviceProgram.Reads(ins))
            if (ins.PerStep || ins.Setup)
                keep[s] = true;
            else if (Mine(ins.Stage))
                readers[s]++;
        foreach (int s in program.Results)
            keep[s] = true;
        foreach (var ins in program.Instructions.Where(x => x.Setup))
        foreach (int w in DeviceProgram.Outputs(ins))
            keep[w] = true;
        var env = new T?[m][];
        var left = new int[m][];
        for (int j = 0; j < m; j++)
        {
            env[j] = new T?[program.NumSlots];
            left[j] = (int[])readers.Clone();
        }
        var local = new Dictionary<(int Channel, int Microbatch), T>();
        // Started collectives by handle; a start and its wait run in one phase, so handles of microbatches and of
        // the step never meet.
        var pending = new Executor.StartedCollectives<T>(trace, comm.Rank);

        void Exec(int i, T?[] slots, int j)
        {
            var ins = program.Instructions[i];
            var site = new CollectiveSite(ins.Op, ins.Where, i);
            double start = trace?.Now ?? 0;
            try
            {
                switch (ins)
                {
                    case PipeSendInstr s:
                        // the sender's slot lives on
                        if (Mine(s.To))
                            local[(s.Channel, j)] = device.Ops.Copy(slots[s.Input]!);
                        else
                            comm.Send(slots[s.Input]!, Peer(comm, axis, s.To % p), site, s.Channel * m + j);
                        break;
                    case PipeRecvInstr r:
                        if (!Mine(r.From))
                            slots[r.Output] = comm.Recv(
                                Peer(comm, axis, r.From % p),
                                r.DType,
                                r.Shape,
                                site,
                                r.Channel * m + j
                            );
                        else if (local.Remove((r.Channel, j), out var v))
                            slots[r.Output] = v;
                        else
                            throw Executor.Fail(
                                comm,
                                site,
                                $"stage {r.To} receives channel {r.Channel} of microbatch {j} "
                                    + $"before stage {r.From} sent "
                                    + $"it: the schedule runs them out of order"
                            );
                        break;
                    default:
                        Executor.Step(ins, slots, site, device, comm, inputs[j], parameter, update, null, pending);
                        break;
                }
            }
            catch (DeviceException e)
            {
                throw Executor.Fail(comm, site, e.Message, e);
            }
            if (trace != null && Executor.Category(ins) is { } category)
                trace.Add(comm.Rank, ins.Op, category, start, m > 1 ? $"microbatch {j}, {ins.Where}" : ins.Where);
        }

        // What the step computes once per step, and which of its instructions already ran during the schedule.
        var after = new T?[program.NumSlots];
        var summed = new bool[program.NumSlots];
        var early = new EarlyStarts<T>(program, Mine, mb, m);

        // Sums the microbatches' values of slot c.Input (in microbatch order) for the step's collective c over the
        // microbatch axis alone.
        void FormSum(int i)
        {
            var c = (CollectiveInstr)program.Instructions[i];
            var site = new CollectiveSite(c.Op, c.Where, i);
            double start = trace?.Now ?? 0;
            after[c.Output] = device.Ops.Sum(
                env.Select(e => e[c.Input] ?? throw Executor.Fail(comm, site, "a microbatch's value is missing"))
                    .ToArray()
            );
            summed[c.Output] = true;
            trace?.Add(comm.Rank, c.Op, "collective", start, $"sum of {m} microbatches, {c.Where}");
        }

        // A started collective of the step whose inputs are all formed: issued now, under the rest of the tasks.
        void StartEarly(int i)
        {
            var view = new T?[program.NumSlots];
            foreach (int s in DeviceProgram.Reads(program.Instructions[i]))
                view[s] = after[s];
            Exec(i, view, 0);
        }

        void RunMicrobatch(int j, Func<Instruction, bool> take)
        {
            var slots = env[j];
            for (int i = 0; i < n; i++)
            {
                var ins = program.Instructions[i];
                if (ins.PerStep || ins.Setup || !take(ins))
                    continue;
                Exec(i, slots, j);
                foreach (int w in DeviceProgram.Outputs(ins))
                    early.Produced(w, FormSum, StartEarly);
                foreach (int s in DeviceProgram.Reads(ins))
                    if (--left[j][s] == 0 && !keep[s] && slots[s] is { } dead)
                    {
                        device.Release(dead);
                        slots[s] = null;
                    }
            }
        }

        // Work on no stage (the inputs, constants every stage reads): once per microbatch, up front. Without
        // stages (a pipeline of one device) everything belongs to the one stage's tasks.
        bool staged = program.Instructions.Any(i => i.Stage >= 0);
        if (staged)
            for (int j = 0; j < m; j++)
                RunMicrobatch(j, ins => ins.Stage < 0);
        // Once per step, before the schedule: work on values the same for every microbatch, shared by all of them.
        for (int i = 0; i < n; i++)
        {
            var ins = program.Instructions[i];
            if (!ins.Setup || !Mine(ins.Stage))
                continue;
            Exec(i, env[0], 0);
            foreach (int w in DeviceProgram.Outputs(ins))
                for (int j = 1; j < m; j++)
                    env[j][w] = env[0][w];
        }
        foreach (var task in schedule[me])
        {
            int stage = task.Chunk * p + me;
            bool backward = task.Phase == Phase.Backward,
                weight = task.Phase == Phase.Weight;
            double start = trace?.Now ?? 0;
            RunMicrobatch(
                task.Microbatch,
                ins => (ins.Stage == stage || !staged) && ins.Backward == backward && ins.Weight == weight
            );
            trace?.Add(comm.Rank, $"{task.Label(1)} stage {stage}", "task", start);
        }

        // Once per step: sums over the microbatches (then the rest of the collective over real axes), then what reads
        // them.
        T? Read(int slot) => summed[slot] ? after[slot] : env[0][slot];
        double stepStart = trace?.Now ?? 0;
        bool any = false;
        for (int i = 0; i < n; i++)
        {
            var ins = program.Instructions[i];
            // a send runs on its source stage, a receive on its destination
            if (!ins.PerStep || !Mine(ins.Stage))
                continue;
            any = true;
            if (early.Ran(i))
                continue;
            if (ins is CollectiveInstr c && c.Axes.Contains(mb))
            {
                var site = new CollectiveSite(ins.Op, ins.Where, i);
                if (c.Kind != CollectiveKind.AllReduce || c.Reduce != ReduceKind.Sum)
                    throw Executor.Fail(
                        comm,
                        site,
                        "over the microbatch axis only a sum (all_reduce) can be formed; the op needs the whole batch "
                            + "at once"
                    );
                double start = trace?.Now ?? 0;
                var sum = device.Ops.Sum(
                    env.Select(e => e[c.Input] ?? throw Executor.Fail(comm, site, "a microbatch's value is missing"))
                        .ToArray()
                );
                var rest = c.Axes.Where(a => a != mb).ToArray();
                if (rest.Length == 0)
                    after[c.Output] = sum;
                else
                {
                    after[c.Output] = comm.AllReduce(sum, rest, ReduceKind.Sum, site);
                    device.Release(sum);
                }
                trace?.Add(comm.Rank, ins.Op, "collective", start, $"sum of {m} microbatches, {ins.Where}");
            }
            else
            {
                var view = new T?[program.NumSlots];
                foreach (int s in DeviceProgram.Reads(ins))
                    view[s] = Read(s);
                Exec(i, view, 0);
                foreach (int w in DeviceProgram.Outputs(ins))
                    after[w] = view[w];
            }
            foreach (int o in DeviceProgram.Outputs(ins))
                summed[o] = true;
        }
        if (any)
            trace?.Add(comm.Rank, "step (after the schedule)", "task", stepStart);
        var perStep = program.Instructions.Where(x => x.PerStep).SelectMany(DeviceProgram.Outputs).ToHashSet();
        NDArray? Out(T? x) => x == null ? null : device.CopyOut(x);
        var results = program
            .Results.Select(s =>
                perStep.Contains(s)
                    ? Enumerable.Repeat(Out(after[s]), m).ToArray()
                    : env.Select(e => Out(e[s])).ToArray()
            )
            .ToArray();
        var held = new HashSet<T>(ReferenceEqualityComparer.Instance);
        foreach (var x in env.SelectMany(e => e).Concat(after).Concat(local.Values))
            if (x != null && held.Add(x))
                device.Release(x);
        return results;
    }

    private static int Peer<T>(ICommunicator<T> comm, string axis, int coordinate)
        where T : class, IArray
    {
        var coords = comm.Mesh.Coords(comm.Rank);
        coords[comm.Mesh.AxisNames.ToList().IndexOf(axis)] = coordinate;
        return comm.Mesh.RankOf(coords);
    }
}

/// <summary>
/// The step's started collectives (the data-parallel all-reduce or reduce-scatter of a stage's gradients, each summed
/// over the microbatches) that a pipelined device issues during its schedule: a start all of whose inputs are sums
/// over the microbatch axis alone of values this device's tasks compute is issued as soon as every microbatch has
/// produced each of them (its sums formed then), so that it runs under the device's remaining tasks and the step only
/// waits for it. Every member of the start's group runs the same tasks in the same order, so they issue it at the same
/// point. The sums are the step's own, in microbatch order, so results are unchanged bit for bit.
/// </summary>
internal sealed class EarlyStarts<T>
    where T : class, IArray
{
    private readonly Dictionary<int, List<int>> _sumsReading = [];
    private readonly Dictionary<int, int> _startOf = [];
    private readonly Dictionary<int, int> _missing = [];
    private readonly Dictionary<int, int> _produced = [];
    private readonly HashSet<int> _ran = [];
    private readonly int _microbatches;

    /// <summary>Finds the starts of <paramref name="program"/> on this device's stages that can be issued
    /// early.</summary>
    public EarlyStarts(DeviceProgram program, Func<int, bool> mine, string mb, int microbatches)
    {
        _microbatches = microbatches;
        if (mb.Length == 0)
            return;
        var writer = new Dictionary<int, int>();
        for (int i = 0; i < program.Instructions.Count; i++)
            foreach (int w in DeviceProgram.Outputs(program.Instructions[i]))
                writer[w] = i;
        bool PerMicrobatch(int slot) =>
            writer.TryGetValue(slot, out int k)
            && program.Instructions[k] is { PerStep: false, Setup: false } producer
            && mine(producer.Stage);
        for (int i = 0; i < program.Instructions.Count; i++)
        {
            if (program.Instructions[i] is not StartInstr { PerStep: true } start || !mine(start.Stage))
                continue;
            var sums = start
                .Inputs.Select(s => writer.TryGetValue(s, out int k) ? k : -1)
                .Where(k =>
                    k >= 0
                    && program.Instructions[k]
                        is CollectiveInstr { Kind: CollectiveKind.AllReduce, Reduce: ReduceKind.Sum, PerStep: true } c
                    && c.Axes.Length == 1
                    && c.Axes[0] == mb
                    && PerMicrobatch(c.Input)
                )
                .Distinct()
                .ToList();
            if (sums.Count != start.Inputs.Distinct().Count())
                continue;
            _missing[i] = sums.Count;
            foreach (int k in sums)
            {
                var c = (CollectiveInstr)program.Instructions[k];
                _startOf[k] = i;
                if (!_sumsReading.TryGetValue(c.Input, out var list))
                    _sumsReading[c.Input] = list = [];
                list.Add(k);
            }
        }
    }

    /// <summary>A microbatch's task wrote <paramref name="slot"/>: once every microbatch has, the sums reading it are
    /// formed (<paramref name="formSum"/>) and a start whose inputs are then all formed is issued (<paramref
    /// name="start"/>).</summary>
    public void Produced(int slot, Action<int> formSum, Action<int> start)
    {
        if (!_sumsReading.TryGetValue(slot, out var sums))
            return;
        int count = _produced[slot] = _produced.GetValueOrDefault(slot) + 1;
        if (count != _microbatches)
            return;
        foreach (int k in sums)
        {
            formSum(k);
            _ran.Add(k);
        }
        foreach (int k in sums)
        {
            int i = _startOf[k];
            if (--_missing[i] == 0)
            {
                start(i);
                _ran.Add(i);
            }
        }
    }

    /// <summary>Whether the step's instruction <paramref name="i"/> already ran during the schedule.</summary>
    public bool Ran(int i) => _ran.Contains(i);
}
