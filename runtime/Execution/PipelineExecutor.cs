using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>
/// Runs a microbatched (and possibly pipelined) <see cref="DeviceProgram"/> on one device. The microbatch axis
/// is run in time: every microbatch has its own slots, and the device works through the tasks its schedule
/// gives it (forward or backward of one microbatch on one of its stages), each running that stage's
/// instructions of that phase; transfers are blocking sends and receives tagged by instruction and microbatch.
/// What sums over the microbatch axis (an all_reduce naming it: the loss, every gradient) and what depends on
/// it (the optimizer update) runs once after the schedule, on the sum of the microbatches' values.
/// </summary>
public static class PipelineExecutor
{
    /// <summary>
    /// Runs the program; <paramref name="inputs"/>[j] are microbatch j's argument blocks. Returns, per result, the
    /// value of each microbatch (the same array for all when it is summed over them; null on devices of other stages).
    /// </summary>
    public static NDArray?[][] Run(DeviceProgram program, IDevice device, ICommunicator comm, IReadOnlyList<IReadOnlyList<NDArray>> inputs,
        Func<string, NDArray> parameter, Action<string, NDArray>? update, Action<PipelineTask, int, double, double>? trace = null)
    {
        int m = program.Microbatches, n = program.Instructions.Count;
        string mb = program.MicrobatchAxis ?? "";
        int p = 1, me = 0;
        if (program.PipelineAxis is { } axis)
        {
            p = comm.Mesh.Size(axis);
            me = comm.Mesh.Coords(comm.Rank)[comm.Mesh.AxisNames.ToList().IndexOf(axis)];
        }
        bool Mine(int stage) => stage < 0 || stage % p == me;
        // After the schedule: collectives over the microbatch axis and everything that reads their results.
        var flush = new bool[n];
        var flushSlot = new bool[program.NumSlots];
        for (int i = 0; i < n; i++)
        {
            var ins = program.Instructions[i];
            flush[i] = ins is CollectiveInstr c && c.Axes.Contains(mb) || DeviceProgram.Reads(ins).Any(s => flushSlot[s]);
            if (flush[i]) foreach (int s in Writes(ins)) flushSlot[s] = true;
        }
        var env = Enumerable.Range(0, m).Select(_ => new NDArray?[program.NumSlots]).ToArray();
        bool training = program.Instructions.Any(i => i.Backward);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        void RunRange(Func<int, Instruction, bool> take, NDArray?[] slots, int microbatch)
        {
            for (int i = 0; i < n; i++)
            {
                var ins = program.Instructions[i];
                if (flush[i] || !take(i, ins)) continue;
                var site = new CollectiveSite(ins.Op, ins.Where, i);
                if (ins is TransferInstr t)
                {
                    int tag = i * m + microbatch;
                    if (Mine(t.From) && Mine(t.To)) slots[t.Output] = slots[t.Input];
                    else if (Mine(t.From)) comm.Send(slots[t.Input]!, Peer(comm, program.PipelineAxis!, t.To % p), site, tag);
                    else if (Mine(t.To)) slots[t.Output] = comm.Recv(Peer(comm, program.PipelineAxis!, t.From % p), t.DType, t.Shape, site, tag);
                    continue;
                }
                Executor.Step(ins, slots, site, device, comm, inputs[microbatch], parameter, update);
            }
        }
        // Work every stage needs and no schedule slot owns (inputs, stage-less constants): once per microbatch, up front.
        for (int j = 0; j < m; j++) RunRange((_, ins) => ins.Stage < 0 && ins is not TransferInstr, env[j], j);
        var tasks = Schedule.Build(program.PipelineAxis == null ? "gpipe" : program.ScheduleKind, p, m, program.Chunks, training)[me];
        foreach (var task in tasks)
        {
            int stage = task.Chunk * p + me;
            bool backward = task.Phase == Phase.Backward;
            double start = clock.Elapsed.TotalMilliseconds;
            RunRange((_, ins) => ins.Backward == backward && (ins is TransferInstr t ? t.From == stage || t.To == stage : ins.Stage == stage),
                env[task.Microbatch], task.Microbatch);
            trace?.Invoke(task, stage, start, clock.Elapsed.TotalMilliseconds);
        }
        // The flush: sums over microbatches, then the rest of the collective over real axes, then what follows.
        var after = new NDArray?[program.NumSlots];
        NDArray? Read(int slot) => flushSlot[slot] ? after[slot] : env[0][slot];
        for (int i = 0; i < n; i++)
        {
            var ins = program.Instructions[i];
            if (!flush[i]) continue;
            var site = new CollectiveSite(ins.Op, ins.Where, i);
            if (ins is TransferInstr t)
            {
                // Tied weights: one stage's summed gradient goes to the other stages that hold the weight.
                if (Mine(t.From) && Mine(t.To)) after[t.Output] = Read(t.Input);
                else if (Mine(t.From)) comm.Send(Read(t.Input)!, Peer(comm, program.PipelineAxis!, t.To % p), site, i * m);
                else if (Mine(t.To)) after[t.Output] = comm.Recv(Peer(comm, program.PipelineAxis!, t.From % p), t.DType, t.Shape, site, i * m);
                continue;
            }
            if (!Mine(ins.Stage)) continue;
            if (ins is CollectiveInstr c && c.Axes.Contains(mb))
            {
                if (c.Kind != CollectiveKind.AllReduce || c.Reduce != ReduceKind.Sum)
                    throw new ExecutionException($"step {i}, {c.Op}: over the microbatch axis only a sum (all_reduce) can be formed; the op needs the whole batch at once");
                var parts = env.Select(e => e[c.Input]).Where(x => x != null).Cast<NDArray>().ToArray();
                var sum = ArrayOps.Sum(parts);
                var rest = c.Axes.Where(a => a != mb).ToArray();
                after[c.Output] = rest.Length == 0 ? sum : comm.AllReduce(sum, rest, ReduceKind.Sum, site);
                continue;
            }
            var view = new NDArray?[program.NumSlots];
            foreach (int s in DeviceProgram.Reads(ins)) view[s] = Read(s);
            Executor.Step(ins, view, site, device, comm, inputs[0], parameter, update);
            foreach (int s in Writes(ins)) after[s] = view[s];
        }
        return program.Results.Select(s => flushSlot[s]
            ? Enumerable.Repeat(after[s], m).ToArray()
            : env.Select(e => e[s]).ToArray()).ToArray();
    }

    private static IEnumerable<int> Writes(Instruction i) => i switch
    {
        InputInstr x => [x.Output],
        ParamInstr x => [x.Output],
        LaunchInstr x => [x.Output],
        CollectiveInstr x => [x.Output],
        RecvInstr x => [x.Output],
        TransferInstr x => [x.Output],
        _ => [],
    };

    private static int Peer(ICommunicator comm, string axis, int coordinate)
    {
        var coords = comm.Mesh.Coords(comm.Rank);
        coords[comm.Mesh.AxisNames.ToList().IndexOf(axis)] = coordinate;
        return comm.Mesh.RankOf(coords);
    }
}
