using ParallelCompiler.Dialects.Dist;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>schedule-collectives</c>: in a per-device training program, turns the gradient synchronisation (every
/// <c>dist.all_reduce</c> sum and <c>dist.reduce_scatter</c> whose result reaches only parameter updates, over
/// real mesh axes) into <c>dist.*_start</c> / <c>dist.wait</c> pairs: a start just after its operand exists, its
/// wait just before the first use of its result, so the collective runs under the compute between them (the rest
/// of the backward, the optimizer of other parameters). Collectives of one kind, group, dtype, stage and phase
/// whose operands exist before any of their results is needed share one start, up to <c>bucket-mb</c> MiB of
/// operands (PyTorch DDP's 25 MB buckets); each operand is still reduced on its own, so results are bit for bit
/// those of the synchronous ops. A ZeRO-3 parameter is gathered again at each use, started one gather ahead
/// (ScheduleCollectives.Gathers.cs).
/// Pipeline transfers become <c>pipe.*_start</c> / <c>pipe.wait</c> pairs
/// (ScheduleCollectives.Transfers.cs), in training and inference alike.
/// </summary>
public sealed partial class ScheduleCollectives : IPass
{
    /// <inheritdoc/>
    public string Name => "schedule-collectives";

    /// <inheritdoc/>
    public string Description =>
        "start gradient all-reduces and reduce-scatters early and wait late, bucketing small ones";

    /// <summary>Most MiB of operands in one bucket (0: every collective alone).</summary>
    [PassOption("bucket-mb", "most MiB of operands one started collective carries (0: one tensor each)")]
    public double BucketMb { get; set; } = 25;

    /// <summary>Start each ZeRO-3 parameter's gather one gather ahead of its use (off: each gathered just before
    /// it, blocking).</summary>
    [PassOption("prefetch", "start each ZeRO-3 parameter's all-gather one gather ahead of its use")]
    public bool Prefetch { get; set; } = true;

    private sealed record Candidate(Operation Op, int Ready, int Need, double Bytes, string Key, bool SummedLater);

    private sealed class Bucket(string key)
    {
        public string Key { get; } = key;
        public List<Candidate> Members { get; } = [];
        public int Ready { get; set; } = -1;
        public int Need { get; set; } = int.MaxValue;
        public double Bytes { get; set; }
    }

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (BucketMb < 0)
            throw new PassInputException(
                module.Location,
                $"schedule-collectives: bucket-mb must be at least 0, got {BucketMb}"
            );
        if (!module.IsSpmd())
            return false;
        bool changed = false;
        foreach (var func in module.Functions().Where(f => f.GetAttr("kernel") == null))
        {
            if (module.GetAttr("train") != null)
                changed |= GatherAtEachUse(func.Regions[0].Entry, Prefetch);
            changed |= StartTransfers(func.Regions[0].Entry);
            if (module.GetAttr("train") != null)
                changed |= Schedule(func.Regions[0].Entry);
        }
        return changed;
    }

    private bool Schedule(Block block)
    {
        Sink(block);
        var ops = block.Operations.ToList();
        var position = new Dictionary<Operation, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < ops.Count; i++)
            position[ops[i]] = i;
        var side = UpdateSide(ops);
        // Where each task's last op is.
        var lastOfTask = new Dictionary<(long, string), int>();
        for (int i = 0; i < ops.Count; i++)
            lastOfTask[TaskOf(ops[i])] = i;
        var found = new List<Candidate>();
        foreach (var op in ops)
            if (AsCandidate(op, side, position, lastOfTask) is { } c)
                found.Add(c);
        // A collective fed by another, or feeding one, stays where it is: each moves only past ordinary ops.
        var moving = found.Select(c => c.Op).ToHashSet(ReferenceEqualityComparer.Instance);
        var candidates = found
            .Where(c =>
                c.Op.Operands[0].DefiningOp is not { } d
                || !moving.Contains(d) && c.Op.Result.Uses.All(u => !moving.Contains(u.Op))
            )
            .ToList();
        if (candidates.Count == 0)
            return false;
        double limit = BucketMb * 1024 * 1024;
        var open = new Dictionary<string, Bucket>(StringComparer.Ordinal);
        var buckets = new List<Bucket>();
        // In the order the operands become ready, as DDP fills buckets in the order gradients arrive.
        foreach (var c in candidates.OrderBy(c => c.Ready).ThenBy(c => position[c.Op]))
        {
            if (open.TryGetValue(c.Key, out var b))
            {
                int ready = Math.Max(b.Ready, c.Ready),
                    need = Math.Min(b.Need, c.Need);
                if (ready >= need || b.Bytes + c.Bytes > limit)
                    b = null;
            }
            if (b == null)
            {
                b = new Bucket(c.Key);
                open[c.Key] = b;
                buckets.Add(b);
            }
            b.Members.Add(c);
            b.Ready = Math.Max(b.Ready, c.Ready);
            b.Need = Math.Min(b.Need, c.Need);
            b.Bytes += c.Bytes;
        }
        // Buckets of microbatch gradients summed later are waited for when the next bucket of their task starts, so
        // that one bucket's full gradients are held at a time rather than the whole task's.
        foreach (
            var task in buckets.Where(b => b.Members.All(m => m.SummedLater)).GroupBy(b => TaskOf(b.Members[0].Op))
        )
        {
            var inOrder = task.OrderBy(b => b.Ready).ToList();
            for (int i = 0; i + 1 < inOrder.Count; i++)
                inOrder[i].Need = Math.Min(inOrder[i].Need, Math.Max(inOrder[i].Ready, inOrder[i + 1].Ready) + 1);
        }
        // A wait goes before the op at its need, or the next one after it that stays (members are replaced).
        var members = buckets
            .SelectMany(b => b.Members)
            .Select(m => m.Op)
            .ToHashSet(ReferenceEqualityComparer.Instance);
        Operation At(int need) => ops.Skip(need).First(o => !members.Contains(o));
        // Starts after their last operand (in bucket order where several follow one op), waits before the first use.
        var lastAfter = new Dictionary<int, Operation>();
        foreach (var b in buckets)
        {
            var first = b.Members[0].Op;
            var builder = new Builder { Location = first.Location };
            var after = lastAfter.GetValueOrDefault(b.Ready) ?? (b.Ready < 0 ? null : ops[b.Ready]);
            if (after == null)
                builder.SetInsertionPointBefore(block.First!);
            else if (after.Next is { } next)
                builder.SetInsertionPointBefore(next);
            else
                builder.SetInsertionPointToEnd(block);
            var attrs = first.Attributes.ToList();
            var types = b.Members.Select(m => m.Op.Result.Type).ToList();
            var start = builder.Create(
                first.Name + "_start",
                b.Members.Select(m => m.Op.Operands[0]).ToList(),
                attrs,
                types
            );
            lastAfter[b.Ready] = start;
            var waitAt = At(b.Need);
            builder.SetInsertionPointBefore(waitAt);
            var stagePhase = first.Attributes.Where(a => a.Key is "phase" or "stage").ToList();
            var wait = builder.Create(WaitOpDef.OpName, start.Results.ToList<Value>(), stagePhase, types);
            for (int i = 0; i < b.Members.Count; i++)
            {
                var old = b.Members[i].Op;
                wait.Results[i].NameHint = old.Result.NameHint;
                old.Result.ReplaceAllUsesWith(wait.Results[i]);
                old.Erase();
                // A sum over microbatches the wait moved past follows it.
                foreach (var user in wait.Results[i].Uses.Select(u => u.Op).Distinct().ToList())
                    if (position.TryGetValue(user, out int at) && at < position[waitAt])
                        user.MoveBefore(waitAt);
            }
        }
        return true;
    }

    /// <summary>The collective as a candidate, or null when it is no gradient synchronisation or cannot move.</summary>
    private static Candidate? AsCandidate(
        Operation op,
        HashSet<Operation> side,
        Dictionary<Operation, int> position,
        Dictionary<(long, string), int> lastOfTask
    )
    {
        if (!IsSync(op) || !side.Contains(op))
            return null;
        var axes = ((ArrayAttr)op.GetAttr("axes")!).AsStrings();
        // Sums over microbatches are formed by the pipeline executor in time, not by a collective.
        if (axes.Length == 0 || axes.Contains(ModuleOp.MicrobatchAxis))
            return null;
        string Place(Operation o) => $"{o.GetAttr("stage")}|{o.GetAttr("phase")}";
        var def = op.Operands[0].DefiningOp;
        // A microbatch's reduce-scatter whose shards are summed over the microbatches once a step (ZeRO-2 and -3)
        // is waited for at the end of its task, so the full gradient is freed there.
        bool summedLater = op.Result.Uses.All(u =>
            u.Op.Name == "dist.all_reduce"
            && ((ArrayAttr)u.Op.GetAttr("axes")!).AsStrings().SequenceEqual([ModuleOp.MicrobatchAxis])
        );
        if (def != null && Place(def) != Place(op) || !summedLater && op.Result.Uses.Any(u => Place(u.Op) != Place(op)))
            return null;
        int ready = def == null ? -1 : position[def];
        int need = op.Result.Uses.Min(u => position[u.Op]);
        if (summedLater)
        {
            // The sums move to just after the wait, which their own users must follow.
            int last = lastOfTask[TaskOf(op)];
            var sums = op.Result.Uses.Select(u => u.Op).ToList();
            if (sums.All(x => x.Results.SelectMany(r => r.Uses).All(u => position[u.Op] > last)))
                need = last + 1;
        }
        var t = op.OperandType(0);
        string key =
            $"{op.Name}|{string.Join(",", axes)}|{op.GetAttr("reduction")}|{op.GetAttr("dim")}|"
            + $"{t.DType.Name()}|{Place(op)}";
        return new Candidate(op, ready, need, (double)t.NumElements * t.DType.Size(), key, summedLater);
    }

    /// <summary>
    /// Moves every pure tensor op that reads (through others) the result of a gradient synchronisation, and only
    /// feeds parameter updates, to just before its first user, last first: a gradient's first use is then where
    /// the optimizer needs it, not a reshape the backward left next to its sum. A pure op computes the same value
    /// wherever it runs.
    /// </summary>
    private static void Sink(Block block)
    {
        var ops = block.Operations.ToList();
        var side = UpdateSide(ops);
        var cone = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        foreach (var op in ops)
            if (
                IsSync(op) && side.Contains(op)
                || op.Operands.Any(v => v.DefiningOp is { } d && cone.Contains(d) && d.Dialect == "tensor")
                || op.Operands.Any(v => v.DefiningOp is { } d && IsSync(d) && side.Contains(d))
            )
                cone.Add(op);
        // Each op's place as a number, spaced so that a moved op takes one between its new neighbours; numbered again
        // when no number is left between them. An op's first user in the block is then the user with the least.
        var place = new Dictionary<Operation, long>(ReferenceEqualityComparer.Instance);
        void Number()
        {
            long k = 0;
            for (var o = block.First; o != null; o = o.Next)
                place[o] = k += 1L << 32;
        }
        Number();
        for (int i = ops.Count - 1; i >= 0; i--)
        {
            var op = ops[i];
            if (op.Dialect != "tensor" || op.Def is not { IsPure: true } || !side.Contains(op) || !cone.Contains(op))
                continue;
            var first = op
                .Results.SelectMany(r => r.Uses)
                .Select(u => u.Op)
                .Where(place.ContainsKey)
                .MinBy(o => place[o]);
            if (first == null || ReferenceEquals(first, op.Next))
                continue;
            long low = place[first.Prev!],
                high = place[first];
            op.MoveBefore(first);
            if (high - low > 1)
                place[op] = low + (high - low) / 2;
            else
                Number();
        }
    }

    private static bool IsSync(Operation op) =>
        op.Name == "dist.all_reduce" && op.GetAttr("reduction") is StringAttr { Value: "sum" }
        || op.Name == "dist.reduce_scatter";

    /// <summary>Ops whose results reach only parameter updates: nothing the step returns waits for them.</summary>
    private static HashSet<Operation> UpdateSide(List<Operation> ops)
    {
        var side = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        for (int i = ops.Count - 1; i >= 0; i--)
        {
            var op = ops[i];
            if (op.Name == "train.update")
                side.Add(op);
            else if (op.Results.Count > 0 && op.Results.All(r => r.HasUses && r.Uses.All(u => side.Contains(u.Op))))
                side.Add(op);
        }
        return side;
    }
}
