using Google.OrTools.Sat;
using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Planner;

/// <summary>What the intra-operator program chose: a dimension per parameter declaration, and its predicted
/// seconds of one microbatch (forward and backward, with the tensor-parallel collectives).</summary>
public sealed record IntraOpChoice(IReadOnlyDictionary<string, int> ParamDims, double Seconds, double StateBytes);

/// <summary>
/// The intra-operator plan of one tensor-parallel axis as an integer program, in the way of Alpa (Zheng et al.,
/// OSDI'22): over the forward graph of the single-device program, each op picks one strategy (which of its factors
/// the axis splits, or none), each value one layout (replicated, split along a dimension, or a partial sum); an op's
/// cost is its kernel time at that split (the cost model's roofline) with the collectives its strategy implies, and
/// every edge whose producer's layout differs from what the consumer's strategy needs costs the resharding
/// collective, in the forward and the backward pass. Parameters of one declaration share a layout (every instance of a
/// layer is annotated once); ops of the repeated layer weigh as many times as the layer repeats. Solved by CP-SAT
/// (Google OR-Tools). The batch factors (those of the inputs' first dimension) are left to data parallelism.
/// </summary>
public static class IntraOpSolver
{
    private const int Replicated = -1,
        Partial = -2;

    private sealed record OpStrategy(int Factor, int[] OperandLayouts, int ResultLayout, double Seconds);

