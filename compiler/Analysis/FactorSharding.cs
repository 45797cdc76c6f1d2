using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Analysis;

/// <summary>
/// Shardings seen through an op's <see cref="ShardingRule"/>: a tensor's per-dimension axes read as per-factor
/// axes, one agreed assignment of axes to the op's factors, and that assignment written back as each tensor's
/// sharding. Propagation, insert-reshards and spmdize all go through here, so they cannot disagree.
/// </summary>
public static class FactorSharding
{
    /// <summary>A tensor taking part in an op: its sharding (null when not decided) and how strongly it holds
    /// it.</summary>
    public readonly record struct Vote(Sharding? Sharding, long Weight);

    /// <summary>
    /// The axes of each factor as <paramref name="s"/> lays out a tensor whose dimensions are <paramref name="dims"/>.
    /// A dimension's axes fill its factors major first; an axis moves on to the next factor only once the current
    /// one is fully split, and axes that do not divide what is left are dropped (that layout needs a reshard).
    /// </summary>
    public static List<string>[] Read(ShardingRule rule, int[][] dims, Sharding s, DeviceMesh mesh)
    {
        var axes = Empty(rule.NumFactors);
        for (int d = 0; d < dims.Length && d < s.Rank; d++)
        {
            var fs = dims[d];
            int k = 0;
            long rem = fs.Length > 0 ? rule.FactorSizes[fs[0]] : 0;
            foreach (var a in s.Dims[d])
            {
                while (k < fs.Length && rem == 1 && k + 1 < fs.Length)
                    rem = rule.FactorSizes[fs[++k]];
                long size = mesh.Size(a);
                if (k >= fs.Length || rem % size != 0)
                    break;
                axes[fs[k]].Add(a);
                rem /= size;
            }
        }
        return axes;
    }

    /// <summary>Writes an assignment back as a tensor's sharding (with the given partial-sum axes).</summary>
    public static Sharding Project(
        ShardingRule rule,
        int[][] dims,
        IReadOnlyList<string>[] assign,
        DeviceMesh mesh,
        IEnumerable<string>? partial = null
    )
    {
        var result = new List<string>[dims.Length];
        for (int d = 0; d < dims.Length; d++)
        {
            result[d] = new List<string>();
            foreach (int f in dims[d])
            {
                result[d].AddRange(assign[f]);
                // Only a fully split factor may be followed by the next one's axes: the blocks must stay contiguous.
                if (mesh.Product(assign[f]) != rule.FactorSizes[f])
                    break;
            }
        }
        return new Sharding(result, partial);
    }

    /// <summary>
    /// One assignment of mesh axes to the op's factors from the tensors' votes (operands, then results). The
    /// conflict rule: per factor, the heaviest tensor that splits it wins (ties go to the earlier tensor), so the
    /// larger tensor stays in place and the smaller is resharded. Then, heaviest first, each factor keeps the
    /// longest prefix of its axes that no other factor of the op uses and whose product divides the factor;
    /// factors the op needs whole get none; and a factor that follows a not fully split one in some dimension
    /// gets none, so every tensor can hold the assignment.
    /// </summary>
    public static List<string>[] Resolve(ShardingRule rule, IReadOnlyList<Vote> votes, DeviceMesh mesh)
    {
        int n = rule.NumFactors;
        var tensors = rule.Tensors.ToArray();
        var best = Empty(n);
        var weight = new long[n];
        Array.Fill(weight, -1);
        for (int t = 0; t < votes.Count && t < tensors.Length; t++)
        {
            if (votes[t].Sharding is not { } s)
                continue;
            var read = Read(rule, tensors[t], s, mesh);
            for (int f = 0; f < n; f++)
                if (read[f].Count > 0 && votes[t].Weight > weight[f])
                {
                    best[f] = read[f];
                    weight[f] = votes[t].Weight;
                }
        }
        var assign = Empty(n);
        var used = new HashSet<string>();
        foreach (int f in Enumerable.Range(0, n).OrderByDescending(f => weight[f]).ThenBy(f => f))
        {
            if (rule.Kinds[f] == FactorKind.NeedReplication)
                continue;
            long product = 1;
            foreach (var a in best[f])
            {
                long size = mesh.Size(a);
                if (used.Contains(a) || rule.FactorSizes[f] % (product * size) != 0)
                    break;
                assign[f].Add(a);
                used.Add(a);
                product *= size;
            }
        }
        for (bool changed = true; changed; )
        {
            changed = false;
            foreach (var dims in tensors)
            foreach (var fs in dims)
                for (int i = 0; i + 1 < fs.Length; i++)
                    if (mesh.Product(assign[fs[i]]) != rule.FactorSizes[fs[i]] && assign[fs[i + 1]].Count > 0)
                    {
                        assign[fs[i + 1]].Clear();
                        changed = true;
                    }
        }
        return assign;
    }

    /// <summary>The axes over which the op's result is a partial sum: those of its split reduction factors, in mesh
    /// order.</summary>
    public static string[] PartialAxes(ShardingRule rule, IReadOnlyList<string>[] assign, DeviceMesh mesh) =>
        Enumerable
            .Range(0, rule.NumFactors)
            .Where(f => rule.Kinds[f] == FactorKind.Reduction)
            .SelectMany(f => assign[f])
            .OrderBy(a => mesh.AxisNames.ToList().IndexOf(a))
            .ToArray();

    /// <summary>The sharding rule of an op as it stands (global types), or null when it has none.</summary>
    public static ShardingRule? RuleOf(Operation op)
    {
        if (op.Def is not { } def)
            return null;
        var sig = new OpSignature(op.Name, op.Operands.Select(v => v.TensorType).ToArray(), op.Attributes, null);
        return def.GetShardingRule(sig, op.Results.Select(r => r.TensorType).ToArray());
    }

    private static List<string>[] Empty(int n) => Enumerable.Range(0, n).Select(_ => new List<string>()).ToArray();
}
