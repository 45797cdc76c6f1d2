using System.Runtime.InteropServices;

namespace ParallelCompiler.Runtime.Cuda.Native;

#pragma warning disable CS1591 // entry points named as in the CUDA driver API (cuda.h); its documentation applies

/// <summary>CUDA driver API result codes used here (CUresult); everything else is reported by number and
/// name.</summary>
public enum CUResult
{
    Success = 0,
    ErrorInvalidValue = 1,
    ErrorOutOfMemory = 2,
    ErrorNotInitialized = 3,
    ErrorNoDevice = 100,
    ErrorInvalidDevice = 101,
    ErrorInvalidPtx = 218,
    ErrorUnsupportedPtxVersion = 222,
    ErrorNotFound = 500,
    ErrorPeerAccessAlreadyEnabled = 704,
}

/// <summary>A CUDA call failed: names the call and the driver's error.</summary>
public sealed class CudaException(string call, CUResult result, string text)
    : Distributed.DeviceException($"{call} failed: {(int)result} {text}")
{
    /// <summary>The driver's result code.</summary>
    public CUResult Result { get; } = result;
}

/// <summary>
/// The CUDA driver API (libcuda.so.1, or the library <c>MPLC_CUDA_LIBRARY</c> names) entry points the runtime uses, by
/// P/Invoke, with <c>_v2</c> names where the library exports them. <see cref="Check"/> turns a result into a <see
/// cref="CudaException"/> naming the call.
/// </summary>
public static unsafe class CudaApi
{
    private const string Lib = "libcuda.so.1";

    // MPLC_CUDA_LIBRARY names the driver library to load instead of the system's libcuda.so.1 (a driver installed
    // elsewhere, or a stand-in); other libraries of this assembly resolve as usual.
    static CudaApi() =>
        NativeLibrary.SetDllImportResolver(
            typeof(CudaApi).Assembly,
            (name, _, _) =>
                name == Lib && Environment.GetEnvironmentVariable("MPLC_CUDA_LIBRARY") is { Length: > 0 } path
                    ? NativeLibrary.Load(path)
                    : IntPtr.Zero
        );

    /// <summary>Throws unless <paramref name="r"/> is success.</summary>
    public static void Check(CUResult r, string call)
    {
        if (r == CUResult.Success)
            return;
        string text =
            cuGetErrorString(r, out var p) == CUResult.Success && p != IntPtr.Zero
                ? Marshal.PtrToStringAnsi(p) ?? ""
                : r.ToString();
        throw new CudaException(call, r, text);
    }

    /// <summary>True when libcuda loads and reports at least one device.</summary>
    public static bool Available(out string why)
    {
        try
        {
            var r = cuInit(0);
            if (r != CUResult.Success)
            {
                why = $"cuInit failed ({(int)r})";
                return false;
            }
            int n = DeviceCount();
            why = n > 0 ? "" : "no CUDA device";
            return n > 0;
        }
        catch (DllNotFoundException)
        {
            why = Environment.GetEnvironmentVariable("MPLC_CUDA_LIBRARY") is { Length: > 0 } path
                ? $"no CUDA driver (MPLC_CUDA_LIBRARY={path} does not load)"
                : "no CUDA driver (libcuda.so.1 not found)";
            return false;
        }
        catch (EntryPointNotFoundException e)
        {
            why = $"the CUDA driver lacks an entry point: {e.Message}";
            return false;
        }
    }

    /// <summary>The number of GPUs (cuInit must have succeeded).</summary>
    public static int DeviceCount()
    {
        Check(cuDeviceGetCount(out int n), "cuDeviceGetCount");
        return n;
    }

    [DllImport(Lib)]
    public static extern CUResult cuInit(uint flags);

    [DllImport(Lib)]
    public static extern CUResult cuDriverGetVersion(out int version);

    [DllImport(Lib)]
    public static extern CUResult cuDeviceGetCount(out int count);

    [DllImport(Lib)]
    public static extern CUResult cuDeviceGet(out int device, int ordinal);

    [DllImport(Lib)]
    public static extern CUResult cuDeviceGetAttribute(out int value, int attribute, int device);

