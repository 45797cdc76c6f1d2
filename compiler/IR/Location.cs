namespace ParallelCompiler.IR;

/// <summary>Where an operation came from in the source: file, 1-based line and column. Printed as
/// loc("f.mpl":3:7).</summary>
public sealed record Location(string File, int Line, int Column)
{
    /// <summary>No known location.</summary>
    public static readonly Location Unknown = new("", 0, 0);

    /// <summary>True for <see cref="Unknown"/>.</summary>
    public bool IsUnknown => Line == 0;

    /// <inheritdoc/>
    public override string ToString() => IsUnknown ? "loc(unknown)" : $"loc({StringAttr.Quote(File)}:{Line}:{Column})";
}
