namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// Where a device issued a collective or transfer, for error messages only: <paramref name="Op"/> is the program's
/// name for it (<c>dist.all_reduce</c>), <paramref name="Where"/> a source or IR location, <paramref name="Step"/>
/// the index of the instruction in the device's program.
/// </summary>
public readonly record struct CollectiveSite(string Op, string Where, long Step)
{
    /// <summary>The site as messages print it: <c>dist.all_reduce at step 12 (model.mpl:9:12)</c>.</summary>
    public override string ToString() =>
        string.IsNullOrEmpty(Where) ? $"{Op} at step {Step}" : $"{Op} at step {Step} ({Where})";
}
