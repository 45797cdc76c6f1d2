using ParallelCompiler.IR;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

/// <summary>What an expression evaluates to during elaboration: a tensor in the IR, or a compile-time value.</summary>
internal abstract record EValue
{
    /// <summary>A short description for messages ("an integer", "a tensor f32[8, 64]").</summary>
    public abstract string Describe();
}

/// <summary>An IR value.</summary>
internal sealed record TensorVal(Value Value) : EValue
{
    public TensorType Type => Value.TensorType;

    public override string Describe() => $"a tensor {Type.ToSourceString()}";
}

/// <summary>A compile-time integer (consts, loop variables, literals).</summary>
internal sealed record IntVal(long Value) : EValue
{
    public override string Describe() => $"the integer {Value}";
}

/// <summary>A compile-time float (literals and functions of consts such as sqrt(HD)).</summary>
internal sealed record FloatVal(double Value) : EValue
{
    public override string Describe() => $"the number {Value}";
}

/// <summary>true or false.</summary>
internal sealed record BoolVal(bool Value) : EValue
{
    public override string Describe() => "a bool";
}

/// <summary>A string literal.</summary>
internal sealed record StringVal(string Value) : EValue
{
    public override string Describe() => "a string";
}

/// <summary>A list literal.</summary>
internal sealed record ListVal(IReadOnlyList<EValue> Items, IReadOnlyList<Expr> Exprs) : EValue
{
    public override string Describe() => "a list";
}

/// <summary>A shard[...] literal.</summary>
internal sealed record ShardVal(ShardSpec Spec) : EValue
{
    public override string Describe() => "a sharding";
}

/// <summary>An error at a span of the source, raised during elaboration and turned into a diagnostic.</summary>
internal sealed class ElabException(TextSpan span, string message) : Exception(message)
{
    public TextSpan Span { get; } = span;
}

/// <summary>
/// A name whose statement failed (its error already reported): reading it stops the statement that reads it
/// without a second report, so one mistake gives one error however often its value is used.
/// </summary>
internal sealed record ErrorVal : EValue
{
    public override string Describe() => "a value whose definition failed";
}

/// <summary>Stops elaborating a statement that depends on one already reported as wrong; never shown.</summary>
internal sealed class ReportedException() : Exception("an error already reported");
