namespace ParallelCompiler.Kernels;

/// <summary>
/// Where each part of a kernel body is computed. Output dimension d is loop depth d + 1; a reduction runs at the
/// depth of the innermost loop variable it reads (its level), once per iteration there, and binds its own
/// variable one deeper. So a softmax row's max and sum are computed once per row, not once per element.
/// </summary>
public sealed class KernelLevels
{
    private readonly Dictionary<int, int> _depth = [];
    private readonly Dictionary<KExpr, HashSet<int>> _free = new(ReferenceEqualityComparer.Instance);

    /// <summary>The levels of <paramref name="spec"/>'s body.</summary>
    public KernelLevels(KernelSpec spec)
    {
        int rank = spec.Output.Shape.Length;
        for (int d = 0; d < rank; d++)
            _depth[d] = d + 1;
        Assign(spec.Body);
        // Leading output dimensions a GPU spreads over threads: all, unless a reduction sits above the innermost
        // loops (a row statistic); then each thread takes whole rows so the statistic is computed once per row.
        int p = rank;
        void Walk(KExpr e)
        {
            if (e is KReduce r && Level(r) < rank)
                p = Math.Min(p, Level(r));
            foreach (var c in Children(e))
                Walk(c);
        }
        Walk(spec.Body);
        ParallelDims = p;
    }

    /// <summary>How many leading output dimensions run in parallel on a GPU.</summary>
    public int ParallelDims { get; }

    /// <summary>The loop depth of variable <paramref name="v"/>.</summary>
    public int Depth(int v) => _depth[v];

    /// <summary>The depth of the innermost loop whose variable <paramref name="e"/> reads (0: none).</summary>
    public int Level(KExpr e) =>
        Free(e).Select(v => _depth.TryGetValue(v, out int d) ? d : int.MaxValue).DefaultIfEmpty(0).Max();

    private void Assign(KExpr e)
    {
        if (e is KReduce r && !_depth.ContainsKey(r.Var))
            _depth[r.Var] = Level(r) + 1;
        foreach (var c in Children(e))
            Assign(c);
    }

    private HashSet<int> Free(KExpr e)
    {
        if (_free.TryGetValue(e, out var f))
            return f;
        f = e switch
        {
            KVar v => [v.Id],
            KReduce r => Free(r.Body).Where(x => x != r.Var).ToHashSet(),
            _ => Children(e).SelectMany(Free).ToHashSet(),
        };
        _free[e] = f;
        return f;
    }

    /// <summary>Whether <paramref name="e"/> reduces anywhere.</summary>
    public static bool HasReduction(KExpr e) => e is KReduce || Children(e).Any(HasReduction);

    /// <summary>The direct subexpressions of <paramref name="e"/>.</summary>
    public static IEnumerable<KExpr> Children(KExpr e) =>
        e switch
        {
            KBin b => [b.A, b.B],
            KUn u => [u.A],
            KCast c => [c.A],
            KCmp c => [c.A, c.B],
            KSelect s => [s.Cond, s.Then, s.Else],
            KLoad l => [l.Flat],
            KReduce r => [r.Body],
            KRound r => [r.A],
            _ => [],
        };
}
