using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>pipeline-schedule</c>: the last step of a pipelined program (after spmdize). It makes the per-device work
/// explicit: every op gets the stage that runs it (ops spmdize made take the latest stage of their operands; with
/// a single stage, no op carries one) and
/// its phase: forward (the default), <c>backward</c>, or <c>step</c> for what runs once per step after the
/// schedule on values summed over microbatches (a sum over the microbatch axis and everything that reads it:
/// the loss, the accumulated gradients, the optimizer). Each <c>pipe.transfer</c> becomes a <c>pipe.send</c> on its
/// source stage and a <c>pipe.recv</c> on its destination, paired by a channel; and a <c>pipe.schedule</c> op
/// lists the order of forward and backward microbatch tasks on every pipeline device. Zero-bubble schedules
/// (<c>zb-h1</c>, <c>zb-h2</c>) split each stage's backward: what the gradient sent to the previous stage needs
/// stays <c>backward</c> (B, on the critical path), the rest, which only feeds parameter gradients, becomes phase
/// <c>weight</c> (W), a task of its own that the schedule defers.
/// </summary>
public sealed class PipelineSchedule : IPass
{
    /// <inheritdoc/>
    public string Name => "pipeline-schedule";

    /// <inheritdoc/>
    public string Description =>
        "order each pipeline device's microbatch work and make transfers explicit sends and " + "receives";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (
            !module.IsSpmd()
            || module.EntryFunction() is not { } func
            || func.GetAttr("pipeline") is not DictAttr settings
        )
            return false;
        var entry = func.Regions[0].Entry;
        if (entry.Operations.Any(o => o.Name == "pipe.schedule"))
            return false;
        var s = settings.Entries.ToDictionary(e => e.Key, e => e.Value);
        string axis = ((StringAttr)s["axis"]).Value;
        string kind = s.GetValueOrDefault("schedule") is StringAttr k ? k.Value : "gpipe";
        int chunks = s.GetValueOrDefault("chunks") is IntAttr c ? (int)c.Value : 1;
        var mesh = module.DeviceMesh();
        string? mb = module.GetAttr("microbatch_axis") is StringAttr a ? a.Value : null;
        int m = mb == null ? 1 : mesh.Size(mb);
        int p = mesh.Size(axis);
        bool staged = entry.Operations.Any(o => o.GetAttr("stage") != null);
        // One stage (pp = 1): pipeline-stages cut nothing, and each microbatch's backward follows its forward
        // (gradient accumulation).
        if (!staged)
            chunks = 1;

