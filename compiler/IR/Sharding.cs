using System.Text;

namespace ParallelCompiler.IR;

/// <summary>
/// How a tensor is laid out over the named axes of the device mesh: for every dimension the mesh axes it is
/// split over (major first; none means replicated along that dimension), plus the axes over which the value is
/// an unreduced partial sum. Printed as <c>shard[dp, _]</c>, <c>shard[(dp, tp), _]</c>, <c>shard[_, _] partial(tp)</c>.
/// </summary>
public sealed class Sharding : IEquatable<Sharding>
{
    /// <summary>Per dimension, the mesh axes it is split over.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Dims { get; }

    /// <summary>Mesh axes over which the value is a partial sum.</summary>
    public IReadOnlyList<string> Partial { get; }

    /// <summary>Creates a sharding; an axis may appear at most once in all.</summary>
    public Sharding(IEnumerable<IEnumerable<string>> dims, IEnumerable<string>? partial = null)
    {
        Dims = dims.Select(d => (IReadOnlyList<string>)d.ToArray()).ToArray();
        Partial = (partial ?? Array.Empty<string>()).ToArray();
        var seen = new HashSet<string>();
        foreach (var a in Dims.SelectMany(d => d).Concat(Partial))
            if (!seen.Add(a))
                throw new ArgumentException($"mesh axis '{a}' appears more than once in {this}");
    }

    /// <summary>Fully replicated sharding of the given rank.</summary>
    public static Sharding Replicated(int rank) => new(Enumerable.Repeat(Array.Empty<string>(), rank));

    /// <summary>Number of dimensions.</summary>
    public int Rank => Dims.Count;

    /// <summary>True when no dimension is split and nothing is partial.</summary>
    public bool IsReplicated => Dims.All(d => d.Count == 0) && Partial.Count == 0;

    /// <summary>All axes used by this sharding.</summary>
    public IEnumerable<string> Axes => Dims.SelectMany(d => d).Concat(Partial);

    /// <inheritdoc/>
    public bool Equals(Sharding? o) =>
        o != null
        && o.Rank == Rank
        && Partial.SequenceEqual(o.Partial)
        && Dims.Zip(o.Dims).All(p => p.First.SequenceEqual(p.Second));

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as Sharding);

    /// <inheritdoc/>
    public override int GetHashCode() => ToString().GetHashCode();

    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder("shard[");
        for (int i = 0; i < Dims.Count; i++)
        {
            if (i > 0)
                sb.Append(", ");
            var d = Dims[i];
            if (d.Count == 0)
                sb.Append('_');
            else if (d.Count == 1)
                sb.Append(d[0]);
            else
                sb.Append('(').Append(string.Join(", ", d)).Append(')');
        }
        sb.Append(']');
        if (Partial.Count > 0)
            sb.Append(" partial(").Append(string.Join(", ", Partial)).Append(')');
        return sb.ToString();
    }
}
