using ParallelCompiler.Dialects.Train;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>optimizer</c>: replaces each <c>train.grad %param, %g</c> with the update the module's <c>train</c> attribute
/// asks for, as ordinary tensor ops ending in <c>train.update</c>. Optimizer state is read as parameters with
/// documented paths: <c>PATH.momentum</c> (sgd with momentum), <c>PATH.adam_m</c>, <c>PATH.adam_v</c> and the
/// step count <c>optimizer.step</c> (adam), all starting at zero. With <c>zero=1</c> the state is split over the
/// data-parallel axis (ZeRO stage 1): propagation then reduce-scatters the gradients, updates each shard and
/// all-gathers the parameters, with no other change here. With <c>zero=2</c> the module's <c>zero</c> attribute tells
/// spmdize to reduce-scatter each microbatch's gradient before the sum over microbatches (which then adds shards,
/// not whole gradients); without microbatches that is stage 1. With <c>zero=3</c> the parameters themselves are also
/// stored split over the axis (ZeRO stage 3): each is read through a <c>dist.reshard</c> to the layout it was
/// declared with, which becomes an all-gather, and <c>schedule-collectives</c> gives every use its own gather, freed
/// after it. Gradient synchronisation needs nothing either: a
/// gradient summed over a split batch is a partial sum that insert-reshards reduces where the update needs it.
/// </summary>
public sealed partial class Optimizer : IPass
{
    /// <inheritdoc/>
    public string Name => "optimizer";

    /// <inheritdoc/>
    public string Description =>
        "turn each parameter's gradient into the optimizer's update of the parameter and its " + "state";

    /// <summary>ZeRO stage: 0 (state laid out like its parameter), 1 (state split over the data-parallel axis), 2
    /// (gradients too: each microbatch's is reduce-scattered before the sum over microbatches) or 3 (the parameters
    /// too, gathered at each use).</summary>
    [PassOption(
        "zero",
        "ZeRO stage: 0, 1 (optimizer state split over the data-parallel axis), 2 (gradients too), 3 (parameters too)"
    )]
    public int Zero { get; set; }

