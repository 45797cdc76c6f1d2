using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary>Shape arithmetic shared by the tensor ops (numpy's rules).</summary>
public static class ShapeRules
{
    /// <summary>numpy broadcasting of two shapes, or null when they are incompatible.</summary>
    public static long[]? Broadcast(IReadOnlyList<long> a, IReadOnlyList<long> b)
    {
        int n = Math.Max(a.Count, b.Count);
        var r = new long[n];
        for (int i = 0; i < n; i++)
        {
            long da = i < n - a.Count ? 1 : a[i - (n - a.Count)];
            long db = i < n - b.Count ? 1 : b[i - (n - b.Count)];
            if (da != db && da != 1 && db != 1)
                return null;
            r[i] = da == 1 ? db : da;
        }
        return r;
    }

    /// <summary>True when <paramref name="from"/> broadcasts to exactly <paramref name="to"/>.</summary>
    public static bool BroadcastsTo(IReadOnlyList<long> from, IReadOnlyList<long> to)
    {
        var r = Broadcast(from, to);
        return r != null && r.AsSpan().SequenceEqual(to.ToArray());
    }

    /// <summary>A possibly negative axis made non-negative; throws naming the op when out of range.</summary>
    public static long NormalizeAxis(OpSignature sig, long axis, int rank)
    {
        if (axis < -rank || axis >= Math.Max(rank, 1) || (rank == 0))
            throw sig.Error($"axis {axis} is out of range for a tensor of rank {rank}");
        return axis < 0 ? axis + rank : axis;
    }

    /// <summary>Normalises the single integer attribute <paramref name="key"/> as an axis of the first
    /// operand.</summary>
    public static IReadOnlyDictionary<string, Attr> NormalizeAxisAttr(
        string op,
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs,
        string key = "axis"
    )
    {
        var sig = new OpSignature(op, operands, attrs, null);
        return new Dictionary<string, Attr> { [key] = Attr.Int(NormalizeAxis(sig, sig.Int(key), operands[0].Rank)) };
    }

    /// <summary>Formats a shape as the language does: [8, 64].</summary>
    public static string Str(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
