namespace ParallelCompiler.Lowering;

/// <summary>What the command line may change about a .mpl program before it is lowered.</summary>
public sealed class CompileOptions
{
    /// <summary>Const overrides from <c>-D NAME=VALUE</c>.</summary>
    public Dictionary<string, long> Defines { get; } = new(StringComparer.Ordinal);

    /// <summary>Const overrides from <c>-D NAME=VALUE</c> whose value is not an integer (a learning rate).</summary>
    public Dictionary<string, double> FloatDefines { get; } = new(StringComparer.Ordinal);

    /// <summary>Mesh axis sizes from <c>--mesh a=2,b=4</c>, in the order given.</summary>
    public List<KeyValuePair<string, long>> Mesh { get; } = new();

    /// <summary>The model to compile when the file has several (<c>--entry</c>).</summary>
    public string? Entry { get; set; }
}
