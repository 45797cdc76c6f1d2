using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A simulated device: buffers are host arrays and kernels run on the calling thread (the device's own thread in an
/// <see cref="InProcessWorld"/>). It counts what a real device would cost, to check memory plans and launch counts.
/// </summary>
public sealed class SimulatedCpuDevice : IDevice<NDArray>
{
    private long _bytes,
        _launches,
        _in,
        _out;

    /// <summary>A device numbered <paramref name="ordinal"/>.</summary>
    public SimulatedCpuDevice(int ordinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        Ordinal = ordinal;
        Name = $"cpu:{ordinal}";
    }

    /// <inheritdoc/>
    public int Ordinal { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public IArrayOps<NDArray> Ops => HostArrayOps.Instance;

    /// <summary>Bytes of device memory allocated so far, at the device size of each dtype (2 for f16 and
    /// bf16).</summary>
    public long BytesAllocated => Interlocked.Read(ref _bytes);

    /// <summary>Bytes copied in from the host so far (inputs and parameters).</summary>
    public long BytesCopiedIn => Interlocked.Read(ref _in);

    /// <summary>Bytes copied out to the host so far (results and parameter updates).</summary>
    public long BytesCopiedOut => Interlocked.Read(ref _out);

    /// <summary>Kernels launched so far.</summary>
    public long Launches => Interlocked.Read(ref _launches);

    /// <inheritdoc/>
    public NDArray Allocate(DType dtype, long[] shape, bool zero = true)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var buffer = NDArray.Zeros(dtype, (long[])shape.Clone());
        Interlocked.Add(ref _bytes, buffer.Size * dtype.Size());
        return buffer;
    }

    /// <inheritdoc/>
    public NDArray CopyIn(NDArray host)
    {
        var buffer = ArrayOps.Copy(host);
        Interlocked.Add(ref _bytes, buffer.Size * buffer.DType.Size());
        Interlocked.Add(ref _in, buffer.Size * 4);
        return buffer;
    }

    /// <inheritdoc/>
    public NDArray CopyOut(NDArray buffer)
    {
        Interlocked.Add(ref _out, buffer.Size * 4);
        return ArrayOps.Copy(buffer);
    }

    /// <inheritdoc/>
    public void Launch(IKernel kernel, IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        if (kernel is not IHostKernel host)
            throw new InvalidOperationException(
                $"kernel '{kernel.Name}' has no host " + $"code: a {Name} runs host kernels only"
            );
        Interlocked.Increment(ref _launches);
        host.Execute(inputs, outputs);
    }

    /// <inheritdoc/>
    public void Release(NDArray array) => HostBuffers.Return(array);
}
