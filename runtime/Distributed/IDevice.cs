using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>A computation a device can launch on its buffers.</summary>
public interface IKernel
{
    /// <summary>What it computes (the op it was made from).</summary>
    string Name { get; }
    /// <summary>Runs on the host: reads <paramref name="inputs"/>, fills <paramref name="outputs"/>.</summary>
    void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs);
}

/// <summary>One device: buffers and kernel launches. The CPU back end simulates it; the CUDA one drives a GPU.</summary>
public interface IDevice
{
    /// <summary>The device's number among its kind.</summary>
    int Ordinal { get; }
    /// <summary>A name for messages.</summary>
    string Name { get; }
    /// <summary>A zeroed buffer.</summary>
    NDArray Allocate(DType dtype, long[] shape);
    /// <summary>A device buffer holding <paramref name="host"/>'s values.</summary>
    NDArray CopyIn(NDArray host);
    /// <summary>A host array holding the buffer's values.</summary>
    NDArray CopyOut(NDArray buffer);
    /// <summary>Runs <paramref name="kernel"/>.</summary>
    void Launch(IKernel kernel, IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs);
}

/// <summary>A simulated device: buffers are host arrays and kernels run on the calling thread.</summary>
public sealed class SimulatedCpuDevice(int ordinal) : IDevice
{
    /// <inheritdoc/>
    public int Ordinal => ordinal;
    /// <inheritdoc/>
    public string Name => $"cpu:{ordinal}";
    /// <summary>Bytes allocated so far.</summary>
    public long BytesAllocated { get; private set; }
    /// <summary>Kernels launched so far.</summary>
    public long Launches { get; private set; }

    /// <inheritdoc/>
    public NDArray Allocate(DType dtype, long[] shape)
    {
        var a = NDArray.Zeros(dtype, shape);
        BytesAllocated += a.Size * dtype.Size();
        return a;
    }

    /// <inheritdoc/>
    public NDArray CopyIn(NDArray host)
    {
        BytesAllocated += host.Size * host.DType.Size();
        return ArrayOps.Copy(host);
    }

    /// <inheritdoc/>
    public NDArray CopyOut(NDArray buffer) => ArrayOps.Copy(buffer);

    /// <inheritdoc/>
    public void Launch(IKernel kernel, IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
    {
        Launches++;
        kernel.Execute(inputs, outputs);
    }
}
