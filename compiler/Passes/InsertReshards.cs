using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>insert-reshards</c>: makes every layout change explicit. Each op runs in the layout of its results: its
/// sharding rule turns the result shardings (and, for contracted factors, the heaviest operand's) into the
/// layout every operand must have, and an operand that differs gets a <c>dist.reshard</c> in front. A
/// contraction whose operands would cost more to move than its result runs where its operands are instead, and
/// its result is resharded after it (bytes sent per device, <see cref="ReshardLowering.Cost"/>). Results of
/// split reductions become partial sums; nothing but a reshard consumes a partial sum, and functions return
/// complete values. Afterwards each op's operands are exactly what its rule needs, which spmdize relies on.
/// Warns when a tensor the user sharded is gathered in full.
/// </summary>
public sealed class InsertReshards : IPass, IWarningSource
{
    /// <inheritdoc/>
    public string Name => "insert-reshards";

    /// <inheritdoc/>
    public string Description =>
        "insert an explicit dist.reshard wherever an op needs another layout than its " + "operand has";

    /// <inheritdoc/>
    public Action<Location, string>? Warn { get; set; }

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.IsSpmd())
            return false; // already per-device: layouts are fixed in the types
        var mesh = module.DeviceMesh();
        bool changed = false;
        foreach (var func in module.Functions())
        {
            var cache = new Dictionary<(Value, Sharding), Value>();
            var warned = new HashSet<Value>(ReferenceEqualityComparer.Instance);
            foreach (var a in func.Regions[0].Entry.Arguments)
                changed |= Complete(a);
            foreach (var op in func.Regions[0].Entry.Operations.ToList())
            {
                if (op.Dialect == "dist" && op.Name != "dist.reshard")
                    continue; // per-device ops: nothing to lay out
                foreach (var r in op.Results)
                    changed |= Complete(r);
                if (op.Name == "func.return")
                {
                    for (int i = 0; i < op.Operands.Count; i++)
                    {
                        var s = op.Operands[i].TensorType.Sharding!;
                        if (s.Partial.Count > 0)
                            changed |= Require(op, i, new Sharding(s.Dims), mesh, cache, warned, func);
                    }
                    func.SetResultTypes(op.Operands.Select(o => o.Type));
                    continue;
                }
                if (FactorSharding.RuleOf(op) is not { } rule || op.Name == "dist.reshard")
                    continue;
                var (operands, results) = Layout(op, rule, mesh);
                if (CheaperFromOperands(op, rule, mesh, operands, results) is { } fromOperands)
                {
                    // Compute where the operands are (a partial sum, say) and move the smaller result instead.
                    var wanted = new Sharding(results[0].Dims);
                    (operands, results) = fromOperands;
                    var after = new Builder { Location = op.Location };
                    after.SetInsertionPointBefore(op.Next!);
                    op.Result.Type = op.Result.TensorType.WithSharding(results[0]);
                    var moved = after.CreateValue(
                        "dist.reshard",
                        [op.Result],
                        null,
                        op.Result.TensorType.WithSharding(wanted)
                    );
                    foreach (var (user, index) in op.Result.Uses.ToArray())
                        if (user != moved.DefiningOp)
                            user.SetOperand(index, moved);
                }
                for (int i = 0; i < op.Operands.Count; i++)
                    changed |= Require(op, i, operands[i], mesh, cache, warned, func);
                for (int i = 0; i < op.Results.Count; i++)
                    if (!Equals(op.Results[i].TensorType.Sharding, results[i]))
                    {
                        op.Results[i].Type = op.Results[i].TensorType.WithSharding(results[i]);
                        changed = true;
                    }
            }
        }
        return changed;
    }

    /// <summary>
    /// The layout <paramref name="op"/> computes in: operand shardings it needs and the result shardings it gives.
    /// Results are held in place; for factors no result has (contracted ones), the heaviest operand decides.
    /// </summary>
    public static (Sharding[] Operands, Sharding[] Results) Layout(Operation op, ShardingRule rule, DeviceMesh mesh) =>
        Layout(op, rule, mesh, holdResults: true);

    /// <summary>
    /// For an op with a contraction: the layout chosen from the operands alone when moving its (single) result
    /// afterwards costs fewer bytes than moving the operands into the result's layout (the gradient of a weight,
    /// say, summed over a split batch and then scattered, instead of gathering the batch); otherwise null.
    /// </summary>
    private static (Sharding[] Operands, Sharding[] Results)? CheaperFromOperands(
        Operation op,
        ShardingRule rule,
        DeviceMesh mesh,
        Sharding[] operands,
        Sharding[] results
    )
    {
        if (op.Results.Count != 1 || !rule.Kinds.Contains(FactorKind.Reduction))
            return null;
        var alt = Layout(op, rule, mesh, holdResults: false);
        var complete = new Sharding(results[0].Dims);
        double OperandCost(Sharding[] needed) =>
            op
                .Operands.Select((v, i) => ReshardLowering.Cost(v.TensorType, v.TensorType.Sharding!, needed[i], mesh))
                .Sum();
        var t = op.Result.TensorType;
        double held = OperandCost(operands) + ReshardLowering.Cost(t, results[0], complete, mesh);
        double moved = OperandCost(alt.Operands) + ReshardLowering.Cost(t, alt.Results[0], complete, mesh);
        // On equal bytes, the plan that leaves every parameter in its own layout wins: a gathered weight is held whole.
        return moved < held || moved == held && MovesParameter(op, operands) && !MovesParameter(op, alt.Operands)
            ? alt
            : null;
    }

    private static bool MovesParameter(Operation op, Sharding[] needed) =>
        op.Operands.Where((v, i) => IsParameter(v) && !v.TensorType.Sharding!.Equals(needed[i])).Any();

    /// <summary>A parameter, or a parameter seen through shape ops (the transposed weight of a backward
    /// matmul).</summary>
    public static bool IsParameter(Value v) =>
        v.DefiningOp switch
        {
            { Name: "tensor.param" } => true,
            { Name: "tensor.transpose" or "tensor.reshape" } def => IsParameter(def.Operands[0]),
            _ => false,
        };

    private static (Sharding[] Operands, Sharding[] Results) Layout(
        Operation op,
        ShardingRule rule,
        DeviceMesh mesh,
        bool holdResults
    )
    {
        // A parameter is written in the layout it is read in: the new value follows the parameter, never the reverse.
        if (op.Name == "train.update")
        {
            var p = op.Operands[0].TensorType;
            var layout = p.Sharding ?? Sharding.Replicated(p.Rank);
            return ([layout, layout], []);
        }
        var votes = op
            .Operands.Select(v => new FactorSharding.Vote(v.TensorType.Sharding, v.TensorType.NumElements))
            .Concat(
                op.Results.Select(r => new FactorSharding.Vote(
                    holdResults ? r.TensorType.Sharding : null,
                    long.MaxValue
                ))
            )
            .ToArray();
        var assign = FactorSharding.Resolve(rule, votes, mesh);
        var partial = FactorSharding.PartialAxes(rule, assign, mesh);
        var operands = rule.Operands.Select(d => FactorSharding.Project(rule, d, assign, mesh)).ToArray();
        var results = rule.Results.Select(d => FactorSharding.Project(rule, d, assign, mesh, partial)).ToArray();
        return (operands, results);
    }

    /// <summary>A value without a sharding (hand-written IR) is taken as replicated.</summary>
    private static bool Complete(Value v)
    {
        if (v.TensorType.Sharding != null)
            return false;
        v.Type = v.TensorType.WithSharding(Sharding.Replicated(v.TensorType.Rank));
        return true;
    }

    private bool Require(
        Operation op,
        int index,
        Sharding needed,
        DeviceMesh mesh,
        Dictionary<(Value, Sharding), Value> cache,
        HashSet<Value> warned,
        Operation func
    )
    {
        var v = op.Operands[index];
        var have = v.TensorType.Sharding!;
        if (have.Equals(needed))
            return false;
        if (!cache.TryGetValue((v, needed), out var resharded))
        {
            var b = new Builder { Location = op.Location };
            if (v.DefiningOp is { } def && def.Next != null)
                b.SetInsertionPointBefore(def.Next);
            else
                b.SetInsertionPointBefore(func.Regions[0].Entry.First!);
            resharded = b.CreateValue("dist.reshard", [v], null, v.TensorType.WithSharding(needed));
            cache[(v, needed)] = resharded;
            if (warned.Add(v))
                WarnIfGathered(v, have, needed, mesh, func);
        }
        op.SetOperand(index, resharded);
        return true;
    }

    /// <summary>Never replicate silently: a tensor the user split that ends up whole on every device is
    /// named.</summary>
    private void WarnIfGathered(Value v, Sharding have, Sharding needed, DeviceMesh mesh, Operation func)
    {
        bool userSharded = v is BlockArgument || v.DefiningOp?.Name == "tensor.param";
        if (!userSharded || have.Dims.All(d => d.Count == 0) || needed.Dims.Any(d => d.Count > 0))
            return;
        var t = v.TensorType;
        string name = v.DefiningOp?.Name == "tensor.param" ? v.DefiningOp.StringAttr("path") : v.NameHint ?? "argument";
        long bytes = t.NumElements * Runtime.Arrays.DTypes.Size(t.DType);
        Warn?.Invoke(
            v.DefiningOp?.Location ?? func.Location,
            $"'{name}' ({t.ToSourceString()} {have}, {Units.Bytes(bytes)}) is gathered in full on every device of the "
                + $"mesh ({mesh})"
        );
    }
}