    /// <summary>The data-parallel mesh axis for ZeRO; empty: the axis the entry's first argument splits its first
    /// dimension over.</summary>
    [PassOption("axis", "the data-parallel mesh axis for zero=1 (default: the one splitting the first input's batch)")]
    public string Axis { get; set; } = "";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (Zero is not (0 or 1 or 2 or 3))
            throw new PassInputException(module.Location, $"optimizer: zero must be 0, 1, 2 or 3, got {Zero}");
        if (module.GetAttr("train") is not DictAttr train || module.IsSpmd())
            return false;
        var func = module.EntryFunction()!;
        var entry = func.Regions[0].Entry;
        var grads = entry.Operations.Where(o => o.Name == "train.grad").ToList();
        if (grads.Count == 0)
            return false;
        string zeroAxis = Zero > 0 ? DataParallelAxis(module, func) : "";
        var s = train.Entries.ToDictionary(e => e.Key, e => e.Value);
        double F(string key) =>
            s.GetValueOrDefault(key) switch
            {
                FloatAttr f => f.Value,
                IntAttr i => i.Value,
                _ => 0.0,
            };
        string kind = s.GetValueOrDefault("optimizer") is StringAttr k
            ? k.Value
            : throw new IRException("optimizer: the train attribute names no optimizer");
        var b = new Builder();
        b.SetInsertionPointBefore(entry.Last!);
        var existing = new HashSet<Operation>(entry.Operations, ReferenceEqualityComparer.Instance);
        var mesh = module.DeviceMesh();
        var u = new UpdateBuilder(b, mesh, zeroAxis);
        if (Zero >= 2)
            module.SetAttr("zero", Attr.Int(Zero));
        if (Zero == 3)
            foreach (var p in grads.Select(g => g.Operands[0]).Distinct())
                StoreSplit(p, mesh, zeroAxis);
        Value? step = null;
        if (kind == "adam")
        {
            // The step count is shared by all parameters: t = step + 1, and beta^t = exp(t ln beta).
            var stepParam = u.State("optimizer.step", TensorType.Scalar(DType.F32), null);
            step = u.AddC(stepParam, 1);
            b.Create("train.update", [stepParam, step]);
        }
        bool pipelined = grads.Any(g => g.GetAttr("stage") != null);
        if (pipelined)
            for (var o = entry.First; o != null; o = o.Next)
                if (
                    o.GetAttr("stage") == null
                    && o.Name is "tensor.param" or "tensor.constant" or "tensor.add" or "train.update"
                )
                    o.SetAttr("stage", Attr.Int(0));
        // A weight tied between pipeline stages has a copy (and a gradient) per stage; each copy takes the sum.
        var byPath = grads
            .GroupBy(ParameterEffectOpDef.PathOf)
            .ToDictionary(g => g.Key, g => g.Select(x => x.Operands[1]).ToList());
        // Each parameter's whole gradient: tied copies summed; with fp16 loss scaling, unscaled.
        var scaling = MixedPrecision.HalfType(module) == DType.F16 ? new LossScaling(u, b, entry) : null;
        var whole = new Dictionary<Operation, Value>(ReferenceEqualityComparer.Instance);
        foreach (var g in grads)
        {
            b.Location = g.Location;
            var before = entry.Last!.Prev;
            var own = g.Operands[1];
            var grad = own;
            foreach (var other in byPath[ParameterEffectOpDef.PathOf(g)].Where(o => !ReferenceEquals(o, own)))
                grad = u.Add(grad, other);
            whole[g] = scaling?.Unscale(grad) ?? grad;
            MarkStage(g, before, entry);
        }
        var finite = scaling?.AllFinite(pipelined);
        foreach (var g in grads)
        {
            var p = g.Operands[0];
            b.Location = g.Location;
            string path = ParameterEffectOpDef.PathOf(g);
            var before = entry.Last!.Prev;
            var grad = u.Stored(scaling?.Sanitize(whole[g]) ?? whole[g], p);
            switch (kind)
            {
                case "sgd":
                    double lr = F("lr"),
                        momentum = F("momentum"),
                        wd = F("weight_decay");
                    if (wd != 0)
                        grad = u.Add(grad, u.MulC(p, wd));
                    if (momentum != 0)
                    {
                        var buf = u.State($"{path}.momentum", p.TensorType, p.TensorType.Sharding);
                        grad = u.Add(u.MulC(buf, momentum), grad);
                        b.Create("train.update", [buf, grad]);
                    }
                    b.Create("train.update", [p, u.Sub(p, u.MulC(grad, lr))]);
                    break;
                case "adam":
                    double b1 = F("beta1"),
                        b2 = F("beta2"),
                        eps = F("eps");
                    var m = u.State($"{path}.adam_m", p.TensorType, p.TensorType.Sharding);
                    var v = u.State($"{path}.adam_v", p.TensorType, p.TensorType.Sharding);
                    var m2 = u.Add(u.MulC(m, b1), u.MulC(grad, 1 - b1));
                    var v2 = u.Add(u.MulC(v, b2), u.MulC(u.Mul(grad, grad), 1 - b2));
                    b.Create("train.update", [m, m2]);
                    b.Create("train.update", [v, v2]);
                    // Bias-corrected moments: m / (1 - b1^t), v / (1 - b2^t); p -= lr * mhat / (sqrt(vhat) + eps).
                    // The step count is f32 whatever the parameters are (bf16 counts exactly only to 256).
                    var corr1 = u.As(u.RSubC(1, u.Exp(u.MulC(step!, Math.Log(b1)))), m2);
                    var corr2 = u.As(u.RSubC(1, u.Exp(u.MulC(step!, Math.Log(b2)))), v2);
                    var mhat = u.Div(m2, corr1);
                    var denom = u.AddC(u.Sqrt(u.Div(v2, corr2)), eps);
                    b.Create("train.update", [p, u.Sub(p, u.MulC(u.Div(mhat, denom), F("lr")))]);
                    break;
                default:
                    throw new IRException($"optimizer: unknown optimizer '{kind}'");
            }
            MarkStage(g, before, entry);
            g.Erase();
        }
        // An fp16 step that overflowed changes no parameter or state; the loss scale follows.
        if (scaling != null)
            scaling.Update(finite!, existing, pipelined);
        // In a pipelined program the update runs once a step, after every microbatch: marked so even when one
        // microbatch makes nothing a sum over them (the schedule and the cost model read the phase).
        if (func.GetAttr("pipeline") != null)
            foreach (var o in entry.Operations.Where(o => !existing.Contains(o)))
                if (o.Operands.Count > 0 && o.GetAttr("phase") == null)
                    o.SetAttr("phase", Attr.Str("step"));
        return true;
    }

    /// <summary>ZeRO-3: <paramref name="p"/> is stored split over <paramref name="axis"/> as its state is, and every
    /// op that read it reads it through a reshard to its declared layout (one here; schedule-collectives gives each
    /// use its own gather once the program is per-device). A parameter no dimension of which the axis divides stays
    /// whole.</summary>
    private static void StoreSplit(Value p, DeviceMesh mesh, string axis)
    {
        var declared = p.TensorType.WithSharding(p.TensorType.Sharding ?? Sharding.Replicated(p.TensorType.Rank));
        var stored = SplitOver(declared, declared.Sharding, mesh, axis);
        if (stored == null || p.DefiningOp is not { } param)
            return;
        var uses = p.Uses.Select(x => x.Op).Distinct().ToList();
        p.Type = declared.WithSharding(stored);
        param.SetAttr("zero", Attr.Int(3));
        var b = new Builder { Location = param.Location };
        if (param.Next is { } next)
            b.SetInsertionPointBefore(next);
        else
            b.SetInsertionPointToEnd(param.Block!);
        var whole = b.Create(
            "dist.reshard",
            [p],
            param.GetAttr("stage") is { } st ? [new("stage", st)] : [],
            [declared]
        );
        whole.Result.NameHint = p.NameHint;
        foreach (var user in uses)
            if (user.Name != "train.grad")
                for (int i = 0; i < user.Operands.Count; i++)
                    if (ReferenceEquals(user.Operands[i], p))
                        user.SetOperand(i, whole.Result);
    }

    /// <summary><paramref name="sharding"/> with <paramref name="axis"/> added as the minor split of the first
    /// dimension of <paramref name="type"/> it divides; null when the axis is in it already or divides none.</summary>
    private static Sharding? SplitOver(TensorType type, Sharding? sharding, DeviceMesh mesh, string axis)
    {
        sharding ??= Sharding.Replicated(type.Rank);
        if (type.Rank == 0 || sharding.Axes.Contains(axis))
            return null;
        var dims = sharding.Dims.Select(d => d.ToList()).ToArray();
        for (int d = 0; d < dims.Length; d++)
            if (type.Shape[d] % (mesh.Product(dims[d]) * mesh.Size(axis)) == 0)
            {
                dims[d].Add(axis);
                return new Sharding(dims, sharding.Partial);
            }
        return null;
    }

    /// <summary>The ops after <paramref name="before"/> run on <paramref name="g"/>'s pipeline stage.</summary>
    private static void MarkStage(Operation g, Operation? before, Block entry) =>
        SetStage(g.GetAttr("stage"), before, entry.Last!);

    /// <summary>The ops after <paramref name="before"/> (from the block's first when null) and before <paramref
    /// name="end"/> that have no stage get <paramref name="stage"/> (nothing when it is null).</summary>
    private static void SetStage(Attr? stage, Operation? before, Operation end)
    {
        if (stage == null)
            return;
        for (var o = before?.Next ?? end.Block!.First; o != null && o != end; o = o.Next)
            if (o.GetAttr("stage") == null)
                o.SetAttr("stage", stage);
    }

    /// <summary>An optimizer state read as a parameter at <paramref name="path"/>, initialised by <paramref
    /// name="init"/>.</summary>
    private static Value StateParam(Builder b, string path, TensorType type, string init)
    {
        var v = b.CreateValue(
            "tensor.param",
            [],
            [new("path", Attr.Str(path)), new("init", Attr.Str(init)), new("state", Attr.Bool(true))],
            type
        );
        v.NameHint = path;
        return v;
    }

    /// <summary>The axis named by the option, else the one that splits the first argument's first dimension.</summary>
    private string DataParallelAxis(Operation module, Operation func)
    {
        var mesh = module.DeviceMesh();
        if (Axis.Length > 0)
            return mesh.AxisNames.Contains(Axis)
                ? Axis
                : throw new PassInputException(func.Location, $"--zero: '{Axis}' is not an axis of the mesh ({mesh})");
        var args = func.Regions[0].Entry.Arguments;
        if (args.Count > 0 && args[0].TensorType is { Rank: > 0, Sharding: { } s } && s.Dims[0].Count > 0)
            return s.Dims[0][0];
        throw new PassInputException(
            func.Location,
            $"--zero {Zero}: no data-parallel axis: the first input's batch dimension is not split (name one with "
                + "optimizer{axis=...})"
        );
    }

    /// <summary>The ops an update is made of, and optimizer state reads.</summary>
    private sealed partial class UpdateBuilder(Builder b, DeviceMesh mesh, string zeroAxis)
    {
        /// <summary>A zero-initialised state parameter laid out like its parameter, or split over the ZeRO
        /// axis.</summary>
        public Value State(string path, TensorType type, Sharding? like)
        {
            var sharding = like ?? (type.Rank == 0 ? null : Sharding.Replicated(type.Rank));
            // The first dimension the axis divides takes it as its minor split; a state no dimension of which it
            // divides stays whole.
            if (zeroAxis.Length > 0 && SplitOver(type, sharding, mesh, zeroAxis) is { } split)
                sharding = split;
            return StateParam(b, path, type.WithSharding(sharding), "zeros");
        }

        /// <summary>Under ZeRO, the gradient <paramref name="grad"/> in the layout <paramref name="p"/>'s state is
        /// stored in (split over the axis), so the whole update runs on this device's shard: a gradient summed over
        /// a split batch is reduce-scattered, not all-reduced and then sliced.</summary>
        public Value Stored(Value grad, Value p)
        {
            if (zeroAxis.Length == 0 || p.TensorType.Rank == 0)
                return grad;
            var own = p.TensorType.Sharding ?? Sharding.Replicated(p.TensorType.Rank);
            var stored = own.Axes.Contains(zeroAxis) ? own : SplitOver(p.TensorType, own, mesh, zeroAxis);
            if (stored == null)
                return grad;
            return b.CreateValue("dist.reshard", [grad], null, grad.TensorType.WithSharding(stored));
        }

        public Value Add(Value x, Value y) => b.CreateValue("tensor.add", [x, y]);

        public Value Sub(Value x, Value y) => b.CreateValue("tensor.sub", [x, y]);

        public Value Mul(Value x, Value y) => b.CreateValue("tensor.mul", [x, y]);

        public Value Div(Value x, Value y) => b.CreateValue("tensor.div", [x, y]);

        public Value Exp(Value x) => b.CreateValue("tensor.exp", [x]);

        public Value Sqrt(Value x) => b.CreateValue("tensor.sqrt", [x]);

        /// <summary><paramref name="v"/> in the element type of <paramref name="like"/> (converted when they
        /// differ).</summary>
        public Value As(Value v, Value like) =>
            v.TensorType.DType == like.TensorType.DType
                ? v
                : b.CreateValue(
                    "tensor.convert",
                    [v],
                    null,
                    v.TensorType.WithSharding(null).WithDType(like.TensorType.DType)
                );

        private Value C(Value like, double c) =>
            b.CreateValue(
                "tensor.constant",
                [],
                [new("value", Attr.Float(c))],
                TensorType.Scalar(like.TensorType.DType)
            );

        public Value MulC(Value v, double c) => Mul(v, C(v, c));

        public Value AddC(Value v, double c) => Add(v, C(v, c));

        public Value RSubC(double c, Value v) => Sub(C(v, c), v);
    }
}
