using ParallelCompiler.Dialects.Pipe;
using ParallelCompiler.IR;

namespace ParallelCompiler.Passes;

public sealed partial class ScheduleCollectives
{
    /// <summary>
    /// Pipeline transfers as start/wait pairs. A <c>pipe.send</c> becomes a <c>pipe.send_start</c> where it was,
    /// which returns at once, and a <c>pipe.wait</c> after the last op of its task (its stage and phase), until which
    /// the sent value stays alive. A <c>pipe.recv</c> becomes a <c>pipe.recv_start</c> where it was and a
    /// <c>pipe.wait</c> just before the first op that reads the value; the task's later pure ops that do not read it
    /// (through others) move before the wait, so that they run while the value is on its way (the transposed weights
    /// and saved activations a backward reads, what a forward computes from parameters alone). A recomputed op stays:
    /// moved, its activations would be held from before the wait, which recomputation is there to avoid.
    /// </summary>
    private static bool StartTransfers(Block block)
    {
        var transfers = block.Operations.Where(o => o.Name is "pipe.send" or "pipe.recv").ToList();
        if (transfers.Count == 0)
            return false;
        var b = new Builder();
        foreach (var op in transfers)
        {
            b.SetInsertionPointBefore(op);
            b.Location = op.Location;
            var task = TaskOf(op);
            var taskAttrs = op.Attributes.Where(a => a.Key is "stage" or "phase").ToList();
            if (op.Name == "pipe.send")
            {
                var start = b.Create("pipe.send_start", [op.Operands[0]], op.Attributes, [op.OperandType(0)]);
                var last = start;
                for (var o = start.Next; o != null; o = o.Next)
                    if (TaskOf(o) == task)
                        last = o;
                if (last.Next is { } after)
                    b.SetInsertionPointBefore(after);
                else
                    b.SetInsertionPointToEnd(block);
                b.Create(WaitOpDef.OpName, [start.Result], taskAttrs, []);
                op.Erase();
                continue;
            }
            var recv = b.Create("pipe.recv_start", [], op.Attributes, [op.Result.Type]);
            var first = FirstUser(op);
            if (first != null)
            {
                Hoist(first, op.Result, task);
                b.SetInsertionPointBefore(first);
            }
            var wait = b.Create(WaitOpDef.OpName, [recv.Result], taskAttrs, [op.Result.Type]);
            wait.Result.NameHint = op.Result.NameHint;
            op.Result.ReplaceAllUsesWith(wait.Result);
            op.Erase();
        }
        return true;
    }

    // An op's task: its stage and phase (a forward op carries no phase).
    private static (long Stage, string Phase) TaskOf(Operation op) =>
        (op.GetAttr("stage") is IntAttr s ? s.Value : -1, op.GetAttr("phase") is StringAttr p ? p.Value : "forward");

    // The first op in the block after `op` that reads its result.
    private static Operation? FirstUser(Operation op)
    {
        var users = op.Result.Uses.Select(u => u.Op).ToHashSet(ReferenceEqualityComparer.Instance);
        for (var o = op.Next; o != null; o = o.Next)
            if (users.Contains(o))
                return o;
        return null;
    }

    // Moves before `first` every later pure tensor op of `task` (not a recomputed one) that does not read `value`
    // through others and whose operands are all defined before `first` or by ops moved with it (in their order, so
    // each still follows what it reads).
    private static void Hoist(Operation first, Value value, (long, string) task)
    {
        var reads = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        var later = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        var moved = new List<Operation>();
        for (var o = first; o != null; o = o.Next)
        {
            bool readsValue = o.Operands.Any(v =>
                ReferenceEquals(v, value) || v.DefiningOp is { } d && reads.Contains(d)
            );
            bool readsLater = o.Operands.Any(v => v.DefiningOp is { } d && later.Contains(d));
            if (
                !readsValue
                && !readsLater
                && o.Dialect == "tensor"
                && o.Def is { IsPure: true }
                && o.Regions.Count == 0
                && o.GetAttr("recompute") == null
                && TaskOf(o) == task
            )
                moved.Add(o);
            else if (readsValue)
                reads.Add(o);
            else
                later.Add(o);
        }
        foreach (var o in moved)
            o.MoveBefore(first);
    }
}
