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
            a.Type = t.WithSharding(new Sharding(s.Dims.Select((d, k) => k == 0 ? d.Append(Axis) : d), s.Partial));
        }
        return true;
    }
}