    [DllImport(Lib)]
    public static extern CUResult cuDevicePrimaryCtxRetain(out IntPtr context, int device);

    [DllImport(Lib)]
    public static extern CUResult cuDevicePrimaryCtxRelease(int device);

    [DllImport(Lib)]
    public static extern CUResult cuCtxSetCurrent(IntPtr context);

    [DllImport(Lib)]
    public static extern CUResult cuCtxSynchronize();

    [DllImport(Lib)]
    public static extern CUResult cuModuleLoadDataEx(
        out IntPtr module,
        byte* image,
        uint numOptions,
        IntPtr options,
        IntPtr values
    );

    [DllImport(Lib)]
    public static extern CUResult cuModuleUnload(IntPtr module);

    [DllImport(Lib)]
    public static extern CUResult cuModuleGetFunction(
        out IntPtr function,
        IntPtr module,
        [MarshalAs(UnmanagedType.LPStr)] string name
    );

    [DllImport(Lib)]
    public static extern CUResult cuLaunchKernel(
        IntPtr function,
        uint gridX,
        uint gridY,
        uint gridZ,
        uint blockX,
        uint blockY,
        uint blockZ,
        uint sharedBytes,
        IntPtr stream,
        void** parameters,
        void** extra
    );

    [DllImport(Lib, EntryPoint = "cuMemAlloc_v2")]
    public static extern CUResult cuMemAlloc(out ulong pointer, nuint bytes);

    [DllImport(Lib, EntryPoint = "cuMemFree_v2")]
    public static extern CUResult cuMemFree(ulong pointer);

    [DllImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")]
    public static extern CUResult cuMemcpyHtoD(ulong dst, void* src, nuint bytes);

    [DllImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")]
    public static extern CUResult cuMemcpyDtoH(void* dst, ulong src, nuint bytes);

    [DllImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")]
    public static extern CUResult cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, IntPtr stream);

    [DllImport(Lib, EntryPoint = "cuMemcpyDtoD_v2")]
    public static extern CUResult cuMemcpyDtoD(ulong dst, ulong src, nuint bytes);

    [DllImport(Lib)]
    public static extern CUResult cuMemcpyPeerAsync(
        ulong dst,
        IntPtr dstContext,
        ulong src,
        IntPtr srcContext,
        nuint bytes,
        IntPtr stream
    );

    [DllImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")]
    public static extern CUResult cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, IntPtr stream);

    [DllImport(Lib)]
    public static extern CUResult cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);

    [DllImport(Lib)]
    public static extern CUResult cuStreamCreate(out IntPtr stream, uint flags);

    [DllImport(Lib, EntryPoint = "cuStreamDestroy_v2")]
    public static extern CUResult cuStreamDestroy(IntPtr stream);

    [DllImport(Lib)]
    public static extern CUResult cuStreamSynchronize(IntPtr stream);

    [DllImport(Lib)]
    public static extern CUResult cuStreamWaitEvent(IntPtr stream, IntPtr e, uint flags);

    [DllImport(Lib, EntryPoint = "cuMemsetD8_v2")]
    public static extern CUResult cuMemsetD8(ulong dst, byte value, nuint count);

    [DllImport(Lib, EntryPoint = "cuMemGetInfo_v2")]
    public static extern CUResult cuMemGetInfo(out nuint free, out nuint total);

    [DllImport(Lib)]
    public static extern CUResult cuGetErrorString(CUResult error, out IntPtr text);

    [DllImport(Lib)]
    public static extern CUResult cuEventCreate(out IntPtr e, uint flags);

    [DllImport(Lib)]
    public static extern CUResult cuEventRecord(IntPtr e, IntPtr stream);

    [DllImport(Lib)]
    public static extern CUResult cuEventSynchronize(IntPtr e);

    [DllImport(Lib)]
    public static extern CUResult cuEventElapsedTime(out float milliseconds, IntPtr start, IntPtr end);

    [DllImport(Lib, EntryPoint = "cuEventDestroy_v2")]
    public static extern CUResult cuEventDestroy(IntPtr e);
}
