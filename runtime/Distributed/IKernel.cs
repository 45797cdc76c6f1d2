using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>A compiled computation as a device program names it; the device it runs on decides how to launch
/// it.</summary>
public interface IKernel
{
    /// <summary>What it computes, for messages and profiles (usually the symbol of its kernel function).</summary>
    string Name { get; }
}

/// <summary>A kernel known by its symbol only: what a GPU device launches by name from its loaded module.</summary>
public sealed record KernelRef(string Name) : IKernel;

/// <summary>A kernel that runs on the host over host arrays (compiled host code, or the reference
/// interpreter).</summary>
public interface IHostKernel : IKernel
{
    /// <summary>Reads <paramref name="inputs"/> and writes every element of <paramref name="outputs"/>.</summary>
    void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs);
}
