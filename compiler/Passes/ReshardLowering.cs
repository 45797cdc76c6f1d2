using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// Turns one layout change into collectives on the local value, by the table of split (S), replicated (R) and
/// partial (P) layouts: S to R all_gather; R to S all_slice; S on dim i to S on dim j all_to_all; P to R
/// all_reduce; P to S reduce_scatter; anything else a sequence of these in the order gather, all_to_all,
/// reduce, slice, so no axis is used twice on the way and no more is gathered than must be (a sum over the
/// microbatch axis, which is local, first of all). The same plan
/// gives the cost (bytes a device sends) that insert-reshards weighs layouts by.
/// </summary>
public static class ReshardLowering
{
    /// <summary>One collective of a plan: its op, its group's axes and the dimension(s) it acts on.</summary>
    public readonly record struct Step(string Op, IReadOnlyList<string> Axes, int Dim, int Dim2);

    /// <summary>The collectives that take a value from <paramref name="from"/> to <paramref name="to"/>, in order
    /// (groups of one device left out).</summary>
    public static List<Step> Plan(Sharding from, Sharding to, DeviceMesh mesh, bool scatterFirst = false)
    {
        int rank = from.Rank;
        var remove = new List<string>[rank];
        var add = new List<string>[rank];
        for (int d = 0; d < rank; d++)
        {
            int common = 0;
            while (
                common < from.Dims[d].Count && common < to.Dims[d].Count && from.Dims[d][common] == to.Dims[d][common]
            )
                common++;
            remove[d] = from.Dims[d].Skip(common).ToList();
            add[d] = to.Dims[d].Skip(common).ToList();
        }
        var reduce = from.Partial.Where(a => !to.Partial.Contains(a)).ToList();
        if (to.Partial.Any(a => !from.Partial.Contains(a)))
            throw new IRException(
                $"reshard: cannot turn {from} into {to}: a complete value does not become a partial " + $"sum"
            );

        var steps = new List<Step>();
        void Add(string op, IReadOnlyList<string> axes, int dim, int dim2 = 0)
        {
            // a group of one device moves nothing
            if (mesh.Product(axes) > 1)
                steps.Add(new Step(op, axes.ToArray(), dim, dim2));
        }
        // Microbatches run in time on one device: their sum is a local accumulation, so it comes first and every
        // collective after it runs once per step rather than once per microbatch.
        // Under ZeRO-2 and -3 (scatterFirst) a reduce-scatter over the other axes comes first instead, once per
        // microbatch, so that the sum over them adds shards.
        bool microbatches = reduce.Contains(Microbatch.Axis),
            later =
                scatterFirst
                && microbatches
                && add.Any(a => a.Count > 0 && a[0] != Microbatch.Axis && reduce.Contains(a[0]));
        if (microbatches && !later)
        {
            reduce.Remove(Microbatch.Axis);
            Add("dist.all_reduce", [Microbatch.Axis], 0);
        }
        // A split that moves whole from one dimension to another is one all_to_all instead of a gather and a slice.
        var moves = new List<(int From, int To, List<string> Axes)>();
        for (int i = 0; i < rank; i++)
        for (int j = 0; j < rank; j++)
            // Dimension j must be at its kept prefix when the axes arrive (so it is no move's source) and dimension
            // i
            // must end in the moved axes when they leave (so it is no move's target).
            if (
                i != j
                && remove[i].Count > 0
                && remove[i].SequenceEqual(add[j])
                && !moves.Any(m => m.To == j || m.From == j || m.To == i)
            )
            {
                moves.Add((i, j, remove[i]));
                break;
            }
        for (int d = 0; d < rank; d++)
            if (remove[d].Count > 0 && !moves.Any(m => m.From == d))
                Add("dist.all_gather", remove[d], d);
        foreach (var (i, j, axes) in moves)
        {
            Add("dist.all_to_all", axes, j, i);
            add[j] = [];
        }
        for (int d = 0; d < rank && reduce.Count > 0; d++)
        {
            var scatter = add[d].TakeWhile(reduce.Contains).ToList();
            if (scatter.Count == 0)
                continue;
            Add("dist.reduce_scatter", scatter, d);
            add[d] = add[d].Skip(scatter.Count).ToList();
            reduce.RemoveAll(scatter.Contains);
        }
        if (later)
        {
            reduce.Remove(Microbatch.Axis);
            if (reduce.Count > 0)
                Add("dist.all_reduce", reduce, 0);
            Add("dist.all_reduce", [Microbatch.Axis], 0);
        }
        else if (reduce.Count > 0)
            Add("dist.all_reduce", reduce, 0);
        for (int d = 0; d < rank; d++)
            if (add[d].Count > 0)
                Add("dist.all_slice", add[d], d);
        return steps;
    }

    /// <summary>Emits the collectives that take <paramref name="v"/> (local) from <paramref name="from"/> to <paramref
    /// name="to"/>; returns the new local value.</summary>
    public static Value Emit(Builder b, Value v, Sharding from, Sharding to, DeviceMesh mesh, bool scatterFirst = false)
    {
        foreach (var s in Plan(from, to, mesh, scatterFirst))
        {
            if (s.Op == "dist.all_reduce")
            {
                v = b.CreateValue(
                    s.Op,
                    [v],
                    [new("axes", Attr.Strs(s.Axes)), new("reduction", Attr.Str("sum"))],
                    v.Type
                );
                continue;
            }
            var shape = v.TensorType.ShapeArray;
            long n = mesh.Product(s.Axes);
            var attrs = new List<KeyValuePair<string, Attr>> { new("axes", Attr.Strs(s.Axes)) };
            if (s.Op == "dist.all_to_all")
            {
                shape[s.Dim] /= n;
                shape[s.Dim2] *= n;
                attrs.Add(new("split_dim", Attr.Int(s.Dim)));
                attrs.Add(new("concat_dim", Attr.Int(s.Dim2)));
            }
            else
            {
                shape[s.Dim] = s.Op == "dist.all_gather" ? shape[s.Dim] * n : shape[s.Dim] / n;
                attrs.Add(new("dim", Attr.Int(s.Dim)));
            }
            v = b.CreateValue(s.Op, [v], attrs, v.TensorType.WithShape(shape));
        }
        return v;
    }

    /// <summary>
    /// Bytes one device sends to change the layout of a tensor of <paramref name="global"/> type, under ring
    /// algorithms: all_gather (n-1) local blocks, all_reduce 2(n-1)/n, reduce_scatter and all_to_all (n-1)/n of the
    /// local block, all_slice nothing.
    /// </summary>
    public static double Cost(TensorType global, Sharding from, Sharding to, DeviceMesh mesh)
    {
        if (from.Equals(to))
            return 0;
        double local =
            global.NumElements
            * Runtime.Arrays.DTypes.Size(global.DType)
            / (double)mesh.Product(from.Axes.Except(from.Partial).ToArray());
        double sent = 0;
        foreach (var s in Plan(from, to, mesh))
        {
            if (s.Axes.SequenceEqual([Microbatch.Axis]))
                continue; // summed on the device, nothing sent
            double n = mesh.Product(s.Axes);
            switch (s.Op)
            {
                case "dist.all_gather":
                    sent += (n - 1) * local;
                    local *= n;
                    break;
                case "dist.all_reduce":
                    sent += 2 * (n - 1) / n * local;
                    break;
                case "dist.reduce_scatter":
                    sent += (n - 1) / n * local;
                    local /= n;
                    break;
                case "dist.all_to_all":
                    sent += (n - 1) / n * local;
                    break;
                case "dist.all_slice":
                    local /= n;
                    break;
            }
        }
        return sent;
    }
}
