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
    where T : class, IArray;
