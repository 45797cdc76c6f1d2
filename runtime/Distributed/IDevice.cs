using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// One device as the executor sees it: buffers, copies between host and device, and kernel launches. The CPU back
/// end simulates it with host arrays; the CUDA one drives a GPU through the driver API.
/// </summary>
public interface IDevice
{
    /// <summary>The device's number among the devices of its back end.</summary>
    int Ordinal { get; }

    /// <summary>A name for messages, e.g. <c>cpu:3</c>.</summary>
    string Name { get; }

    /// <summary>A new zero-filled buffer of <paramref name="dtype"/> and <paramref name="shape"/>.</summary>
    NDArray Allocate(DType dtype, long[] shape);

    /// <summary>A new device buffer holding the values of host array <paramref name="host"/>.</summary>
    NDArray CopyIn(NDArray host);

    /// <summary>A new host array holding the values of device buffer <paramref name="buffer"/>.</summary>
    NDArray CopyOut(NDArray buffer);

    /// <summary>Runs <paramref name="kernel"/> over device buffers; returns once the outputs can be read.</summary>
    void Launch(IKernel kernel, IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs);
}
