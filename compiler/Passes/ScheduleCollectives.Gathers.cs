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
    /// microbatch's forward and again in its backward, as ZeRO-3 does.
    /// </summary>
    private static bool GatherAtEachUse(Block block)
    {
        var chain = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        foreach (var op in block.Operations)
        {
            bool fromParam =
                op.Name == "dist.all_gather"
                && op.Operands[0].DefiningOp is { Name: "tensor.param" } p
                && p.GetAttr("zero") is IntAttr { Value: 3 };
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
        return true;
    }
}
