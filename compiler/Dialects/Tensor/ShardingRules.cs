using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary>Sharding rules shared by several tensor ops.</summary>
public static class ShardingRules
{
    /// <summary>One factor per dimension shared by the operand and the result; the listed axes must stay
    /// whole.</summary>
    public static ShardingRule Pointwise(IReadOnlyList<long> shape, params int[] wholeAxes) =>
        Build(shape, 1, wholeAxes);

    /// <summary>A one-operand pointwise rule except along <paramref name="axis"/>, which the op may split by
    /// exchanging between the blocks (<see cref="FactorKind.Exchanged"/>).</summary>
    public static ShardingRule PointwiseExchanged(IReadOnlyList<long> shape, int axis)
    {
        var b = new ShardingRuleBuilder();
        var f = b.Factors(shape);
        b.Exchange(f[axis]);
        return b.Operand(f).Result(f).Build();
    }

    /// <summary>An op without operands (a constant, a parameter): one factor per result dimension.</summary>
    public static ShardingRule Source(IReadOnlyList<long> shape) => Build(shape, 0, []);

    private static ShardingRule Build(IReadOnlyList<long> shape, int operands, int[] wholeAxes)
    {
        var b = new ShardingRuleBuilder();
        var f = b.Factors(shape);
        foreach (int a in wholeAxes)
            b.Replicate(f[a]);
        for (int i = 0; i < operands; i++)
            b.Operand(f);
        return b.Result(f).Build();
    }

    /// <summary>
    /// A reshape's factors: dimensions are matched in groups of equal products; where one side of a group is a
    /// single dimension it is made of the other side's dimensions as factors (major first), so a split or merged
    /// dimension keeps its sharding. Groups with several dimensions on both sides must stay whole.
    /// </summary>
    public static ShardingRule Reshape(IReadOnlyList<long> from, IReadOnlyList<long> to)
    {
        var b = new ShardingRuleBuilder();
        var op = new int[from.Count][];
        var res = new int[to.Count][];
        if (from.Contains(0) || to.Contains(0))
        {
            for (int x = 0; x < from.Count; x++)
                op[x] = [b.Factor(from[x], FactorKind.NeedReplication)];
            for (int y = 0; y < to.Count; y++)
                res[y] = [b.Factor(to[y], FactorKind.NeedReplication)];
            return b.Operand(op).Result(res).Build();
        }
        int i = 0,
            j = 0;
        while (i < from.Count || j < to.Count)
        {
            bool oneIn = i < from.Count && from[i] == 1,
                oneOut = j < to.Count && to[j] == 1;
            if (oneIn && oneOut)
            {
                int f = b.Factor(1);
                op[i++] = [f];
                res[j++] = [f];
                continue;
            }
            if (oneIn || j == to.Count)
            {
                op[i] = [b.Factor(from[i])];
                i++;
                continue;
            }
            if (oneOut || i == from.Count)
            {
                res[j] = [b.Factor(to[j])];
                j++;
                continue;
            }
            var gi = new List<int> { i };
            var gj = new List<int> { j };
            long ps = from[i++],
                pt = to[j++];
            while (ps != pt)
            {
                if (ps < pt)
                {
                    ps *= from[i];
                    gi.Add(i++);
                }
                else
                {
                    pt *= to[j];
                    gj.Add(j++);
                }
            }
            if (gi.Count == 1 || gj.Count == 1)
            {
                var (many, manyShape, one, single) = gi.Count == 1 ? (gj, to, op, gi[0]) : (gi, from, res, gj[0]);
                var fs = many.Select(d => b.Factor(manyShape[d])).ToArray();
                var manySide = gi.Count == 1 ? res : op;
                for (int k = 0; k < many.Count; k++)
                    manySide[many[k]] = [fs[k]];
                one[single] = fs;
            }
            else
            {
                foreach (int d in gi)
                    op[d] = [b.Factor(from[d], FactorKind.NeedReplication)];
                foreach (int d in gj)
                    res[d] = [b.Factor(to[d], FactorKind.NeedReplication)];
            }
        }
        return b.Operand(op).Result(res).Build();
    }
}
