using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>microbatch</c>: splits the batch of a <c>@pipeline</c> model into its <c>microbatches</c> through the
/// sharding machinery: the mesh gets an axis <c>mb</c> (module attribute <c>microbatch_axis</c>) of that size,
/// and every input's first dimension is split over it, minor to the axes already there. Propagation and
/// spmdize then give each op its microbatch shape, and whatever sums over the batch (the loss, every weight
/// gradient) becomes a partial sum over <c>mb</c> whose all_reduce is the accumulation over microbatches. The
/// runtime runs <c>mb</c> in time, not on devices: each device streams its microbatches in the schedule's order.
/// </summary>
public sealed class Microbatch : IPass
{
    /// <inheritdoc/>
    public string Name => "microbatch";

    /// <inheritdoc/>
    public string Description => "split the batch of a @pipeline model into microbatches over a time axis of the mesh";

    /// <summary>The mesh axis that stands for microbatches.</summary>
    public const string Axis = ModuleOp.MicrobatchAxis;

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (
            module.IsSpmd()
            || module.GetAttr("microbatch_axis") != null
            || module.EntryFunction() is not { } func
            || func.GetAttr("pipeline") is not DictAttr settings
        )
            return false;
        var m = settings.Entries.FirstOrDefault(e => e.Key == "microbatches").Value is IntAttr i ? i.Value : 1;
        if (m <= 1)
            return false;
        var mesh = module.Mesh() ?? throw new PassInputException(func.Location, "@pipeline needs a mesh");
        var axes = ((ArrayAttr)mesh.GetAttr("axes")!).AsStrings();
        if (axes.Contains(Axis))
            throw new PassInputException(mesh.Location, $"the mesh axis name '{Axis}' is reserved for microbatches");
        mesh.SetAttr("axes", Attr.Strs(axes.Append(Axis)));
        mesh.SetAttr("shape", Attr.Ints(mesh.IntsAttr("shape").Append(m)));
        module.SetAttr("microbatch_axis", Attr.Str(Axis));
        var full = module.DeviceMesh();
        foreach (var a in func.Regions[0].Entry.Arguments)
        {
            var t = a.TensorType;
            if (t.Rank == 0)
                continue;
            var s = t.Sharding ?? Sharding.Replicated(t.Rank);
            long split = full.Product(s.Dims[0]);
            if (t.Shape[0] % (split * m) != 0)
                throw new PassInputException(
                    func.Location,
                    $"@pipeline: the batch dimension of '{a.NameHint}' ({t.Shape[0]}"
                        + (split > 1 ? $", {t.Shape[0] / split} per device" : "")
                        + $") does not split into {m} microbatches"
                );
            a.Type = WithMicrobatches(a.TensorType.WithSharding(s));
        }
        SplitConstraints(func);
        return true;
    }

    private static TensorType WithMicrobatches(TensorType t) =>
        t.WithSharding(
            new Sharding(t.Sharding!.Dims.Select((d, k) => k == 0 ? d.Append(Axis) : d), t.Sharding.Partial)
        );

    /// <summary>
    /// A layout the program states for a value computed from the batch (a layer's argument or result annotated
    /// <c>shard[dp, tp, _]</c>, say) speaks of the whole batch: its first dimension, the batch, is split over the
    /// microbatches like the inputs are, or the constraint would gather them.
    /// </summary>
    private static void SplitConstraints(Operation func)
    {
        var entry = func.Regions[0].Entry;
        var batches = entry.Arguments.Where(a => a.TensorType.Rank > 0).Select(a => a.TensorType.Shape[0]).ToHashSet();
        var fromBatch = new HashSet<Value>(entry.Arguments, ReferenceEqualityComparer.Instance);
        foreach (var op in entry.Operations)
        {
            if (!op.Operands.Any(fromBatch.Contains))
                continue;
            foreach (var r in op.Results)
                fromBatch.Add(r);
            // A stated layout (a reshard's, or a pipeline transfer's) on a value of one microbatch: not the
            // optimizer's, whose values are summed over the batch.
            if (
                op.Name is not ("dist.reshard" or "pipe.transfer")
                || op.GetAttr("phase") is StringAttr { Value: "step" }
            )
                continue;
            foreach (var r in op.Results)
                if (
                    r.Type is TensorType { Rank: > 0, Sharding: { } s } t
                    && batches.Contains(t.Shape[0])
                    && !s.Dims.SelectMany(d => d).Contains(Axis)
                )
                    r.Type = WithMicrobatches(t);
        }
    }
}
