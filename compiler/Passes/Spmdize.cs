using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>spmdize</c>: rewrites the global program into the one program every device runs. Each tensor's global
/// shape becomes its local block (each dimension divided by the sizes of its axes), shape attributes follow,
/// each <c>dist.reshard</c> becomes collectives (<see cref="ReshardLowering"/>), an op that holds a block of a factor
/// it exchanges over becomes its per-device form (<see cref="ExchangeLowering"/>), and a mean whose reduced
/// dimensions are split is rescaled so the partial results add up to the global mean. The global layouts stay
/// visible: arguments and results in the function's <c>arg_layouts</c>/<c>result_layouts</c>, parameters in
/// their <c>layout</c> attribute; the runtime slices inputs and assembles outputs with them. The program is the
/// same for every device, so its size and the time to make it do not grow with the mesh.
/// </summary>
public sealed class Spmdize : IPass
{
    /// <inheritdoc/>
    public string Name => "spmdize";

    /// <inheritdoc/>
    public string Description =>
        "turn the sharded global program into the per-device program with explicit collectives";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.IsSpmd())
            return false;
        var mesh = module.DeviceMesh();
        // ZeRO-2 and -3 keep gradients split: a microbatch's gradient is reduce-scattered before the sum over the
        // microbatches, which then adds shards.
        bool scatterFirst = module.GetAttr("zero") is IntAttr { Value: >= 2 };
        foreach (var func in module.Functions())
            Function(func, mesh, scatterFirst);
        module.SetAttr("spmd", Attr.Bool(true));
        return true;
    }

    private static void Function(Operation func, DeviceMesh mesh, bool scatterFirst)
    {
        var entry = func.Regions[0].Entry;
        CheckLayouts(func, mesh);
        // Reshards need their operand's global layout after the operand itself has become local.
        var layouts = entry
            .Operations.Where(o => o.Name == "dist.reshard")
            .ToDictionary(o => o, o => Complete(o.Operands[0].TensorType).Sharding!);
        // Ops that hold a block of a factor they exchange over (vocabulary-parallel softmax and cross-entropy).
        var exchanged = entry
            .Operations.Select(o => (Op: o, Axes: ExchangeLowering.SplitAxes(o, mesh)))
            .Where(x => mesh.Product(x.Axes) > 1)
            .ToDictionary(x => x.Op, x => x.Axes);
        var ret = entry.Last!;
        func.SetAttr(
            "result_layouts",
            new ArrayAttr(ret.Operands.Select(o => (Attr)new TypeAttr(Complete(o.TensorType))))
        );
        var argLayouts = new List<Attr>();
        foreach (var a in entry.Arguments)
        {
            argLayouts.Add(new TypeAttr(Complete(a.TensorType)));
            a.Type = Local(a.TensorType, mesh, func.Location, a.NameHint ?? $"argument {a.Index}");
        }
        func.SetAttr("arg_layouts", new ArrayAttr(argLayouts));
        var b = new Builder();
        foreach (var op in entry.Operations.ToList())
        {
            b.Location = op.Location;
            switch (op.Name)
            {
                case "func.return":
                    func.SetResultTypes(op.Operands.Select(o => o.Type));
                    break;
                case "dist.reshard":
                    Reshard(op, layouts[op], b, mesh, scatterFirst);
                    break;
                default:
                    if (exchanged.TryGetValue(op, out var axes))
                        Exchanged(op, axes, b, mesh);
                    else
                        Op(op, b, mesh);
                    break;
            }
        }
    }

    private static void Reshard(Operation op, Sharding from, Builder b, DeviceMesh mesh, bool scatterFirst)
    {
        var global = op.Result.TensorType;
        var to = Complete(global).Sharding!;
        Local(global, mesh, op.Location, op.Result.NameHint ?? "reshard result");
        b.SetInsertionPointBefore(op);
        var v = ReshardLowering.Emit(b, op.Operands[0], from, to, mesh, scatterFirst);
        if (v.NameHint == null && !ReferenceEquals(v, op.Operands[0]))
            v.NameHint = op.Result.NameHint;
        op.Result.ReplaceAllUsesWith(v);
        op.Erase();
    }

    /// <summary>Every op must already get its operands in the layout its rule needs (insert-reshards'
    /// invariant).</summary>
    private static void CheckLayouts(Operation func, DeviceMesh mesh)
    {
        foreach (var op in func.Regions[0].Entry.Operations)
        {
            if (op.Name == "func.return")
            {
                if (op.Operands.FirstOrDefault(o => o.TensorType.Sharding?.Partial.Count > 0) is { } p)
                    throw new IRException(
                        $"spmdize: @{func.StringAttr("sym_name")} returns a partial sum ({p.Type}); "
                            + $"run insert-reshards first"
                    );
                continue;
            }
            if (op.Name == "dist.reshard" || FactorSharding.RuleOf(op) is not { } rule)
                continue;
            var (operands, _) = InsertReshards.Layout(op, rule, mesh);
            for (int i = 0; i < op.Operands.Count; i++)
            {
                var have = Complete(op.Operands[i].TensorType).Sharding!;
                if (!have.Equals(operands[i]))
                    throw new IRException(
                        $"spmdize: operand {i} of {op.Name} is laid out {have} but the op needs "
                            + $"{operands[i]}; run insert-reshards first"
                    );
            }
        }
    }

    private static void Op(Operation op, Builder b, DeviceMesh mesh)
    {
        var partial = op.Results.Count == 1 ? Complete(op.Result.TensorType).Sharding!.Partial : [];
        if (op.Name == "tensor.param")
            op.SetAttr("layout", new TypeAttr(Complete(op.Result.TensorType)));
        foreach (var r in op.Results)
            Localize(r, mesh, op);
        foreach (var o in op.Operands)
            if (o.TensorType.Sharding != null)
                throw new IRException($"spmdize: operand {o.Type} of {op.Name} was not " + $"made local");
        if (op.Name is "tensor.reshape" or "tensor.broadcast")
            op.SetAttr("shape", Attr.Ints(op.Result.TensorType.Shape));
        if (op.Def is { } def)
            Builder.MergeResultTypes(def, Builder.InferExisting(def, op), op.Results.Select(r => r.Type).ToArray());
        if (op.Name is "tensor.mean" or "tensor.cross_entropy")
            RescaleMean(op.Result, partial, b, mesh);
    }

    /// <summary>An op that holds a block of a factor it exchanges over: its local form, written out.</summary>
    private static void Exchanged(Operation op, IReadOnlyList<string> axes, Builder b, DeviceMesh mesh)
    {
        var partial = Complete(op.Result.TensorType).Sharding!.Partial;
        foreach (var r in op.Results)
            Localize(r, mesh, op);
        bool mean = op.Name == "tensor.cross_entropy";
        var v = ExchangeLowering.Expand(op, axes, b, mesh);
        if (mean)
            RescaleMean(v, partial, b, mesh);
    }

    /// <summary>A mean over a split dimension: each device's mean covers 1/n of the elements, so it counts 1/n towards
    /// the sum.</summary>
    private static void RescaleMean(Value r, IReadOnlyList<string> partial, Builder b, DeviceMesh mesh)
    {
        if (partial.Count == 0)
            return;
        var uses = r.Uses.ToArray();
        b.SetInsertionPointBefore(r.DefiningOp!.Next!);
        var scale = b.CreateValue(
            "tensor.constant",
            [],
            [new("value", Attr.Float(1.0 / mesh.Product(partial)))],
            TensorType.Scalar(r.TensorType.DType)
        );
        var scaled = b.CreateValue("tensor.mul", [r, scale]);
        scaled.NameHint = r.NameHint;
        foreach (var (user, index) in uses)
            user.SetOperand(index, scaled);
    }

    private static void Localize(Value v, DeviceMesh mesh, Operation at)
    {
        v.Type = Local(v.TensorType, mesh, at.Location, v.NameHint ?? at.Name);
    }

    /// <summary>The type with a sharding (replicated when it has none).</summary>
    private static TensorType Complete(TensorType t) =>
        t.Sharding != null ? t : t.WithSharding(Sharding.Replicated(t.Rank));

    /// <summary>The per-device type of a global one; a dimension its axes do not divide is an error naming
    /// both.</summary>
    public static TensorType Local(TensorType t, DeviceMesh mesh, Location loc, string what)
    {
        if (t.Sharding == null)
            return t;
        var shape = t.ShapeArray;
        for (int d = 0; d < t.Rank; d++)
        {
            var axes = t.Sharding.Dims[d];
            foreach (var a in axes)
                if (!mesh.AxisNames.Contains(a))
                    throw new PassInputException(
                        loc,
                        $"'{what}' is sharded over mesh axis '{a}', which the mesh ({mesh}) does not have"
                    );
            long n = mesh.Product(axes);
            if (shape[d] % n != 0)
                throw new PassInputException(
                    loc,
                    $"dimension {d} of '{what}' ({t.ToSourceString()}, size {shape[d]}) is not divisible by mesh axes "
                        + $"{string.Join(", ", axes.Select(a => $"{a}={mesh.Size(a)}"))} (product {n})"
                );
            shape[d] /= n;
        }
        return new TensorType(t.DType, shape);
    }
}