        var phase = MarkStagesAndPhases(entry, mb);
        MakeSendsAndRecvs(entry, phase);
        bool training = phase.Values.Any(x => x == "backward");
        if (training && staged && Schedule.SplitsBackward(kind))
            SplitWeightGradients(entry, phase);
        List<PipelineTask>[] order;
        try
        {
            order = Schedule.Build(staged ? kind : "1f1b", staged ? p : 1, m, chunks, training);
        }
        catch (ArgumentException e)
        {
            throw new PassInputException(func.Location, $"@pipeline: {e.Message}");
        }
        var b = new Builder { Location = func.Location };
        if (entry.First is { } first)
            b.SetInsertionPointBefore(first);
        else
            b.SetInsertionPointToEnd(entry);
        b.Create(
            "pipe.schedule",
            [],
            [
                new("chunks", Attr.Int(chunks)),
                new("kind", Attr.Str(staged ? kind : "1f1b")),
                new("microbatches", Attr.Int(m)),
                new("order", new ArrayAttr(order.Select(l => (Attr)Attr.Strs(l.Select(t => t.Label(chunks)))))),
            ],
            []
        );
        return true;
    }

    /// <summary>
    /// Gives every op its stage and phase attributes and returns each op's phase. A step op may read values that
    /// are the same for every microbatch (parameters, constants) and values summed over microbatches, but not the
    /// value of a single microbatch: that would need the whole batch at once.
    /// </summary>
    private static Dictionary<Operation, string> MarkStagesAndPhases(Block entry, string? mb)
    {
        var phase = new Dictionary<Operation, string>(ReferenceEqualityComparer.Instance);
        // Values that differ between microbatches: the arguments and what is computed from them per microbatch.
        var perMicrobatch = new HashSet<Value>(entry.Arguments, ReferenceEqualityComparer.Instance);
        // A transfer's result lives on the stage it goes to (a reshard after it, made by spmdize, runs there).
        long StageOf(Value v) =>
            v.DefiningOp is { Name: "pipe.transfer" } t ? t.IntAttr("to")
            : v.DefiningOp?.GetAttr("stage") is IntAttr i ? i.Value
            : -1;
        foreach (var op in entry.Operations.ToList())
        {
            if (op.Name == "func.return")
                continue;
            if (op.GetAttr("stage") == null)
            {
                long st = op.Operands.Select(StageOf).DefaultIfEmpty(-1).Max();
                if (st >= 0)
                    op.SetAttr("stage", Attr.Int(st));
            }
            string Of(Value v) => v.DefiningOp is { } d ? phase.GetValueOrDefault(d, "forward") : "forward";
            bool sumsMicrobatches =
                mb != null && op.Dialect == "dist" && op.GetAttr("axes") is ArrayAttr ax && ax.AsStrings().Contains(mb);
            bool marked = op.GetAttr("phase") is StringAttr { Value: "step" };
            string ph =
                sumsMicrobatches || marked || op.Operands.Any(v => Of(v) == "step") ? "step"
                : op.GetAttr("phase") is StringAttr { Value: "backward" } || op.Operands.Any(v => Of(v) == "backward")
                    ? "backward"
                : "forward";
            if (
                ph == "step"
                && mb != null
                && !sumsMicrobatches
                && op.Operands.FirstOrDefault(perMicrobatch.Contains) is { } single
            )
                throw new PassInputException(
                    op.Location,
                    $"pipelining: {op.Name} reads '{single.NameHint ?? "a value"}' of a single microbatch together "
                        + $"with values summed over all of them; "
                        + "a pipelined model must keep microbatches independent until its loss"
                );
            // Forward work on nothing that differs between microbatches (a parameter read, gathered, converted or
            // transposed) runs once, before the schedule, and its result is kept for every microbatch.
            if (
                ph == "forward"
                && op.Dialect is "tensor" or "dist"
                && op.GetAttr("stage") != null
                && !op.Operands.Any(perMicrobatch.Contains)
                && op.Operands.All(v => v.DefiningOp is { Dialect: "tensor" or "dist" } d && d.GetAttr("stage") != null)
            )
                ph = "setup";
            phase[op] = ph;
            if (ph == "forward")
                op.SetAttr("phase", null);
            else
                op.SetAttr("phase", Attr.Str(ph));
            if (ph != "step" && op.Operands.Any(perMicrobatch.Contains))
                foreach (var r in op.Results)
                    perMicrobatch.Add(r);
        }
        return phase;
    }

    /// <summary>
    /// Splits the backward into B and W: a backward op stays B when it is a send (the gradient the previous stage
    /// waits for) or something a B op reads; every other backward op only leads to parameter gradients (summed over
    /// microbatches after the schedule) and becomes phase <c>weight</c>. B is closed under its operands, so a W task
    /// reads B's values and the forward's but never feeds B.
    /// </summary>
    private static void SplitWeightGradients(Block entry, Dictionary<Operation, string> phase)
    {
        var critical = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        foreach (var op in entry.Operations.Reverse())
        {
            if (phase.GetValueOrDefault(op) != "backward")
                continue;
            if (op.Name == "pipe.send" || op.Results.Any(r => r.Uses.Any(u => critical.Contains(u.Op))))
                critical.Add(op);
            else
            {
                phase[op] = "weight";
                op.SetAttr("phase", Attr.Str("weight"));
            }
        }
    }

    /// <summary>Each transfer becomes a send on its source stage and a receive on its destination, paired by a
    /// channel.</summary>
    private static void MakeSendsAndRecvs(Block entry, Dictionary<Operation, string> phase)
    {
        var b = new Builder();
        int channel = 0;
        foreach (var t in entry.Operations.Where(o => o.Name == "pipe.transfer").ToList())
        {
            b.SetInsertionPointBefore(t);
            b.Location = t.Location;
            long from = t.IntAttr("from"),
                to = t.IntAttr("to");
            string ph = phase[t];
            IEnumerable<KeyValuePair<string, Attr>> Attrs(long stage) =>
                new KeyValuePair<string, Attr>[]
                {
                    new("channel", Attr.Int(channel)),
                    new("from", Attr.Int(from)),
                    new("to", Attr.Int(to)),
                    new("stage", Attr.Int(stage)),
                }.Concat(ph == "forward" ? [] : [new KeyValuePair<string, Attr>("phase", Attr.Str(ph))]);
            phase[b.Create("pipe.send", [t.Operands[0]], Attrs(from), [])] = ph;
            var recv = b.Create("pipe.recv", [], Attrs(to), [t.Result.Type]);
            phase[recv] = ph;
            recv.Result.NameHint = t.Result.NameHint;
            t.Result.ReplaceAllUsesWith(recv.Result);
            phase.Remove(t);
            t.Erase();
            channel++;
        }
    }
}
