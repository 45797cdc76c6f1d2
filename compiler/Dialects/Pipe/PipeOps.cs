using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Pipe;

/// <summary><c>pipe.boundary</c>: an explicit pipeline stage boundary from a <c>stage;</c> statement.</summary>
public sealed class BoundaryOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.boundary";
    /// <inheritdoc/>
    public override string Summary => "a user-given pipeline stage boundary (operations before it belong to earlier stages)";
    /// <inheritdoc/>
    public override bool IsPure => false;
    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => [];
}
