using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// A logical device on a GPU. Its arrays stay in GPU memory from the kernel that writes them to the last one that
/// reads them (and are freed then); the host sees only what it copies in (inputs and parameters) and out (results
/// and parameter updates). Kernels launch with the launch shapes the bundle's manifest records.
/// </summary>
public sealed class GpuDevice(int rank, GpuHeap heap, GpuArrayOps ops, IReadOnlyDictionary<string, KernelInfo> kernels)
    : IDevice<GpuArray>
{
    /// <inheritdoc/>
    public int Ordinal => rank;

    /// <inheritdoc/>
    public string Name => $"{heap.Gpu.Name} (device {rank})";

    /// <inheritdoc/>
    public IArrayOps<GpuArray> Ops => ops;

    /// <inheritdoc/>
    public GpuArray Allocate(DType dtype, long[] shape, bool zero = true) => heap.Allocate(dtype, shape, zero);

    /// <inheritdoc/>
    public unsafe GpuArray CopyIn(NDArray host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var a = heap.Allocate(host.DType, host.Shape, zero: false);
        if (a.Count == 0)
            return a;
        if (host.F != null)
            fixed (float* p = host.F)
                heap.Gpu.CopyToDevice(a.Pointer, p, a.Bytes);
        else
            fixed (int* p = host.I)
                heap.Gpu.CopyToDevice(a.Pointer, p, a.Bytes);
        return a;
    }

    /// <inheritdoc/>
    public unsafe NDArray CopyOut(GpuArray array)
    {
        heap.CheckLive(array, $"copy to the host on {Name}");
        var host = NDArray.Zeros(array.DType, array.Shape);
        if (array.Count == 0)
            return host;
        if (host.F != null)
            fixed (float* p = host.F)
                heap.Gpu.CopyToHost(p, array.Pointer, array.Bytes);
        else
            fixed (int* p = host.I)
                heap.Gpu.CopyToHost(p, array.Pointer, array.Bytes);
        return host;
    }

    /// <inheritdoc/>
    public void Launch(IKernel kernel, IReadOnlyList<GpuArray> inputs, IReadOnlyList<GpuArray> outputs)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!kernels.TryGetValue(kernel.Name, out var launch))
            throw new InvalidOperationException($"the bundle has no GPU kernel '{kernel.Name}'");
        Span<ulong> pointers = stackalloc ulong[inputs.Count + outputs.Count];
        int i = 0;
        foreach (var a in inputs.Concat(outputs))
        {
            heap.CheckLive(a, $"kernel {kernel.Name}");
            pointers[i++] = a.Pointer;
        }
        heap.Gpu.Launch(launch, pointers, []);
    }

    /// <inheritdoc/>
    public void Release(GpuArray array) => heap.Free(array);
}
