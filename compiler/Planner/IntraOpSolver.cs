using Google.OrTools.Sat;
using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Planner;

/// <summary>What the intra-operator program chose: a dimension per parameter declaration over the first (or only)
/// tensor-parallel axis, over the second with <see cref="Ty"/> &gt; 1, and its predicted seconds of one microbatch
/// (forward and backward, with the tensor-parallel collectives).</summary>
public sealed record IntraOpChoice(IReadOnlyDictionary<string, int> ParamDims, double Seconds, double StateBytes)
{
    /// <summary>The size of the second axis (1: one axis).</summary>
    public int Ty { get; init; } = 1;

    /// <summary>The dimension each declaration splits over the second axis (-1: none).</summary>
    public IReadOnlyDictionary<string, int> ParamDimsY { get; init; } = Plan.NoDims;

    /// <summary>The part of <see cref="StateBytes"/> that the repeated layer's parameters hold.</summary>
    public double StackStateBytes { get; init; }

    /// <summary>The parameter state a device holds on a stage of <paramref name="stages"/> pipeline stages: the
    /// repeated layer's share divided among them, the rest whole (the stage that holds it).</summary>
    public double StageStateBytes(int stages) => StateBytes - StackStateBytes + StackStateBytes / stages;

    /// <summary><paramref name="plan"/> with this sharding.</summary>
    public Plan Apply(Plan plan) => plan with { ParamDims = ParamDims, Ty = Ty, ParamDimsY = ParamDimsY };
}

/// <summary>A constraint of the intra-operator program: the parameter state a device holds on a stage of
/// <paramref name="Stages"/> pipeline stages (see <see cref="IntraOpChoice.StageStateBytes"/>) is at most
/// <paramref name="Bytes"/>.</summary>
public sealed record StateLimit(double Bytes, int Stages);

/// <summary>
/// The intra-operator plan of a tensor-parallel mesh of one or two axes as an integer program, in the way of Alpa
/// (Zheng et al., OSDI'22): over the forward graph of the single-device program, each op picks one strategy (which of
/// its factors each axis splits, or none), each value one layout per axis (replicated, split along a dimension, or a
/// partial sum); an op's cost is its kernel time at that split (the cost model's roofline) with the collectives its
/// strategy implies, and every edge whose producer's layout on an axis differs from what the consumer's strategy needs
/// costs the resharding collective over that axis's group, in the forward and the backward pass. Parameters of one
/// declaration share a layout (every instance of a layer is annotated once); ops of the repeated layer weigh as many
/// times as the layer repeats. Solved by CP-SAT (Google OR-Tools). The batch factors (those of the inputs' first
/// dimension) are left to data parallelism.
/// </summary>
public static class IntraOpSolver
{
    private const int Replicated = -1,
        Partial = -2;

    /// <summary>An op's choice: the factor each axis splits (-1: none), each operand's layout per axis (indexed
    /// [operand][axis]), the result's per axis, and its seconds.</summary>
    private sealed record OpStrategy(int[] Factors, int[][] OperandLayouts, int[] ResultLayout, double Seconds);

