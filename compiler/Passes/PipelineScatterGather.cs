using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>pipeline-scatter-gather</c>: a microbatch's activation (or its gradient) that crosses pipeline stages while it
/// is replicated over other mesh axes (the tensor-parallel group holds it whole on every device) is sent in slices:
/// each device of the group sends its 1/n of it to its peer on the next stage, which gathers the slices inside its
/// group (Megatron-LM's scatter-gather of pipeline sends, Narayanan et al. 2021: the slow link between stages
/// carries 1/n of the bytes, the fast one inside the group the rest). In the global program: the transfer's operand
/// gets a <c>dist.reshard</c> to a layout split over those axes (spmdize makes it a local slice, no traffic), and
/// its result a reshard back (an all_gather). Runs after insert-reshards, before spmdize.
/// </summary>
public sealed class PipelineScatterGather : IPass
{
    /// <inheritdoc/>
    public string Name => "pipeline-scatter-gather";

    /// <inheritdoc/>
    public string Description =>
        "send replicated pipeline activations in slices over the replicating axes and gather them after";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (
            module.IsSpmd()
            || module.EntryFunction() is not { } func
            || func.GetAttr("pipeline") is not DictAttr settings
            || module.GetAttr("microbatch_axis") is not StringAttr mb
        )
            return false;
        string axis = ((StringAttr)settings.Entries.First(e => e.Key == "axis").Value).Value;
        var mesh = module.DeviceMesh();
        bool changed = false;
        var b = new Builder();
        foreach (var op in func.Regions[0].Entry.Operations.Where(o => o.Name == "pipe.transfer").ToList())
        {
            var t = op.Result.TensorType;
            // Per microbatch only (split over the microbatch axis): what the schedule sends again and again.
            if (t.Sharding is not { Partial.Count: 0 } s || !s.Axes.Contains(mb.Value))
                continue;
            var spare = mesh
                .AxisNames.Where(a => a != axis && a != mb.Value && mesh.Size(a) > 1 && !s.Axes.Contains(a))
                .ToList();
            if (spare.Count == 0 || Split(t, s, spare, mesh) is not { } sliced)
                continue;
            b.Location = op.Location;
            b.SetInsertionPointBefore(op);
            var operand = op.Operands[0];
            var scattered = b.CreateValue("dist.reshard", [operand], null, t.WithSharding(sliced));
            op.SetOperand(0, scattered);
            op.Result.Type = t.WithSharding(sliced);
            b.SetInsertionPointBefore(op.Next!);
            var gathered = b.CreateValue("dist.reshard", [op.Result], null, t);
            gathered.NameHint = op.Result.NameHint;
            foreach (var (user, index) in op.Result.Uses.ToArray())
                if (user != gathered.DefiningOp)
                    user.SetOperand(index, gathered);
            changed = true;
        }
        return changed;
    }

    /// <summary>The layout that adds <paramref name="axes"/> to the largest dimension they divide after the axes
    /// already on it (null when none does).</summary>
    private static Sharding? Split(TensorType t, Sharding s, IReadOnlyList<string> axes, DeviceMesh mesh)
    {
        long n = mesh.Product(axes);
        int best = -1;
        long bestLocal = 0;
        for (int d = 0; d < t.Rank; d++)
        {
            long local = t.Shape[d] / mesh.Product(s.Dims[d]);
            if (local % n == 0 && local > bestLocal)
                (best, bestLocal) = (d, local);
        }
        return best < 0 ? null : new Sharding(s.Dims.Select((dims, d) => d == best ? dims.Concat(axes) : dims));
    }
}
