using System.Text;

namespace ParallelCompiler.IR;

/// <summary>How a factor of an op's iteration space may be split over mesh axes.</summary>
public enum FactorKind
{
    /// <summary>Every tensor that has the factor is split the same way and each device computes its block.</summary>
    Parallel,

    /// <summary>A contracted or summed factor: splitting it leaves each device a partial sum of the result.</summary>
    Reduction,

    /// <summary>The op needs the whole factor on every device (a gathered table's rows, a masked axis).</summary>
    NeedReplication,

    /// <summary>
    /// A factor every result element needs whole, which the op may still split: its per-device form exchanges
    /// what the blocks need from each other (a softmax's or cross-entropy's maximum and sum over split classes,
    /// all-reduced), so its results are complete over the factor's axes. Propagation lays it out as a parallel
    /// factor; spmdize writes the exchange.
    /// </summary>
    Exchanged,
}

/// <summary>
/// An op's sharding rule, as an einsum names its indices: the factors of the op's iteration space with their
/// sizes and kinds, and for every dimension of every operand and result the factors it is made of (major
/// first: a dimension of a reshape may be several factors; a broadcast dimension of size 1 is none).
/// Propagation and spmdize read shardings through these rules only, so an op needs no other sharding logic.
/// </summary>
public sealed class ShardingRule
{
    /// <summary>Size of each factor.</summary>
    public IReadOnlyList<long> FactorSizes { get; }

    /// <summary>Kind of each factor.</summary>
    public IReadOnlyList<FactorKind> Kinds { get; }

    /// <summary>Per operand, per dimension, the factor indices (major first).</summary>
    public IReadOnlyList<int[][]> Operands { get; }

    /// <summary>Per result, per dimension, the factor indices (major first).</summary>
    public IReadOnlyList<int[][]> Results { get; }

    /// <summary>Creates a rule; every factor index must be in range and dimension sizes must match their
    /// factors.</summary>
    public ShardingRule(
        IReadOnlyList<long> sizes,
        IReadOnlyList<FactorKind> kinds,
        IReadOnlyList<int[][]> operands,
        IReadOnlyList<int[][]> results
    )
    {
        if (sizes.Count != kinds.Count)
            throw new ArgumentException("one kind per factor");
        FactorSizes = sizes;
        Kinds = kinds;
        Operands = operands;
        Results = results;
        foreach (var f in operands.Concat(results).SelectMany(t => t).SelectMany(d => d))
            if (f < 0 || f >= sizes.Count)
                throw new ArgumentException($"factor {f} out of range");
    }

    /// <summary>Number of factors.</summary>
    public int NumFactors => FactorSizes.Count;

    /// <summary>The factors of every tensor: operands first, then results.</summary>
    public IEnumerable<int[][]> Tensors => Operands.Concat(Results);

    /// <summary>Einsum-like text, e.g. <c>([a, b], [b, c]) -> ([a, c]) {a=8, b=64, c=256} reduction={b}</c>.</summary>
    public override string ToString()
    {
        string F(int f) => f < 26 ? ((char)('a' + f)).ToString() : $"f{f}";
        string T(int[][] dims) =>
            "["
            + string.Join(
                ", ",
                dims.Select(d =>
                    d.Length switch
                    {
                        0 => "_",
                        1 => F(d[0]),
                        _ => "(" + string.Join(" ", d.Select(F)) + ")",
                    }
                )
            )
            + "]";
        var sb = new StringBuilder();
        sb.Append('(')
            .Append(string.Join(", ", Operands.Select(T)))
            .Append(") -> (")
            .Append(string.Join(", ", Results.Select(T)))
            .Append(") {");
        sb.Append(string.Join(", ", Enumerable.Range(0, NumFactors).Select(f => $"{F(f)}={FactorSizes[f]}")))
            .Append('}');
        foreach (var kind in new[] { FactorKind.Reduction, FactorKind.NeedReplication, FactorKind.Exchanged })
        {
            var fs = Enumerable.Range(0, NumFactors).Where(f => Kinds[f] == kind).ToArray();
            if (fs.Length > 0)
                sb.Append(
                        kind switch
                        {
                            FactorKind.Reduction => " reduction={",
                            FactorKind.NeedReplication => " replicated={",
                            _ => " exchanged={",
                        }
                    )
                    .Append(string.Join(", ", fs.Select(F)))
                    .Append('}');
        }
        return sb.ToString();
    }
}

/// <summary>Builds a <see cref="ShardingRule"/> factor by factor.</summary>
public sealed class ShardingRuleBuilder
{
    private readonly List<long> _sizes = new();
    private readonly List<FactorKind> _kinds = new();
    private readonly List<int[][]> _operands = new();
    private readonly List<int[][]> _results = new();

    /// <summary>Adds a factor and returns its index.</summary>
    public int Factor(long size, FactorKind kind = FactorKind.Parallel)
    {
        _sizes.Add(size);
        _kinds.Add(kind);
        return _sizes.Count - 1;
    }

    /// <summary>One factor per dimension of <paramref name="shape"/>; returns their indices.</summary>
    public int[] Factors(IReadOnlyList<long> shape, FactorKind kind = FactorKind.Parallel) =>
        shape.Select(d => Factor(d, kind)).ToArray();

    /// <summary>Makes factor <paramref name="f"/> one that must stay whole.</summary>
    public void Replicate(int f) => _kinds[f] = FactorKind.NeedReplication;

    /// <summary>Makes factor <paramref name="f"/> one the op may split by exchanging between the blocks.</summary>
    public void Exchange(int f) => _kinds[f] = FactorKind.Exchanged;

    /// <summary>Adds an operand whose dimension d is the single factor dims[d] (-1 for none).</summary>
    public ShardingRuleBuilder Operand(params int[] dims) => Operand(Dims(dims));

    /// <summary>Adds an operand with explicit factor lists per dimension.</summary>
    public ShardingRuleBuilder Operand(int[][] dims)
    {
        _operands.Add(dims);
        return this;
    }

    /// <summary>Adds a result whose dimension d is the single factor dims[d] (-1 for none).</summary>
    public ShardingRuleBuilder Result(params int[] dims) => Result(Dims(dims));

    /// <summary>Adds a result with explicit factor lists per dimension.</summary>
    public ShardingRuleBuilder Result(int[][] dims)
    {
        _results.Add(dims);
        return this;
    }

    /// <summary>An operand broadcast numpy-style against <paramref name="factors"/> of the result shape: aligned from
    /// the right, size-1 dimensions that stretch have no factor.</summary>
    public ShardingRuleBuilder BroadcastOperand(
        IReadOnlyList<long> operandShape,
        IReadOnlyList<long> resultShape,
        int[] factors
    )
    {
        int off = resultShape.Count - operandShape.Count;
        return Operand(operandShape.Select((d, i) => d == resultShape[i + off] ? factors[i + off] : -1).ToArray());
    }

    /// <summary>The rule.</summary>
    public ShardingRule Build() => new(_sizes, _kinds, _operands, _results);

    private static int[][] Dims(int[] dims) => dims.Select(f => f < 0 ? Array.Empty<int>() : new[] { f }).ToArray();
}