    /// <summary>
    /// Solves for the tensor-parallel mesh <paramref name="axes"/> (one size, or two: tx by ty, ty minor) on
    /// <paramref name="module"/> (the elaborated single-device module of the model with one repeated layer).
    /// <paramref name="memoryWeight"/> seconds per byte of parameter state held per device steer towards splitting
    /// weights (0: time alone); <paramref name="layerWeight"/> is how many times ops of <paramref name="inLayer"/>'s
    /// layer count; <paramref name="stateFactor"/> bytes of state per parameter byte (parameter, gradient, optimizer
    /// state). With <paramref name="stateLimit"/>, the parameter state a device holds is a constraint; a program
    /// no sharding satisfies throws <see cref="InvalidOperationException"/>.
    /// </summary>
    public static IntraOpChoice Solve(
        Operation module,
        IReadOnlyList<int> axes,
        Cluster cluster,
        Func<string, string> declOf,
        Func<Operation, bool> inLayer,
        double layerWeight,
        double stateFactor,
        double memoryWeight,
        double timeLimitSeconds = 10,
        StateLimit? stateLimit = null
    )
    {
        if (axes.Count is not (1 or 2) || axes.Any(a => a < 1))
            throw new ArgumentException("one or two axes, each of one device or more", nameof(axes));
        var func = module.EntryFunction() ?? throw new IRException("the module has no entry function");
        var entry = func.Regions[0].Entry;
        int n = axes.Count,
            tp = axes.Aggregate(1, (x, y) => x * y);
        string[] names = n == 1 ? ["tp"] : ["tx", "ty"];
        var mesh = new DeviceMesh(names, axes.ToArray());
        // Each axis's group of ranks (the mesh is row-major: ty's ranks are adjacent), inside a node when it fits.
        var groups =
            n == 1
                ? [Enumerable.Range(0, tp).ToArray()]
                : new[]
                {
                    Enumerable.Range(0, axes[0]).Select(i => i * axes[1]).ToArray(),
                    Enumerable.Range(0, axes[1]).ToArray(),
                };
        double Coll(int axis, string kind, double bytes) =>
            CostModel.CollectiveSeconds(kind, bytes, groups[axis], cluster);
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
        int counter = 0;
        // The layout variables of each value, per axis.
        var layoutVars = Enumerable
            .Range(0, n)
            .Select(_ => new Dictionary<Value, Dictionary<int, BoolVar>>(ReferenceEqualityComparer.Instance))
            .ToArray();
        foreach (var a in entry.Arguments)
            for (int x = 0; x < n; x++)
                LayoutsOf(x, a, [Replicated]);
        var objective = new List<(ILiteral Var, long Cost)>();
        long Ns(double seconds, double weight) => (long)Math.Round(seconds * weight * 1e9);
        var declLayouts = Enumerable
            .Range(0, n)
            .Select(_ => new Dictionary<string, Dictionary<int, BoolVar>>(StringComparer.Ordinal))
            .ToArray();
        var paramBytes = new Dictionary<string, double>(StringComparer.Ordinal);
        var stackBytes = new Dictionary<string, double>(StringComparer.Ordinal);

        Dictionary<int, BoolVar> LayoutsOf(int axis, Value v, IEnumerable<int> allowed)
        {
            if (layoutVars[axis].TryGetValue(v, out var have))
                return have;
            int id = counter++;
            var d = allowed.Distinct().ToDictionary(l => l, l => model.NewBoolVar($"v{id}_{axis}_{l}"));
            model.AddExactlyOne(d.Values);
            layoutVars[axis][v] = d;
            return d;
        }
        // Reshard cost over one axis of moving a value (of `full` bytes per device apart from that axis) from layout
        // a to layout c (forward plus the backward's mirror).
        double Reshard(int axis, Value v, double full, int a, int c)
        {
            if (a == c)
                return 0;
            double shard = full / axes[axis];
            bool grad = IsFloat(v);
            return (a, c) switch
            {
                (Partial, Replicated) => Coll(axis, "all_reduce", full),
                (Partial, _) => Coll(axis, "reduce_scatter", full) + (grad ? Coll(axis, "all_gather", shard) : 0),
                (Replicated, _) => grad ? Coll(axis, "all_gather", shard) : 0,
                (_, Replicated) => Coll(axis, "all_gather", shard),
                _ => Coll(axis, "all_to_all", shard) * (grad ? 2 : 1),
            };
        }

        foreach (var op in entry.Operations)
        {
            if (op.Name == "tensor.param")
            {
                var v = op.Result;
                var shape = v.TensorType.Shape;
                string decl = declOf(op.StringAttr("path"));
                double weight = inLayer(op) ? layerWeight : 1;
                double state = Bytes(v) * stateFactor * weight;
                paramBytes[decl] = paramBytes.GetValueOrDefault(decl) + state;
                if (inLayer(op))
                    stackBytes[decl] = stackBytes.GetValueOrDefault(decl) + state;
                var perAxis = new Dictionary<int, BoolVar>[n];
                for (int x = 0; x < n; x++)
                {
                    var allowed = new List<int> { Replicated };
                    for (int d = 0; d < v.TensorType.Rank; d++)
                        if (shape[d] % axes[x] == 0 && axes[x] > 1)
                            allowed.Add(d);
                    var lv = perAxis[x] = LayoutsOf(x, v, allowed);
                    foreach (var (l, b) in lv)
                        if (l >= 0)
                            objective.Add((b, Ns(-state * (1 - 1.0 / axes[x]) * memoryWeight, 1)));
                    // Instances of one declaration agree.
                    if (declLayouts[x].TryGetValue(decl, out var first))
                    {
                        foreach (var (l, b) in lv)
                            if (first.TryGetValue(l, out var y))
                                model.Add(b == y);
                            else
                                model.Add(b == 0);
                    }
                    else
                        declLayouts[x][decl] = lv;
                }
                // Both axes on one dimension: it must divide by the whole mesh.
                if (n == 2)
                    foreach (var (l, b) in perAxis[0])
                        if (l >= 0 && perAxis[1].TryGetValue(l, out var c) && shape[l] % tp != 0)
                            model.AddBoolOr([b.Not(), c.Not()]);
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
            // The matmul's m, n and k, each shrunk by the axes that split its factor.
            (double, double, double)? Mnk(int[] factors)
            {
                if (op.Name != "tensor.matmul")
                    return null;
                var r = result.TensorType;
                double mn = r.Rank >= 1 && op.OperandType(1).Rank >= 2 ? r.Shape[^1] : 1,
                    k = op.OperandType(0).Shape[^1],
                    m = r.NumElements / Math.Max(1, mn);
                if (rule == null)
                    return (m, mn, k);
                for (int x = 0; x < n; x++)
                {
                    int factor = factors[x];
                    if (factor < 0)
                        continue;
                    var rd = rule.Results[0];
                    bool inN = rd.Length > 0 && rd[^1].Contains(factor) && op.OperandType(1).Rank >= 2;
                    bool inK = rule.Operands[0][^1].Contains(factor);
                    if (inN)
                        mn /= axes[x];
                    else if (inK)
                        k /= axes[x];
                    else
                        m /= axes[x];
                }
                return (m, mn, k);
            }
            double Compute(int[] factors, double share)
            {
                var dtype = result.TensorType.DType;
                double fwd = CostModel.Roofline(flops * share, bytes * share, dtype, Mnk(factors), cluster).Seconds;
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
            var none = Enumerable.Repeat(Replicated, n).ToArray();
            strategies.Add(
                new OpStrategy(
                    Enumerable.Repeat(-1, n).ToArray(),
                    op.Operands.Select(_ => none).ToArray(),
                    none,
                    Compute(Enumerable.Repeat(-1, n).ToArray(), 1)
                )
            );
            if (rule != null && tp > 1)
                foreach (var factors in Assignments(rule, batchFactors))
                    if (StrategyOf(factors) is { } s)
                        strategies.Add(s);
            // The factors each axis may split (-1: none), every combination but all-none; one factor on both axes
            // must divide by the whole mesh.
            IEnumerable<int[]> Assignments(ShardingRule rule, HashSet<int> batch)
            {
                var eligible = Enumerable
                    .Range(0, n)
                    .Select(x =>
                        Enumerable
                            .Range(0, rule.NumFactors)
                            .Where(f =>
                                rule.Kinds[f] != FactorKind.NeedReplication
                                && rule.FactorSizes[f] % axes[x] == 0
                                && axes[x] > 1
                                && !batch.Contains(f)
                            )
                            .ToArray()
                    )
                    .ToArray();
                if (n == 1)
                {
                    foreach (int f in eligible[0])
                        yield return [f];
                    yield break;
                }
                foreach (int fx in eligible[0].Prepend(-1))
                foreach (int fy in eligible[1].Prepend(-1))
                    if ((fx >= 0 || fy >= 0) && (fx != fy || rule.FactorSizes[fx] % tp == 0))
                        yield return [fx, fy];
            }
            OpStrategy? StrategyOf(int[] factors)
            {
                var assign = Enumerable
                    .Range(0, rule.NumFactors)
                    .Select(f =>
                        (IReadOnlyList<string>)
                            Enumerable.Range(0, n).Where(x => factors[x] == f).Select(x => names[x]).ToList()
                    )
                    .ToArray();
                // The tensor's layout per axis: the dimension the axis splits, or replicated; false when the axis's
                // factor is in the tensor but cannot be placed.
                int[] LayoutOf(int[][] dims, out bool ok)
                {
                    var s = FactorSharding.Project(rule, dims, assign, mesh);
                    var at = new int[n];
                    ok = true;
                    for (int x = 0; x < n; x++)
                    {
                        at[x] = Enumerable.Range(0, s.Rank).FirstOrDefault(d => s.Dims[d].Contains(names[x]), -1);
                        ok &= factors[x] < 0 || at[x] >= 0 || !dims.Any(d => d.Contains(factors[x]));
                    }
                    return at;
                }
                double Split(int[] layout) =>
                    Enumerable.Range(0, n).Aggregate(1.0, (a, x) => a * (layout[x] >= 0 ? axes[x] : 1));
                bool valid = true;
                var operandLayouts = new int[op.Operands.Count][];
                double backwardComm = 0;
                for (int i = 0; i < op.Operands.Count; i++)
                {
                    bool ok = false;
                    operandLayouts[i] = i < rule.Operands.Count ? LayoutOf(rule.Operands[i], out ok) : none;
                    valid &= ok;
                    // An operand without an axis's split (parallel) factor: its gradient is a partial sum over the
                    // axis.
                    for (int x = 0; x < n; x++)
                    {
                        int f = factors[x];
                        if (
                            valid
                            && f >= 0
                            && rule.Kinds[f] == FactorKind.Parallel
                            && !rule.Operands[i].Any(d => d.Contains(f))
                            && IsFloat(op.Operands[i])
                            && op.Operands[i].DefiningOp?.Name != "tensor.constant"
                        )
                            backwardComm += Coll(x, "all_reduce", Bytes(op.Operands[i]) / Split(operandLayouts[i]));
                    }
                }
                // A reduction factor is in no result dimension: the result is a partial sum over its axis.
                var resultLayout = LayoutOf(rule.Results[0], out bool resultOk);
                for (int x = 0; x < n; x++)
                    if (factors[x] >= 0 && rule.Kinds[factors[x]] == FactorKind.Reduction)
                        resultLayout[x] = Partial;
                valid &= resultOk;
                if (!valid)
                    return null;
                double share = 1.0 / Enumerable.Range(0, n).Aggregate(1, (a, x) => a * (factors[x] >= 0 ? axes[x] : 1));
                return new OpStrategy(factors, operandLayouts, resultLayout, Compute(factors, share) + backwardComm);
            }
            // One strategy variable each; the result's layout follows.
            var xs = strategies.Select((_, i) => model.NewBoolVar($"op{counter}_{i}")).ToArray();
            model.AddExactlyOne(xs);
            for (int x = 0; x < n; x++)
            {
                var rl = LayoutsOf(x, result, strategies.Select(s => s.ResultLayout[x]));
                for (int i = 0; i < strategies.Count; i++)
                    model.AddImplication(xs[i], rl[strategies[i].ResultLayout[x]]);
            }
            for (int i = 0; i < strategies.Count; i++)
                objective.Add((xs[i], Ns(strategies[i].Seconds, w)));
            // Edges: every operand's producer layout on each axis against what each strategy needs.
            for (int o = 0; o < op.Operands.Count; o++)
            {
                var v = op.Operands[o];
                if (v.DefiningOp?.Name == "tensor.constant")
                    continue;
                bool weight = !fromInputs.Contains(v);
                for (int x = 0; x < n; x++)
                {
                    if (!layoutVars[x].TryGetValue(v, out var produced))
                        continue;
                    for (int i = 0; i < strategies.Count; i++)
                    {
                        var need = strategies[i].OperandLayouts[o];
                        // The bytes a device holds apart from this axis: split by the other axis as the op needs.
                        double full = Bytes(v) / (n == 2 && need[1 - x] >= 0 ? axes[1 - x] : 1);
                        foreach (var (a, za) in produced)
                        {
                            // A weight is used in the layout it is stored in (the compiler propagates from it; it
                            // does not gather weights as ZeRO-3 would).
                            if (weight && a != need[x])
                            {
                                model.AddBoolOr([za.Not(), xs[i].Not()]);
                                continue;
                            }
                            double c = Reshard(x, v, full, a, need[x]);
                            if (c <= 0)
                                continue;
                            var y = model.NewBoolVar("e");
                            model.AddBoolOr([za.Not(), xs[i].Not(), y]);
                            objective.Add((y, Ns(c, w)));
                        }
                    }
                }
            }
        }
        if (stateLimit != null)
            LimitState(model, declLayouts, axes, paramBytes, stackBytes, stateLimit);
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
        var dims = Enumerable.Range(0, n).Select(_ => new Dictionary<string, int>(StringComparer.Ordinal)).ToArray();
        for (int x = 0; x < n; x++)
            foreach (var (decl, lv) in declLayouts[x])
                dims[x][decl] = lv.First(kv => solver.BooleanValue(kv.Value)).Key;
        double Held(KeyValuePair<string, double> kv) =>
            kv.Value
            / Enumerable
                .Range(0, n)
                .Aggregate(1, (a, x) => a * (dims[x].GetValueOrDefault(kv.Key, -1) >= 0 ? axes[x] : 1));
        double stateBytes = paramBytes.Sum(Held),
            stackStateBytes = stackBytes.Sum(Held);
        // The time alone (the memory term taken out).
        double seconds = objective.Where(o => o.Cost > 0 && solver.BooleanValue(o.Var)).Sum(o => o.Cost) / 1e9;
        var choice = new IntraOpChoice(dims[0], seconds, stateBytes) { StackStateBytes = stackStateBytes };
        return n == 1 ? choice : choice with { Ty = axes[1], ParamDimsY = dims[1] };
    }

    /// <summary>
    /// Adds the constraint that the parameter state a device holds on one stage is within
    /// <paramref name="limit"/>: each declaration's bytes (the repeated layer's over the stages) times 1/tx if it is
    /// split over tx, times 1/ty if over ty. Expanded, s (1 - a0 x0) (1 - a1 x1) with a = 1 - 1/axis is linear but
    /// for its product term, a variable both splits force to 1 (elsewhere it could only tighten the constraint).
    /// Counted in bytes.
    /// </summary>
    private static void LimitState(
        CpModel model,
        Dictionary<string, Dictionary<int, BoolVar>>[] declLayouts,
        IReadOnlyList<int> axes,
        Dictionary<string, double> paramBytes,
        Dictionary<string, double> stackBytes,
        StateLimit limit
    )
    {
        var lits = new List<ILiteral>();
        var coeffs = new List<long>();
        long whole = 0;
        foreach (var (decl, total) in paramBytes)
        {
            double stack = stackBytes.GetValueOrDefault(decl),
                s = total - stack + stack / limit.Stages;
            whole += (long)Math.Ceiling(s);
            var splits = new List<BoolVar>[axes.Count];
            for (int x = 0; x < axes.Count; x++)
            {
                splits[x] = [.. declLayouts[x][decl].Where(kv => kv.Key >= 0).Select(kv => kv.Value)];
                foreach (var b in splits[x])
                {
                    lits.Add(b);
                    coeffs.Add(-(long)Math.Floor(s * (1 - 1.0 / axes[x])));
                }
            }
            if (axes.Count == 2 && splits[0].Count > 0 && splits[1].Count > 0)
            {
                var both = model.NewBoolVar($"both_{decl}");
                foreach (var b0 in splits[0])
                foreach (var b1 in splits[1])
                    model.AddBoolOr([b0.Not(), b1.Not(), both]);
                lits.Add(both);
                coeffs.Add((long)Math.Ceiling(s * (1 - 1.0 / axes[0]) * (1 - 1.0 / axes[1])));
            }
        }
        model.Add(LinearExpr.WeightedSum(lits, coeffs) <= (long)Math.Floor(limit.Bytes) - whole);
    }
}
