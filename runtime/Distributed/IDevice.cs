using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// One device as the executor sees it: arrays of kind <typeparamref name="T"/> in its memory, copies between host
/// and device, and kernel launches. The CPU back end simulates it with host arrays; the GPU one keeps its arrays in
/// GPU memory from the first kernel to the last, so the host sees only inputs, parameters, results and updates.
/// </summary>
public interface IDevice<T>
    where T : class, IArray
{
    /// <summary>The device's number among the devices of its back end.</summary>
    int Ordinal { get; }

    /// <summary>A name for messages, e.g. <c>cpu:3</c>.</summary>
    string Name { get; }

    /// <summary>The whole-array operations on its arrays (what collectives and microbatch sums compute with).</summary>
    IArrayOps<T> Ops { get; }

    /// <summary>A new array of <paramref name="dtype"/> and <paramref name="shape"/>, zero-filled unless <paramref
    /// name="zero"/> is false (a kernel's output, which it writes whole).</summary>
    T Allocate(DType dtype, long[] shape, bool zero = true);

    /// <summary>A new device array holding the values of host array <paramref name="host"/>.</summary>
    T CopyIn(NDArray host);

    /// <summary>A new host array holding the values of device array <paramref name="array"/>.</summary>
    NDArray CopyOut(T array);

    /// <summary>Runs <paramref name="kernel"/> over device arrays; returns once the outputs can be read.</summary>
    void Launch(IKernel kernel, IReadOnlyList<T> inputs, IReadOnlyList<T> outputs);

    /// <summary>Gives back the memory of an array nothing reads any more (host arrays are left to the
    /// collector).</summary>
    void Release(T array);
}
