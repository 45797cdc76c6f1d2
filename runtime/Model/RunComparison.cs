using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Model;

/// <summary>One array of a run against the same array of a reference run.</summary>
/// <param name="Name">"out", "out1", "loss", or a parameter's or optimizer state's dotted path.</param>
/// <param name="Error">The largest difference relative to max(|expected|, 1); 0 when they are equal.</param>
/// <param name="Index">Where it is (flat), or -1 when they are equal.</param>
public sealed record ArrayDifference(string Name, DType DType, double Error, long Index, double Expected, double Got);

/// <summary>
/// Compares two runs of one program array by array: every result, every step's loss and, for training, every
/// updated parameter and optimizer state. Used where a run is checked against a reference run of the same
/// program on the same inputs: <c>mplc run --check</c> (the mesh against one device) and <c>mplrun --compare cpu</c>
/// (a GPU against the host).
/// </summary>
public static class RunComparison
{
    /// <summary>The difference of every array of <paramref name="got"/> from <paramref name="reference"/>, results
    /// first.</summary>
    public static List<ArrayDifference> Compare(RunOutcome reference, RunOutcome got, bool training)
    {
        var pairs = new List<(string Name, NDArray Expected, NDArray Got)>();
        for (int i = 0; i < reference.Results.Count; i++)
            pairs.Add((reference.Results.Count == 1 ? "out" : $"out{i}", reference.Results[i], got.Results[i]));
        if (reference.Losses is { } l && got.Losses is { } g)
            pairs.Add(("loss", NDArray.FromFloats([l.Length], l), NDArray.FromFloats([g.Length], g)));
        if (training)
            foreach (var (path, value) in reference.Parameters)
                if (got.Parameters.TryGetValue(path, out var other))
                    pairs.Add((path, value, other));
        return pairs
            .Select(p =>
            {
                if (!p.Expected.Shape.SequenceEqual(p.Got.Shape))
                    return new ArrayDifference(
                        p.Name,
                        p.Expected.DType,
                        double.PositiveInfinity,
                        -1,
                        double.NaN,
                        double.NaN
                    );
                var (err, i) = ArrayOps.WorstRelativeDifference(p.Expected, p.Got);
                return new ArrayDifference(
                    p.Name,
                    p.Expected.DType,
                    i < 0 ? 0 : err,
                    i,
                    i < 0 ? 0 : p.Expected.GetDouble(i),
                    i < 0 ? 0 : p.Got.GetDouble(i)
                );
            })
            .ToList();
    }

    /// <summary>
    /// How far a distributed run may drift from one device for arrays of <paramref name="t"/>: a few units in the
    /// last place of the type, since only the order of additions differs (partial sums added across devices, a
    /// mean taken in parts); integers must be equal.
    /// </summary>
    public static double Tolerance(DType t) =>
        t switch
        {
            DType.F32 => 2e-5,
            DType.F16 => 4e-3,
            DType.BF16 => 3e-2,
            _ => 0,
        };

    /// <summary>The worst difference of a list, or null when every array is equal.</summary>
    public static ArrayDifference? Worst(IEnumerable<ArrayDifference> diffs) =>
        diffs.Where(d => d.Index >= 0 || double.IsInfinity(d.Error)).MaxBy(d => d.Error);
}