    /// <summary>
    /// Solves for axis size <paramref name="tp"/> on <paramref name="module"/> (the elaborated single-device module of
    /// the model with one repeated layer). <paramref name="memoryWeight"/> seconds per byte of parameter state held
    /// per device steer towards splitting weights (0: time alone); <paramref name="layerWeight"/> is how many times
    /// ops of <paramref name="isLayerParam"/>'s layer count; <paramref name="stateFactor"/> bytes of state per
    /// parameter byte (parameter, gradient, optimizer state).
    /// </summary>
    public static IntraOpChoice Solve(
        Operation module,
        int tp,
        Cluster cluster,
        Func<string, string> declOf,
        Func<Operation, bool> inLayer,
        double layerWeight,
        double stateFactor,
        double memoryWeight,
        double timeLimitSeconds = 10
    )
    {
        var func = module.EntryFunction() ?? throw new IRException("the module has no entry function");
        var entry = func.Regions[0].Entry;
        // A mesh with the one axis: group ranks 0..tp-1, inside a node when it fits one.
        var group = Enumerable.Range(0, tp).ToArray();
        var mesh = new DeviceMesh(["tp"], [tp]);
        double Coll(string kind, double bytes) => CostModel.CollectiveSeconds(kind, bytes, group, cluster);
        static double Bytes(Value v) => (double)v.TensorType.NumElements * v.TensorType.DType.Size();
        static bool IsFloat(Value v) => v.TensorType.DType is DType.F32 or DType.F16 or DType.BF16;

        // The input factors: from every dimension of the inputs (batch, sequence), through every op. The planner
        // writes shardings on parameters only, and the compiler propagates from them, so a split that no weight
        // drives (the batch is data parallelism's) is not one the compiled program would make.
        var batchDims = new Dictionary<Value, HashSet<int>>(ReferenceEqualityComparer.Instance);
        // Values computed from the inputs; the others are weights (parameters, or made from them alone).
        var fromInputs = new HashSet<Value>(entry.Arguments, ReferenceEqualityComparer.Instance);
        foreach (var a in entry.Arguments)
            if (a.TensorType.Rank > 0)
                batchDims[a] = Enumerable.Range(0, a.TensorType.Rank).ToHashSet();
        var model = new CpModel();
        var layoutVars = new Dictionary<Value, Dictionary<int, BoolVar>>(ReferenceEqualityComparer.Instance);
        foreach (var a in entry.Arguments)
            LayoutsOf(a, [Replicated]);
        var objective = new List<(ILiteral Var, long Cost)>();
        long Ns(double seconds, double weight) => (long)Math.Round(seconds * weight * 1e9);
        var declLayouts = new Dictionary<string, Dictionary<int, BoolVar>>(StringComparer.Ordinal);
        double stateBytesReplicated = 0;
        var paramBytes = new Dictionary<string, double>(StringComparer.Ordinal);

        Dictionary<int, BoolVar> LayoutsOf(Value v, IEnumerable<int> allowed)
        {
            if (layoutVars.TryGetValue(v, out var have))
                return have;
            var d = allowed.Distinct().ToDictionary(l => l, l => model.NewBoolVar($"v{layoutVars.Count}_{l}"));
            model.AddExactlyOne(d.Values);
            layoutVars[v] = d;
            return d;
        }
        // Reshard cost of moving a value from layout a to layout c (forward plus the backward's mirror).
        double Reshard(Value v, int a, int c)
        {
            if (a == c)
                return 0;
            double full = Bytes(v),
                shard = full / tp;
            bool grad = IsFloat(v);
            return (a, c) switch
            {
                (Partial, Replicated) => Coll("all_reduce", full),
                (Partial, _) => Coll("reduce_scatter", full) + (grad ? Coll("all_gather", shard) : 0),
                (Replicated, _) => grad ? Coll("all_gather", shard) : 0,
                (_, Replicated) => Coll("all_gather", shard),
                _ => Coll("all_to_all", shard) * (grad ? 2 : 1),
            };
        }

        foreach (var op in entry.Operations)
        {
            if (op.Name == "tensor.param")
            {
                var v = op.Result;
                string decl = declOf(op.StringAttr("path"));
                var allowed = new List<int> { Replicated };
                for (int d = 0; d < v.TensorType.Rank; d++)
                    if (v.TensorType.Shape[d] % tp == 0 && tp > 1)
                        allowed.Add(d);
                var lv = LayoutsOf(v, allowed);
                double weight = inLayer(op) ? layerWeight : 1;
                double state = Bytes(v) * stateFactor * weight;
                stateBytesReplicated += state;
                paramBytes[decl] = paramBytes.GetValueOrDefault(decl) + state;
                foreach (var (l, x) in lv)
                    if (l >= 0)
                        objective.Add((x, Ns(-state * (1 - 1.0 / tp) * memoryWeight, 1)));
                // Instances of one declaration agree.
                if (declLayouts.TryGetValue(decl, out var first))
                {
                    foreach (var (l, x) in lv)
                        if (first.TryGetValue(l, out var y))
                            model.Add(x == y);
                        else
                            model.Add(x == 0);
                }
                else
                    declLayouts[decl] = lv;
                continue;
            }
            if (op.Results.Count != 1 || op.Dialect != "tensor")
                continue;
            var result = op.Result;
            if (op.Operands.Any(fromInputs.Contains))
                fromInputs.Add(result);
            var rule = op.Name == "tensor.constant" ? null : FactorSharding.RuleOf(op);
            double w = inLayer(op) ? layerWeight : 1;
            var strategies = new List<OpStrategy>();
            double flops = DeviceStats.OpFlops(op);
            double bytes = op.Operands.Concat<Value>(op.Results).Sum(Bytes);
            (double, double, double)? Mnk(int factor)
            {
                if (op.Name != "tensor.matmul")
                    return null;
                var r = result.TensorType;
                double n = r.Rank >= 1 && op.OperandType(1).Rank >= 2 ? r.Shape[^1] : 1,
                    k = op.OperandType(0).Shape[^1],
                    m = r.NumElements / Math.Max(1, n);
                if (factor < 0 || rule == null)
                    return (m, n, k);
                // Which of m, n, k the split factor shrinks.
                var rd = rule.Results[0];
                bool inN = rd.Length > 0 && rd[^1].Contains(factor) && op.OperandType(1).Rank >= 2;
                bool inK = rule.Operands[0][^1].Contains(factor);
                return inN ? (m, n / tp, k)
                    : inK ? (m, n, k / tp)
                    : (m / tp, n, k);
            }
            double Compute(int factor, double share)
            {
                var dtype = result.TensorType.DType;
                double fwd = CostModel.Roofline(flops * share, bytes * share, dtype, Mnk(factor), cluster).Seconds;
                return fwd * 3; // the backward does about twice the forward's work (two matmuls per matmul)
            }
            // Batch factors of this op.
            var batchFactors = new HashSet<int>();
            if (rule != null)
                for (int i = 0; i < op.Operands.Count && i < rule.Operands.Count; i++)
                    if (batchDims.TryGetValue(op.Operands[i], out var bd))
                        foreach (int d in bd)
                            if (d < rule.Operands[i].Length && rule.Operands[i][d].Length > 0)
                                batchFactors.Add(rule.Operands[i][d][0]);
            if (rule != null)
            {
                var rb = new HashSet<int>();
                for (int d = 0; d < rule.Results[0].Length; d++)
                    if (rule.Results[0][d].Any(batchFactors.Contains))
                        rb.Add(d);
                if (rb.Count > 0)
                    batchDims[result] = rb;
            }
            strategies.Add(
                new OpStrategy(Replicated, op.Operands.Select(_ => Replicated).ToArray(), Replicated, Compute(-1, 1))
            );
            if (rule != null && tp > 1)
                for (int f = 0; f < rule.NumFactors; f++)
                {
                    if (
                        rule.Kinds[f] == FactorKind.NeedReplication
                        || rule.FactorSizes[f] % tp != 0
                        || batchFactors.Contains(f)
                    )
                        continue;
                    var assign = Enumerable
                        .Range(0, rule.NumFactors)
                        .Select(i => (IReadOnlyList<string>)(i == f ? ["tp"] : []))
                        .ToArray();
                    int LayoutOf(int[][] dims, out bool ok)
                    {
                        var s = FactorSharding.Project(rule, dims, assign, mesh);
                        int at = Enumerable.Range(0, s.Rank).FirstOrDefault(d => s.Dims[d].Count > 0, -1);
                        ok = at >= 0 || !dims.Any(d => d.Contains(f));
                        return at;
                    }
                    bool valid = true;
                    var operandLayouts = new int[op.Operands.Count];
                    double backwardComm = 0;
                    for (int i = 0; i < op.Operands.Count; i++)
                    {
                        bool ok = false;
                        operandLayouts[i] = i < rule.Operands.Count ? LayoutOf(rule.Operands[i], out ok) : -1;
                        valid &= ok;
                        // An operand without the split (parallel) factor: its gradient is a partial sum over tp.
                        if (
                            valid
                            && rule.Kinds[f] == FactorKind.Parallel
                            && !rule.Operands[i].Any(d => d.Contains(f))
                            && IsFloat(op.Operands[i])
                            && op.Operands[i].DefiningOp?.Name != "tensor.constant"
                        )
                            backwardComm += Coll("all_reduce", Bytes(op.Operands[i]));
                    }
                    int resultLayout = LayoutOf(rule.Results[0], out bool resultOk);
                    if (rule.Kinds[f] == FactorKind.Reduction)
                        resultLayout = Partial;
                    else
                        valid &= resultOk;
                    if (!valid)
                        continue;
                    strategies.Add(
                        new OpStrategy(f, operandLayouts, resultLayout, Compute(f, 1.0 / tp) + backwardComm)
                    );
                }
            // One strategy variable each; the result's layout follows.
            var xs = strategies.Select((_, i) => model.NewBoolVar($"op{layoutVars.Count}_{i}")).ToArray();
            model.AddExactlyOne(xs);
            var rl = LayoutsOf(result, strategies.Select(s => s.ResultLayout));
            for (int i = 0; i < strategies.Count; i++)
            {
                model.AddImplication(xs[i], rl[strategies[i].ResultLayout]);
                objective.Add((xs[i], Ns(strategies[i].Seconds, w)));
            }
            // Edges: every operand's producer layout against what each strategy needs.
            for (int o = 0; o < op.Operands.Count; o++)
            {
                var v = op.Operands[o];
                if (v.DefiningOp?.Name == "tensor.constant" || !layoutVars.TryGetValue(v, out var produced))
                    continue;
                bool weight = !fromInputs.Contains(v);
                for (int i = 0; i < strategies.Count; i++)
                    foreach (var (a, za) in produced)
                    {
                        // A weight is used in the layout it is stored in (the compiler propagates from it; it does
                        // not gather weights as ZeRO-3 would).
                        if (weight && a != strategies[i].OperandLayouts[o])
                        {
                            model.AddBoolOr([za.Not(), xs[i].Not()]);
                            continue;
                        }
                        double c = Reshard(v, a, strategies[i].OperandLayouts[o]);
                        if (c <= 0)
                            continue;
                        var y = model.NewBoolVar("e");
                        model.AddBoolOr([za.Not(), xs[i].Not(), y]);
                        objective.Add((y, Ns(c, w)));
                    }
            }
        }
        model.Minimize(LinearExpr.WeightedSum(objective.Select(o => o.Var), objective.Select(o => o.Cost)));
        var solver = new CpSolver
        {
            StringParameters =
                $"max_time_in_seconds:{timeLimitSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} "
                + "num_workers:2",
        };
        var status = solver.Solve(model);
        if (status is not (CpSolverStatus.Optimal or CpSolverStatus.Feasible))
            throw new InvalidOperationException($"the intra-operator program has no solution ({status})");
        var dims = new Dictionary<string, int>(StringComparer.Ordinal);
        double stateBytes = 0;
        foreach (var (decl, lv) in declLayouts)
        {
            int chosen = lv.First(kv => solver.BooleanValue(kv.Value)).Key;
            dims[decl] = chosen;
            stateBytes += paramBytes[decl] / (chosen >= 0 ? tp : 1);
        }
        // The time alone (the memory term taken out).
        double seconds = objective.Where(o => o.Cost > 0 && solver.BooleanValue(o.Var)).Sum(o => o.Cost) / 1e9;
        return new IntraOpChoice(dims, seconds, stateBytes);
    }
}
