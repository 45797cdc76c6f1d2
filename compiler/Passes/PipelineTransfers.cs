using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>pipeline-transfers</c>: after stages are assigned (and the backward program and the update made), every
/// value one stage computes and another reads gets an explicit <c>pipe.transfer</c>: activations forward,
/// gradients backward, tied-weight gradients between the stages that share the weight. Ops the later passes
/// made without a stage take the latest stage of their operands (or, with none, of their first user).
/// </summary>
public sealed class PipelineTransfers : IPass
{
    /// <inheritdoc/>
    public string Name => "pipeline-transfers";

    /// <inheritdoc/>
    public string Description => "make every value crossing pipeline stages an explicit pipe.transfer";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.IsSpmd() || module.EntryFunction() is not { } func)
            return false;
        var entry = func.Regions[0].Entry;
        var ops = entry.Operations.ToList();
        if (!ops.Any(o => o.GetAttr("stage") != null) || ops.Any(o => o.Name == "pipe.transfer"))
            return false;
        long Stage(Value v) => v.DefiningOp?.GetAttr("stage") is IntAttr i ? i.Value : -1;
        foreach (var op in ops.Where(o => o.GetAttr("stage") == null && o.Name is not ("func.return")))
        {
            long s = op.Operands.Select(Stage).DefaultIfEmpty(-1).Max();
            if (s >= 0)
                op.SetAttr("stage", Attr.Int(s));
        }
        foreach (
            var op in Enumerable.Reverse(ops).Where(o => o.GetAttr("stage") == null && o.Name is not ("func.return"))
        )
        {
            var user = op
                .Results.SelectMany(r => r.Uses)
                .Select(u => u.Op)
                .FirstOrDefault(u => u.GetAttr("stage") != null);
            op.SetAttr("stage", Attr.Int(user == null ? 0 : user.IntAttr("stage")));
        }
        var made = new Dictionary<(Value, long), Value>();
        var b = new Builder();
        foreach (var op in ops)
        {
            long to = op.Name == "func.return" ? -1 : op.IntAttr("stage");
            for (int i = 0; i < op.Operands.Count; i++)
            {
                var v = op.Operands[i];
                long from = Stage(v);
                if (from < 0 || to < 0 || from == to)
                    continue;
                if (!made.TryGetValue((v, to), out var moved))
                {
                    b.SetInsertionPointBefore(v.DefiningOp!.Next!);
                    b.Location = op.Location;
                    moved = b.CreateValue(
                        "pipe.transfer",
                        [v],
                        [new("from", Attr.Int(from)), new("to", Attr.Int(to))],
                        v.Type
                    );
                    moved.NameHint = v.NameHint;
                    made[(v, to)] = moved;
                }
                op.SetOperand(i, moved);
            }
        }
        // The results come from the stage that computes them.
        func.SetAttr("result_stages", Attr.Ints(entry.Last!.Operands.Select(Stage)));
        return true;
    }
}
