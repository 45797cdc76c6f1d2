using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// One device's side of a collective in an <see cref="InProcessWorld{T}"/>: what it asked for, which it compares with
/// its peers' calls, and how to compute every member's result from the inputs in group order.
/// </summary>
/// <param name="Rank">The calling device.</param>
/// <param name="Site">Where the program issued it.</param>
/// <param name="Group">The members' ranks in group order.</param>
/// <param name="Signature">Everything the members must agree on (kind, parameters, group order, array type); compared
/// as text.</param>
/// <param name="Display">The call as messages show it, e.g. <c>all_gather(dim 1) over [tp] of f32[2, 4]</c>.</param>
/// <param name="Span">What the collective spans for messages: <c>over [tp]</c>.</param>
/// <param name="Compute">The members' results, by group position, from their inputs by group position.</param>
internal sealed record CollectiveCall<T>(
    int Rank,
    CollectiveSite Site,
    int[] Group,
    string Signature,
    string Display,
    string Span,
    Func<T[], T[]> Compute
)
    where T : class, IArray
{
    /// <summary>How the data moves, for a link that moves it directly instead of gathering every input (null: a
    /// reduction, described by its <c>Reduction</c>, or nothing the link needs to know).</summary>
    public Movement? Moves { get; init; }
}

/// <summary>What a collective that does not reduce moves: an all_gather along <paramref name="ConcatDim"/>, an
/// all_to_all from <paramref name="SplitDim"/> to <paramref name="ConcatDim"/>, or a collective_permute of <paramref
/// name="Pairs"/> (source, target) over all devices.</summary>
internal sealed record Movement(string Kind, int SplitDim, int ConcatDim, (int Source, int Target)[]? Pairs = null)
{
    /// <summary>The kinds.</summary>
    public const string AllGather = "all_gather",
        AllToAll = "all_to_all",
        Permute = "collective_permute";
}
