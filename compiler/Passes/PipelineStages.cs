using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>pipeline-stages</c>: for a model with <c>@pipeline(axis, chunks, ...)</c>, gives every op of the forward
/// program a <c>stage</c> attribute, <c>axis size * chunks</c> stages in all (stage c * p + d runs on pipeline
/// device d). <c>stage;</c> statements (<c>pipe.boundary</c>) are honoured; otherwise the ops are split into
/// contiguous stages minimising the most expensive stage by dynamic programming over the op sequence (cost:
/// FLOPs plus bytes read and written, in training with an estimate of the op's backward), with an optional limit
/// on each stage's parameter memory. Uneven splits
/// are fine. A parameter or constant used by several stages is copied into each (tied weights such as an
/// embedding reused by the output layer); in training their gradients are summed between the stages.
/// </summary>
public sealed class PipelineStages : IPass
{
    /// <inheritdoc/>
    public string Name => "pipeline-stages";

    /// <inheritdoc/>
    public string Description => "cut a @pipeline model into balanced (or user-given) stages";

    /// <summary>Most bytes of parameters one stage may hold (0: no limit).</summary>
    [PassOption("memory-limit", "most bytes of parameters per stage (0: no limit)")]
    public long MemoryLimit { get; set; }

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (
            module.IsSpmd()
            || module.EntryFunction() is not { } func
            || func.GetAttr("pipeline") is not DictAttr settings
        )
            return false;
        var entry = func.Regions[0].Entry;
        if (entry.Operations.Any(o => o.GetAttr("stage") != null))
            return false;
        var s = settings.Entries.ToDictionary(e => e.Key, e => e.Value);
        string axis = ((StringAttr)s["axis"]).Value;
        int chunks = s.GetValueOrDefault("chunks") is IntAttr c ? (int)c.Value : 1;
        int stages = module.DeviceMesh().Size(axis) * chunks;
        if (stages == 1)
            return false; // one stage: nothing to cut
        var work = entry
            .Operations.Where(o =>
                o.Name is not ("tensor.param" or "tensor.constant" or "pipe.boundary" or "func.return")
            )
            .ToList();
        var boundaries = entry.Operations.Where(o => o.Name == "pipe.boundary").ToList();
        int[] stageOf;
        if (boundaries.Count > 0)
        {
            if (boundaries.Count + 1 != stages)
                throw new PassInputException(
                    boundaries[0].Location,
                    $"{boundaries.Count} 'stage;' statement(s) make {boundaries.Count + 1} stages, but @pipeline over "
                        + $"{axis} = {stages / chunks}"
                        + (chunks > 1 ? $" with {chunks} chunks" : "")
                        + $" needs {stages}"
                );
            stageOf = new int[work.Count];
            int k = 0,
                at = 0;
            foreach (var op in entry.Operations)
            {
                if (op.Name == "pipe.boundary")
                    at++;
                else if (k < work.Count && ReferenceEquals(work[k], op))
                    stageOf[k++] = at;
            }
        }
        else
        {
            if (work.Count < stages)
                throw new PassInputException(
                    func.Location,
                    $"@pipeline needs {stages} stages but the model has only {work.Count} operations"
                );
            var cost = TrainingCosts(entry, module.GetAttr("train") != null);
            var costs = work.Select(o => cost[o]).ToArray();
            var memory = work.Select(ParamBytes).ToArray();
            stageOf =
                Split(work, costs, memory, stages)
                ?? throw new PassInputException(
                    func.Location,
                    $"pipeline-stages: no split into {stages} stages keeps every stage's parameters under "
                        + $"{MemoryLimit} bytes"
                );
        }
        for (int i = 0; i < work.Count; i++)
            work[i].SetAttr("stage", Attr.Int(stageOf[i]));
        CopySharedValues(entry);
        foreach (var bnd in boundaries)
            bnd.Erase();
        return true;
    }

    /// <summary>How much more the costliest stage may cost than in the best balance, for cuts that send less.</summary>
    private const double BalanceSlack = 0.10;

    /// <summary>
    /// The split into stages: cuts between recomputed layers (a cut inside one would split its recomputation over
    /// two stages) where the layers leave enough places, and among the splits whose costliest stage is within
    /// <see cref="BalanceSlack"/> of the best balance, one whose cuts send the fewest bytes (the residual stream
    /// between a transformer's blocks rather than the three projections inside its attention).
    /// </summary>
    private int[]? Split(IReadOnlyList<Operation> work, double[] costs, long[] memory, int stages)
    {
        var crossing = CrossingBytes(work);
        var allowed = Enumerable
            .Range(0, work.Count + 1)
            .Where(i => i == 0 || i == work.Count || !InsideRemat(work[i - 1], work[i]))
            .ToArray();
        if (allowed.Length <= stages)
            allowed = Enumerable.Range(0, work.Count + 1).ToArray();
        if (Balance(costs, memory, allowed, stages) is not var (split, cost))
            return null;
        // The least crossing bytes that still balance: candidate sets grow with the level, so search it.
        var levels = allowed[1..^1].Select(i => crossing[i]).Distinct().Order().ToArray();
        int lo = 0,
            hi = levels.Length - 1;
        int[]? best = null;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            var cuts = allowed.Where(i => i == 0 || i == work.Count || crossing[i] <= levels[mid]).ToArray();
            if (Balance(costs, memory, cuts, stages) is var (s, c) && c <= (1 + BalanceSlack) * cost)
            {
                best = s;
                hi = mid - 1;
            }
            else
                lo = mid + 1;
        }
        return best ?? split;
    }

    private static bool InsideRemat(Operation before, Operation after) =>
        before.GetAttr("remat") is { } a && Equals(a, after.GetAttr("remat"));

    /// <summary>
    /// For each place a cut can go (before op i, i = 0..n), the bytes of the values made before it and used after
    /// it: what a cut there sends to the next stage.
    /// </summary>
    private static double[] CrossingBytes(IReadOnlyList<Operation> work)
    {
        var index = new Dictionary<Operation, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < work.Count; i++)
            index[work[i]] = i;
        var delta = new double[work.Count + 2];
        for (int i = 0; i < work.Count; i++)
            foreach (var r in work[i].Results)
            {
                int last = r.Uses.Select(u => index.TryGetValue(u.Op, out int k) ? k : -1).DefaultIfEmpty(-1).Max();
                if (last <= i)
                    continue;
                double bytes = (double)r.TensorType.NumElements * Runtime.Arrays.DTypes.Size(r.TensorType.DType);
                delta[i + 1] += bytes;
                delta[last + 1] -= bytes;
            }
        var crossing = new double[work.Count + 1];
        double run = 0;
        for (int i = 0; i <= work.Count; i++)
            crossing[i] = run += delta[i];
        crossing[0] = crossing[work.Count] = 0;
        return crossing;
    }

    /// <summary>
    /// The split of ops (in order) into <paramref name="stages"/> contiguous non-empty groups, cut only at the places
    /// in <paramref name="cuts"/> (ascending, from 0 to n), with the smallest largest cost: best[k][i] = min over j
    /// of max(best[k-1][j], cost(j..i)); groups whose parameters exceed the memory limit are not allowed (null when
    /// no split fits).
    /// </summary>
    private (int[] StageOf, double Cost)? Balance(double[] opCost, long[] memory, int[] cuts, int stages)
    {
        int n = opCost.Length,
            c = cuts.Length - 1;
        var prefixOps = new double[n + 1];
        var memOps = new long[n + 1];
        for (int i = 0; i < n; i++)
        {
            prefixOps[i + 1] = prefixOps[i] + opCost[i];
            memOps[i + 1] = memOps[i] + memory[i];
        }
        // Over the candidate places: the cost and memory of the ops between two of them.
        var prefix = cuts.Select(x => prefixOps[x]).ToArray();
        var mem = cuts.Select(x => memOps[x]).ToArray();
        double Cost(int j, int i) => prefix[i] - prefix[j];
        bool Fits(int j, int i) => MemoryLimit <= 0 || mem[i] - mem[j] <= MemoryLimit;
        if (c < stages)
            return null;
        var best = new double[stages + 1, c + 1];
        var cut = new int[stages + 1, c + 1];
        for (int k = 0; k <= stages; k++)
        for (int i = 0; i <= c; i++)
            best[k, i] = double.PositiveInfinity;
        best[0, 0] = 0;
        for (int k = 1; k <= stages; k++)
        for (int i = k; i <= c - (stages - k); i++)
        for (int j = k - 1; j < i; j++)
        {
            if (double.IsPositiveInfinity(best[k - 1, j]) || !Fits(j, i))
                continue;
            double v = Math.Max(best[k - 1, j], Cost(j, i));
            if (v < best[k, i])
            {
                best[k, i] = v;
                cut[k, i] = j;
            }
        }
        if (double.IsPositiveInfinity(best[stages, c]))
            return null;
        var stageOf = new int[n];
        for (int k = stages, i = c; k > 0; k--)
        {
            int j = cut[k, i];
            for (int x = cuts[j]; x < cuts[i]; x++)
                stageOf[x] = k - 1;
            i = j;
        }
        return (stageOf, best[stages, c]);
    }

    /// <summary>
    /// Each op's cost in a step: its forward cost and, in training, its backward, estimated as one forward's worth
    /// per operand that needs a gradient (one that depends on a parameter): a matmul of an input and a weight
    /// costs one more matmul, of two activations two more, so the first layer, whose input needs no gradient, is
    /// lighter.
    /// </summary>
    private static Dictionary<Operation, double> TrainingCosts(Block entry, bool training)
    {
        var needsGrad = new HashSet<Value>(ReferenceEqualityComparer.Instance);
        var cost = new Dictionary<Operation, double>(ReferenceEqualityComparer.Instance);
        foreach (var op in entry.Operations)
        {
            int grads = op.Operands.Count(needsGrad.Contains);
            if (op.Name == "tensor.param" || grads > 0)
                foreach (var r in op.Results)
                    needsGrad.Add(r);
            double forward = Cost(op);
            cost[op] = training ? forward * (1 + grads) : forward;
        }
        return cost;
    }

    /// <summary>An op's forward cost: FLOPs plus the bytes it reads and writes (so data movement counts too).</summary>
    private static double Cost(Operation op) =>
        Analysis.DeviceStats.OpFlops(op)
        + op.Operands.Concat<Value>(op.Results)
            .Sum(v => (double)v.TensorType.NumElements * Runtime.Arrays.DTypes.Size(v.TensorType.DType));

    private static long ParamBytes(Operation op) =>
        op
            .Operands.Where(v => v.DefiningOp?.Name == "tensor.param")
            .Sum(v => v.TensorType.NumElements * Runtime.Arrays.DTypes.Size(v.TensorType.DType));

    /// <summary>Parameters and constants take the stage of their users; one used by several stages gets a copy per
    /// stage.</summary>
    private static void CopySharedValues(Block entry)
    {
        var b = new Builder();
        foreach (var op in entry.Operations.Where(o => o.Name is "tensor.param" or "tensor.constant").ToList())
        {
            var byStage = op
                .Result.Uses.Where(u => u.Op.GetAttr("stage") != null)
                .GroupBy(u => u.Op.IntAttr("stage"))
                .OrderBy(g => g.Key)
                .ToList();
            if (byStage.Count == 0)
            {
                op.SetAttr("stage", Attr.Int(0));
                continue;
            }
            op.SetAttr("stage", Attr.Int(byStage[0].Key));
            foreach (var group in byStage.Skip(1))
            {
                b.SetInsertionPointBefore(op.Next!);
                b.Location = op.Location;
                var copy = b.Create(
                    op.Name,
                    [],
                    op.Attributes.Where(a => a.Key != "stage").Append(new("stage", Attr.Int(group.Key))),
                    [op.Result.Type]
                );
                copy.Result.NameHint = op.Result.NameHint;
                foreach (var (user, index) in group)
                    user.SetOperand(index, copy.Result);
            }
        }
    }
}
