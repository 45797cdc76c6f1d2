namespace ParallelCompiler.Runtime.Distributed;

/// <summary>How an all_reduce combines the members' arrays.</summary>
public enum ReduceKind
{
    /// <summary>Elementwise sum (f16 and bf16 rounded after each addition, i32 wrapping).</summary>
    Sum,

    /// <summary>Elementwise maximum.</summary>
    Max,
}
