using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>A compiled computation that runs on the host over device buffers; the CUDA back end adds its own kind.</summary>
public interface IKernel
{
    /// <summary>What it computes, for messages and profiles (usually the op it was made from).</summary>
    string Name { get; }

    /// <summary>Reads <paramref name="inputs"/> and writes every element of <paramref name="outputs"/>.</summary>
    void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs);
}
