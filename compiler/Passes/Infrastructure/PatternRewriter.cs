using ParallelCompiler.IR;

namespace ParallelCompiler.Passes.Infrastructure;

/// <summary>A local rewrite: matches one operation and, if it applies, rewrites it through the rewriter.</summary>
public abstract class RewritePattern
{
    /// <summary>The op name this pattern matches, or null for any op.</summary>
    public abstract string? Root { get; }

    /// <summary>Rewrites <paramref name="op"/> when the pattern applies; returns whether it did.</summary>
    public abstract bool MatchAndRewrite(Operation op, PatternRewriter rewriter);
}

/// <summary>Mutations available to patterns: create ops before the matched one, replace it, erase it.</summary>
public sealed class PatternRewriter
{
    /// <summary>Builder positioned before the operation being rewritten.</summary>
    public Builder Builder { get; } = new();

    /// <summary>Replaces every use of <paramref name="op"/>'s single result with <paramref name="v"/> and erases
    /// it.</summary>
    public void ReplaceOp(Operation op, Value v)
    {
        if (v.NameHint == null)
            v.NameHint = op.Result.NameHint;
        op.Result.ReplaceAllUsesWith(v);
        op.Erase();
    }

    /// <summary>Creates a single-result op before <paramref name="at"/>, with its location.</summary>
    public Value Create(
        Operation at,
        string name,
        IReadOnlyList<Value> operands,
        IEnumerable<KeyValuePair<string, Attr>>? attrs = null,
        MplType? type = null
    )
    {
        Builder.SetInsertionPointBefore(at);
        Builder.Location = at.Location;
        return Builder.CreateValue(name, operands, attrs, type);
    }
}

/// <summary>Applies patterns to every operation of every function, round after round, until nothing changes.</summary>
public static class GreedyRewriteDriver
{
    /// <summary>Applies <paramref name="patterns"/> to a fixpoint or at most <paramref name="maxIterations"/> rounds;
    /// returns whether anything changed.</summary>
    public static bool Apply(Operation module, IReadOnlyList<RewritePattern> patterns, int maxIterations)
    {
        var byRoot = patterns.GroupBy(p => p.Root ?? "").ToDictionary(g => g.Key, g => g.ToArray());
        var any = byRoot.GetValueOrDefault("") ?? [];
        var rewriter = new PatternRewriter();
        bool changedEver = false;
        for (int round = 0; round < maxIterations; round++)
        {
            bool changed = false;
            foreach (var func in module.Functions())
            foreach (var op in func.Regions[0].Entry.Operations)
            {
                if (op.Block == null)
                    continue; // erased by an earlier rewrite this round
                // Like MLIR's greedy driver, ops left dead by a rewrite are erased as they are met.
                if (op.IsTriviallyDead)
                {
                    EraseDeadChain(op);
                    changed = true;
                    continue;
                }
                foreach (var p in (byRoot.GetValueOrDefault(op.Name) ?? []).Concat(any))
                    if (p.MatchAndRewrite(op, rewriter))
                    {
                        changed = true;
                        break;
                    }
            }
            if (!changed)
                break;
            changedEver = true;
        }
        return changedEver;
    }

    /// <summary>Erases a dead op and then any producers it kept alive; only ops before it, so the walk stays
    /// valid.</summary>
    private static void EraseDeadChain(Operation op)
    {
        var producers = op.Operands.Select(o => o.DefiningOp).OfType<Operation>().Distinct().ToList();
        op.Erase();
        foreach (var p in producers)
            if (p.Block != null && p.IsTriviallyDead)
                EraseDeadChain(p);
    }
}
