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
            stageOf =
                Balance(work.Select(o => cost[o]).ToArray(), work.Select(ParamBytes).ToArray(), stages)
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

    /// <summary>
    /// The split of ops (in order) into <paramref name="stages"/> contiguous non-empty groups with the smallest
    /// largest cost: best[k][i] = min over j of max(best[k-1][j], cost(j..i)); groups whose parameters exceed the
    /// memory limit are not allowed (null when no split fits).
    /// </summary>
    private int[]? Balance(double[] cost, long[] memory, int stages)
    {
        int n = cost.Length;
        var prefix = new double[n + 1];
        var mem = new long[n + 1];
        for (int i = 0; i < n; i++)
        {
            prefix[i + 1] = prefix[i] + cost[i];
            mem[i + 1] = mem[i] + memory[i];
        }
        bool Fits(int j, int i) => MemoryLimit <= 0 || mem[i] - mem[j] <= MemoryLimit;
        var best = new double[stages + 1, n + 1];
        var cut = new int[stages + 1, n + 1];
        for (int k = 0; k <= stages; k++)
        for (int i = 0; i <= n; i++)
            best[k, i] = double.PositiveInfinity;
        best[0, 0] = 0;
        for (int k = 1; k <= stages; k++)
        for (int i = k; i <= n - (stages - k); i++)
        for (int j = k - 1; j < i; j++)
        {
            if (double.IsPositiveInfinity(best[k - 1, j]) || !Fits(j, i))
                continue;
            double v = Math.Max(best[k - 1, j], prefix[i] - prefix[j]);
            if (v < best[k, i])
            {
                best[k, i] = v;
                cut[k, i] = j;
            }
        }
        if (double.IsPositiveInfinity(best[stages, n]))
            return null;
        var stageOf = new int[n];
        for (int k = stages, i = n; k > 0; k--)
        {
            int j = cut[k, i];
            for (int x = j; x < i; x++)
                stageOf[x] = k - 1;
            i = j;
        }
        return stageOf;
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
