using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Cuda.Native;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>A GPU's primary context, made current on the calling thread by <see cref="MakeCurrent"/> (shaped like
/// ManagedCuda's CudaContext).</summary>
public sealed class CudaContext : IDisposable
{
    private readonly int _device;

    /// <summary>The context handle.</summary>
    public IntPtr Handle { get; }

    /// <summary>The driver version, e.g. 13000.</summary>
    public int DriverVersion { get; }

    /// <summary>Retains the primary context of GPU <paramref name="ordinal"/>.</summary>
    public CudaContext(int ordinal)
    {
        CudaApi.Check(CudaApi.cuInit(0), "cuInit");
        CudaApi.Check(CudaApi.cuDeviceGet(out _device, ordinal), "cuDeviceGet");
        CudaApi.Check(CudaApi.cuDevicePrimaryCtxRetain(out var ctx, _device), "cuDevicePrimaryCtxRetain");
        Handle = ctx;
        CudaApi.Check(CudaApi.cuDriverGetVersion(out int v), "cuDriverGetVersion");
        DriverVersion = v;
        MakeCurrent();
    }

    /// <summary>Makes the context current on this thread.</summary>
    public void MakeCurrent() => CudaApi.Check(CudaApi.cuCtxSetCurrent(Handle), "cuCtxSetCurrent");

    /// <summary>Waits for all work of the context.</summary>
    public void Synchronize() => CudaApi.Check(CudaApi.cuCtxSynchronize(), "cuCtxSynchronize");

    /// <summary>The device ordinal.</summary>
    public int Device => _device;

    /// <summary>Loads PTX text as a module of this context.</summary>
    public unsafe CudaModule LoadModulePtx(string ptx)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(ptx + "\0");
        fixed (byte* p = bytes)
        {
            CudaApi.Check(
                CudaApi.cuModuleLoadDataEx(out var module, p, 0, IntPtr.Zero, IntPtr.Zero),
                "cuModuleLoadDataEx"
            );
            return new CudaModule(module);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => CudaApi.cuDevicePrimaryCtxRelease(_device);
}

/// <summary>A loaded PTX module.</summary>
public sealed class CudaModule(IntPtr handle) : IDisposable
{
    /// <summary>The kernel exported as <paramref name="name"/>, launched with the given grid and block.</summary>
    public CudaKernel Kernel(string name, (uint X, uint Y, uint Z) grid, (uint X, uint Y, uint Z) block)
    {
        CudaApi.Check(CudaApi.cuModuleGetFunction(out var f, handle, name), $"cuModuleGetFunction({name})");
        return new CudaKernel(name, f, grid, block);
    }

    /// <inheritdoc/>
    public void Dispose() => CudaApi.cuModuleUnload(handle);
}

/// <summary>
/// A kernel of a module with its launch shape. <see cref="Launch"/> queues it on a stream (the default one unless
/// given); <see cref="Run(ulong[])"/> launches it between two events and waits, returning the time on the GPU.
/// </summary>
public sealed unsafe class CudaKernel(
    string name,
    IntPtr function,
    (uint X, uint Y, uint Z) grid,
    (uint X, uint Y, uint Z) block
)
{
    /// <summary>Its symbol.</summary>
    public string Name { get; } = name;

    /// <summary>Queues a launch on <paramref name="stream"/> (zero: the legacy default stream) with one 64-bit value
    /// per parameter (device pointers, then integers) and returns.</summary>
    public void Launch(
        ReadOnlySpan<ulong> arguments,
        (uint X, uint Y, uint Z) grid,
        (uint X, uint Y, uint Z) block,
        IntPtr stream = default
    )
    {
        var values = stackalloc ulong[arguments.Length];
        var parameters = stackalloc void*[arguments.Length];
        for (int i = 0; i < arguments.Length; i++)
        {
            values[i] = arguments[i];
            parameters[i] = &values[i];
        }
        CudaApi.Check(
            CudaApi.cuLaunchKernel(
                function,
                grid.X,
                grid.Y,
                grid.Z,
                block.X,
                block.Y,
                block.Z,
                0,
                stream,
                parameters,
                null
            ),
            $"cuLaunchKernel({Name})"
        );
    }

    /// <summary>Launches with one 64-bit value per parameter, waits, and returns the time on the GPU.</summary>
    public TimeSpan Run(params ulong[] arguments) => Run(arguments.AsSpan(), grid, block);

    /// <summary>Like <see cref="Run(ulong[])"/>, with another grid and block, on <paramref name="stream"/> (zero: the
    /// legacy default stream).</summary>
    public TimeSpan Run(
        ReadOnlySpan<ulong> arguments,
        (uint X, uint Y, uint Z) grid,
        (uint X, uint Y, uint Z) block,
        IntPtr stream = default
    )
    {
        CudaApi.Check(CudaApi.cuEventCreate(out var start, 0), "cuEventCreate");
        CudaApi.Check(CudaApi.cuEventCreate(out var end, 0), "cuEventCreate");
        try
        {
            CudaApi.Check(CudaApi.cuEventRecord(start, stream), "cuEventRecord");
            Launch(arguments, grid, block, stream);
            CudaApi.Check(CudaApi.cuEventRecord(end, stream), "cuEventRecord");
            CudaApi.Check(CudaApi.cuEventSynchronize(end), $"cuEventSynchronize after {Name}");
            CudaApi.Check(CudaApi.cuEventElapsedTime(out float ms, start, end), "cuEventElapsedTime");
            return TimeSpan.FromMilliseconds(ms);
        }
        finally
        {
            CudaApi.cuEventDestroy(start);
            CudaApi.cuEventDestroy(end);
        }
    }
}

/// <summary>A device buffer of <typeparamref name="T"/> (shaped like ManagedCuda's CudaDeviceVariable).</summary>
public sealed unsafe class CudaDeviceVariable<T> : IDisposable
    where T : unmanaged
{
    /// <summary>The device pointer.</summary>
    public ulong DevicePointer { get; }

    /// <summary>Number of elements.</summary>
    public long Size { get; }

    /// <summary>Allocates <paramref name="size"/> elements.</summary>
    public CudaDeviceVariable(long size)
    {
        Size = size;
        CudaApi.Check(CudaApi.cuMemAlloc(out var p, (nuint)(Math.Max(1, size) * sizeof(T))), "cuMemAlloc");
        DevicePointer = p;
    }

    /// <summary>Copies <paramref name="host"/> to the device.</summary>
    public void CopyToDevice(T[] host)
    {
        fixed (T* p = host)
            CudaApi.Check(CudaApi.cuMemcpyHtoD(DevicePointer, p, (nuint)(host.Length * sizeof(T))), "cuMemcpyHtoD");
    }

    /// <summary>Copies the device buffer into <paramref name="host"/>.</summary>
    public void CopyToHost(T[] host)
    {
        fixed (T* p = host)
            CudaApi.Check(CudaApi.cuMemcpyDtoH(p, DevicePointer, (nuint)(host.Length * sizeof(T))), "cuMemcpyDtoH");
    }

    /// <inheritdoc/>
    public void Dispose() => CudaApi.cuMemFree(DevicePointer);
}
