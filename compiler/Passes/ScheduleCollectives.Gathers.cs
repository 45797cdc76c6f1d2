using ParallelCompiler.Dialects.Dist;
using ParallelCompiler.IR;

namespace ParallelCompiler.Passes;

public sealed partial class ScheduleCollectives
{
    /// <summary>
    /// ZeRO-3 parameters (a <c>tensor.param</c> with <c>zero = 3</c>, stored split over the data-parallel axis): every
    /// op that reads the gathered weight gets its own copy, gathered just before it and freed after it, instead of one
    /// gather held for the whole step. What is copied is the weight's chain: the ops from the parameter that read
    /// nothing else (its all-gather, a transpose or conversion of the gathered weight), which a pipeline would run
    /// once before its schedule. Each copy takes its reader's stage and phase, so a pipeline gathers in every
    /// microbatch's forward and again in its backward, as ZeRO-3 does; with <paramref name="prefetch"/>, each is
    /// started one gather ahead (<see cref="PrefetchGathers"/>).
    /// </summary>
    private static bool GatherAtEachUse(Block block, bool prefetch)
    {
        var chain = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        foreach (var op in block.Operations)
        {
            bool fromParam = IsZeroThreeGather(op);
            bool onChain =
                op.Results.Count == 1
                && op.Def is { IsPure: true }
                && op.Dialect is "tensor" or "dist"
                && op.Name != "tensor.param"
                && op.Operands.Count > 0
                && op.Operands.Any(v => v.DefiningOp is { } d && chain.Contains(d))
                && op.Operands.All(v => v.DefiningOp is { } d && (chain.Contains(d) || d.Name == "tensor.constant"))
                && op.GetAttr("phase") is null or StringAttr { Value: "setup" };
            if (fromParam || onChain)
                chain.Add(op);
        }
        if (chain.Count == 0)
            return false;
        var b = new Builder();
        var users = block
            .Operations.Where(o =>
                !chain.Contains(o) && o.Operands.Any(v => v.DefiningOp is { } d && chain.Contains(d))
            )
            .ToList();
        foreach (var user in users)
        {
            b.SetInsertionPointBefore(user);
            b.Location = user.Location;
            var place = user.Attributes.Where(a => a.Key is "stage" or "phase").ToList();
            var copies = new Dictionary<Value, Value>(ReferenceEqualityComparer.Instance);
            Value Copy(Value v)
            {
                var d = v.DefiningOp!;
                if (!chain.Contains(d))
                    return v;
                if (copies.TryGetValue(v, out var have))
                    return have;
                var operands = d.Operands.Select(Copy).ToList();
                var attrs = d.Attributes.Where(a => a.Key is not ("stage" or "phase")).Concat(place);
                var copy = b.Create(d.Name, operands, attrs, [v.Type]).Result;
                copy.NameHint = v.NameHint;
                return copies[v] = copy;
            }
            for (int i = 0; i < user.Operands.Count; i++)
                if (user.Operands[i].DefiningOp is { } d && chain.Contains(d))
                    user.SetOperand(i, Copy(user.Operands[i]));
        }
        foreach (var op in block.Operations.Reverse().Where(chain.Contains).ToList())
            if (op.Results.All(r => !r.HasUses))
                op.Erase();
        if (prefetch)
            PrefetchGathers(block);
        return true;
    }

    private static bool IsZeroThreeGather(Operation op) =>
        op.Name == "dist.all_gather"
        && op.Operands[0].DefiningOp is { Name: "tensor.param" } p
        && p.GetAttr("zero") is IntAttr { Value: 3 };

    /// <summary>
    /// Each ZeRO-3 gather becomes a <c>dist.all_gather_start</c> and a <c>dist.wait</c>: the wait where the gather
    /// was (just before its reader), the start just after the wait of the previous gather of the same task (stage and
    /// phase), or before the task's first op, so that the next weight is gathered while this one is used, as ZeRO-3
    /// and FSDP prefetch. A task then holds at most two gathered weights at a time, the one in use and the next.
    /// </summary>
    private static void PrefetchGathers(Block block)
    {
        var ops = block.Operations.ToList();
        var position = new Dictionary<Operation, int>(ReferenceEqualityComparer.Instance);
        var firstOfTask = new Dictionary<(long, string), Operation>();
        for (int i = 0; i < ops.Count; i++)
        {
            position[ops[i]] = i;
            firstOfTask.TryAdd(TaskOf(ops[i]), ops[i]);
        }
        var lastWait = new Dictionary<(long, string), (Operation Wait, int At)>();
        var b = new Builder();
        foreach (var gather in ops.Where(IsZeroThreeGather))
        {
            var task = TaskOf(gather);
            // A gathered weight that another collective reads first (sequence parallelism at small sizes gathers
            // some over tp as well) stays blocking: a collective reading what one started before it on the same
            // stream writes is ordered on a GPU, but not in the CUDA stand-in the GPU path is tested on.
            if (gather.Result.Uses.Any(u => u.Op.Dialect == "dist"))
            {
                lastWait[task] = (gather, position[gather]);
                continue;
            }
            var param = gather.Operands[0].DefiningOp!;
            var (anchor, at) = lastWait.TryGetValue(task, out var last)
                ? (last.Wait.Next!, last.At)
                : (firstOfTask[task], position[firstOfTask[task]] - 1);
            // Never before the parameter it reads.
            b.SetInsertionPointBefore(at < position[param] ? param.Next! : anchor);
            b.Location = gather.Location;
            var start = b.Create(
                AllGatherStartOpDef.OpName,
                [gather.Operands[0]],
                gather.Attributes,
                [gather.Result.Type]
            );
            b.SetInsertionPointBefore(gather);
            var place = gather.Attributes.Where(a => a.Key is "stage" or "phase");
            var wait = b.Create(WaitOpDef.OpName, [start.Result], place, [gather.Result.Type]);
            wait.Result.NameHint = gather.Result.NameHint;
            gather.Result.ReplaceAllUsesWith(wait.Result);
            gather.Erase();
            lastWait[task] = (wait, position[gather]);
        }
    }
}
