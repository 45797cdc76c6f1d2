using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// Every member's result of a collective from all members' inputs in group order, with one kind's array operations:
/// the one definition of what a collective computes, which the in-process world and the MPI processes share, so
/// that their results are equal bit for bit. Results never alias the inputs or each other.
/// </summary>
internal static class CollectiveMath
{
    /// <summary>The reduction of all inputs, one copy a member.</summary>
    public static T[] AllReduce<T>(IArrayOps<T> ops, T[] xs, ReduceKind kind)
        where T : class, IArray => Copies(ops, kind == ReduceKind.Sum ? ops.Sum(xs) : ops.Max(xs), xs.Length);

    /// <summary>The inputs joined along <paramref name="dim"/>, one copy a member.</summary>
    public static T[] AllGather<T>(IArrayOps<T> ops, T[] xs, int dim)
        where T : class, IArray => Copies(ops, ops.Concat(xs, dim), xs.Length);

    /// <summary>The sum cut along <paramref name="dim"/>; member i gets chunk i.</summary>
    public static T[] ReduceScatter<T>(IArrayOps<T> ops, T[] xs, int dim)
        where T : class, IArray
    {
        var sum = ops.Sum(xs);
        var chunks = ops.Split(sum, dim, xs.Length);
        ops.Release(sum);
        return chunks;
    }

    /// <summary>Member j gets chunk j (along <paramref name="splitDim"/>) of every input, joined along <paramref
    /// name="concatDim"/> in group order.</summary>
    public static T[] AllToAll<T>(IArrayOps<T> ops, T[] xs, int splitDim, int concatDim)
        where T : class, IArray
    {
        int n = xs.Length;
        var chunks = Array.ConvertAll(xs, a => ops.Split(a, splitDim, n));
        var results = new T[n];
        var column = new T[n];
        for (int j = 0; j < n; j++)
        {
            for (int i = 0; i < n; i++)
                column[i] = chunks[i][j];
            results[j] = ops.Concat(column, concatDim);
        }
        foreach (var chunk in chunks.SelectMany(c => c))
            ops.Release(chunk);
        return results;
    }

    /// <summary>A target gets a copy of its source's input, every other member zeros (inputs by global
    /// rank).</summary>
    public static T[] Permute<T>(IArrayOps<T> ops, T[] xs, IReadOnlyList<(int Source, int Target)> pairs)
        where T : class, IArray
    {
        var results = new T[xs.Length];
        foreach (var (source, target) in pairs)
            results[target] = ops.Copy(xs[source]);
        for (int i = 0; i < results.Length; i++)
            results[i] ??= ops.Zeros(xs[i].DType, xs[i].Shape);
        return results;
    }

    // The first member keeps the computed array; every other one gets its own copy, so no two devices alias.
    private static T[] Copies<T>(IArrayOps<T> ops, T r, int n)
        where T : class, IArray
    {
        var results = new T[n];
        results[0] = r;
        for (int i = 1; i < n; i++)
            results[i] = ops.Copy(r);
        return results;
    }
}
