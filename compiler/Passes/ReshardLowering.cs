using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// Turns one layout change into collectives on the local value, by the table of split (S), replicated (R) and
/// partial (P) layouts: S to R all_gather; R to S all_slice; S on dim i to S on dim j all_to_all; P to R
/// all_reduce; P to S reduce_scatter; anything else a sequence of these in the order gather, all_to_all,
/// reduce, slice, so no axis is used twice on the way and no more is gathered than must be.
/// </summary>
public static class ReshardLowering
{
    /// <summary>Emits the collectives that take <paramref name="v"/> (local) from <paramref name="from"/> to <paramref name="to"/>; returns the new local value.</summary>
    public static Value Emit(Builder b, Value v, Sharding from, Sharding to, DeviceMesh mesh)
    {
        int rank = from.Rank;
        var cur = from.Dims.Select(d => d.ToList()).ToArray();
        var remove = new List<string>[rank];
        var add = new List<string>[rank];
        for (int d = 0; d < rank; d++)
        {
            int common = 0;
            while (common < cur[d].Count && common < to.Dims[d].Count && cur[d][common] == to.Dims[d][common]) common++;
            remove[d] = cur[d].Skip(common).ToList();
            add[d] = to.Dims[d].Skip(common).ToList();
        }
        var reduce = from.Partial.Where(a => !to.Partial.Contains(a)).ToList();
        if (to.Partial.Any(a => !from.Partial.Contains(a)))
            throw new IRException($"reshard: cannot turn {from} into {to}: a complete value does not become a partial sum");

        // A split that moves whole from one dimension to another is one all_to_all instead of a gather and a slice.
        var moves = new List<(int From, int To, List<string> Axes)>();
        for (int i = 0; i < rank; i++)
            for (int j = 0; j < rank; j++)
                // Dimension j must be at its kept prefix when the axes arrive (so it is no move's source) and dimension i
                // must end in the moved axes when they leave (so it is no move's target).
                if (i != j && remove[i].Count > 0 && remove[i].SequenceEqual(add[j]) && !moves.Any(m => m.To == j || m.From == j || m.To == i))
                {
                    moves.Add((i, j, remove[i]));
                    break;
                }
        for (int d = 0; d < rank; d++)
            if (remove[d].Count > 0 && !moves.Any(m => m.From == d))
                v = Collective(b, "dist.all_gather", v, remove[d], mesh, ("dim", d));
        foreach (var (i, j, axes) in moves)
        {
            v = Collective(b, "dist.all_to_all", v, axes, mesh, ("split_dim", j), ("concat_dim", i));
            add[j] = [];
        }
        for (int d = 0; d < rank && reduce.Count > 0; d++)
        {
            var scatter = add[d].TakeWhile(reduce.Contains).ToList();
            if (scatter.Count == 0) continue;
            v = Collective(b, "dist.reduce_scatter", v, scatter, mesh, ("dim", d));
            add[d] = add[d].Skip(scatter.Count).ToList();
            reduce.RemoveAll(scatter.Contains);
        }
        if (reduce.Count > 0 && mesh.Product(reduce) > 1)
            v = b.CreateValue("dist.all_reduce", [v], [new("axes", Attr.Strs(reduce)), new("reduction", Attr.Str("sum"))], v.Type);
        for (int d = 0; d < rank; d++)
            if (add[d].Count > 0) v = Collective(b, "dist.all_slice", v, add[d], mesh, ("dim", d));
        return v;
    }

    private static Value Collective(Builder b, string name, Value v, IReadOnlyList<string> axes, DeviceMesh mesh, params (string Key, int Dim)[] dims)
    {
        var shape = v.TensorType.ShapeArray;
        long n = mesh.Product(axes);
        if (n == 1) return v; // a group of one device moves nothing
        foreach (var (key, d) in dims)
            shape[d] = key is "concat_dim" || name == "dist.all_gather" ? shape[d] * n : shape[d] / n;
        var attrs = new List<KeyValuePair<string, Attr>> { new("axes", Attr.Strs(axes)) };
        attrs.AddRange(dims.Select(x => new KeyValuePair<string, Attr>(x.Key, Attr.Int(x.Dim))));
        return b.CreateValue(name, [v], attrs, v.TensorType.WithShape(shape));
    }
}
