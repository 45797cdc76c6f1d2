using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>autodiff</c>: reverse-mode differentiation of a training module (one with a <c>train</c> attribute). The
/// entry function's result is the scalar loss; the pass appends the backward program before the return: the
/// adjoint of every value is built op by op in reverse (<see cref="GradientRules"/>), adjoints of values used
/// several times are summed, and each parameter's gradient is marked with <c>train.grad %param, %g</c> for the
/// optimizer pass. Ops from a <c>@remat</c> layer are recomputed in the backward program where it needs them,
/// so their forward activations die early. Running it twice changes nothing.
/// </summary>
public sealed class Autodiff : IPass
{
    /// <inheritdoc/>
    public string Name => "autodiff";

    /// <inheritdoc/>
    public string Description => "append the backward program of the scalar loss and mark each parameter's gradient";

    /// <summary>Recompute @remat layers in the backward pass (off: keep their activations, to compare
    /// memory).</summary>
    [PassOption("remat", "recompute the activations of @remat layers in the backward pass")]
    public bool Remat { get; set; } = true;

    /// <summary>
    /// <c>@remat(first = k)</c> (the module's <c>remat_first</c>: k per instance group, such as <c>gpt.block</c>):
    /// of a group's instances (<c>gpt.block.0</c>, <c>gpt.block.1</c>, ...) only the first k of each pipeline stage
    /// (the first k of the program without stages) stay recomputed; the others' ops lose their <c>remat</c>, so
    /// their activations are kept. Earlier instances of a stage are the ones to recompute: under 1F1B their
    /// activations wait longest for the backward.
    /// </summary>
    private static void SelectRecomputedInstances(Operation module, Block entry)
    {
        if (module.GetAttr("remat_first") is not DictAttr counts)
            return;
        var instances = new Dictionary<string, (string Group, long Stage, List<Operation> Ops)>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var op in entry.Operations)
        {
            if (op.GetAttr("remat") is not StringAttr { Value: var path })
                continue;
            int dot = path.LastIndexOf('.');
            string group = dot > 0 && path[(dot + 1)..].All(char.IsAsciiDigit) ? path[..dot] : path;
            if (counts.Get(group) is not IntAttr)
                continue;
            if (!instances.TryGetValue(path, out var inst))
            {
                inst = (group, long.MaxValue, []);
                order.Add(path);
            }
            long stage = op.GetAttr("stage") is IntAttr st ? st.Value : long.MaxValue;
            inst.Ops.Add(op);
            instances[path] = (group, Math.Min(inst.Stage, stage), inst.Ops);
        }
        var kept = new Dictionary<(string, long), long>();
        foreach (var path in order)
        {
            var (group, stage, ops) = instances[path];
            long n = kept.GetValueOrDefault((group, stage));
            kept[(group, stage)] = n + 1;
            if (n >= ((IntAttr)counts.Get(group)!).Value)
                foreach (var op in ops)
                    op.SetAttr("remat", null);
        }
    }

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.GetAttr("train") is not DictAttr || module.IsSpmd())
            return false;
        var func = module.EntryFunction() ?? throw new IRException("autodiff: the module has no entry function");
        var entry = func.Regions[0].Entry;
        if (entry.Operations.Any(o => o.Dialect == "train"))
            return false;
        var ret = entry.Last!;
        if (
            ret.Operands.Count != 1
            || ret.Operands[0].TensorType is not { Rank: 0 } lossType
            || !lossType.DType.IsFloat()
        )
            throw new PassInputException(
                func.Location,
                $"train: @{func.StringAttr("sym_name")} must return one float scalar (the loss), it returns "
                    + $"{string.Join(", ", ret.Operands.Select(o => o.TensorType.ToSourceString()))}"
            );
        SelectRecomputedInstances(module, entry);
        var b = new Builder { Location = func.Location };
        b.SetInsertionPointBefore(ret);
        var rules = new GradientRules(b, Remat);
        var forward = entry.Operations.TakeWhile(o => o != ret).ToList();
        var beforeSeed = ret.Prev;
        var seed = b.CreateValue("tensor.constant", [], [new("value", Attr.Float(1.0))], lossType.WithSharding(null));
        if (MixedPrecision.HalfType(module) == DType.F16)
            seed = Optimizer.LossScaleSeed(b, seed); // fp16: the backward starts at the loss scale
        // A pipelined program (staged or not) marks its backward, so that the schedule and the cost model tell it
        // from the forward.
        bool pipelined = func.GetAttr("pipeline") != null;
        var lossStage = ret.Operands[0].DefiningOp?.GetAttr("stage");
        for (var o = beforeSeed?.Next ?? entry.First!; o != ret; o = o.Next!)
        {
            if (lossStage != null)
                o.SetAttr("stage", lossStage);
            if ((lossStage != null || pipelined) && o.Name != "tensor.param")
                o.SetAttr("phase", Attr.Str("backward"));
        }
        var adjoint = new Dictionary<Value, Value>(ReferenceEqualityComparer.Instance) { [ret.Operands[0]] = seed };
        for (int k = forward.Count - 1; k >= 0; k--)
        {
            var op = forward[k];
            if (op.Results.Count != 1 || !adjoint.TryGetValue(op.Result, out var dy))
                continue;
            b.Location = op.Location;
            var before = ret.Prev;
            var grads = rules.Backward(op, dy);
            for (int i = 0; i < op.Operands.Count; i++)
            {
                if (grads[i] is not { } g || !op.Operands[i].TensorType.DType.IsFloat())
                    continue;
                var v = op.Operands[i];
                adjoint[v] = adjoint.TryGetValue(v, out var acc) ? b.CreateValue("tensor.add", [acc, g]) : g;
            }
            // A pipelined program's backward work runs on the stage of the forward op it differentiates.
            var stage = op.GetAttr("stage");
            if (stage != null || pipelined)
                for (var o = before?.Next ?? entry.First; o != null && o != ret; o = o.Next)
                {
                    if (stage != null && o.GetAttr("stage") is null && o.Dialect != "pipe")
                        o.SetAttr("stage", stage);
                    o.SetAttr("phase", Attr.Str("backward")); // the schedule runs it in a backward slot
                }
        }
        foreach (var p in forward.Where(o => o.Name == "tensor.param"))
            if (adjoint.TryGetValue(p.Result, out var g))
            {
                b.Location = p.Location;
                g.NameHint ??= $"{p.StringAttr("path")}.grad";
                var mark = b.Create("train.grad", [p.Result, g]);
                if (p.GetAttr("stage") is { } stage)
                    mark.SetAttr("stage", stage);
            }
        return true;
    }
}
