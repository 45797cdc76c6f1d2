using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Cpu;

/// <summary>
/// A shared library of compiled host kernels, each <c>void name(void** buffers)</c> taking its input buffers then
/// its output buffer. Loaded once; every simulated device calls into it (the kernels keep no state).
/// </summary>
public sealed class HostKernelLibrary : IDisposable
{
    private readonly IntPtr _handle;
    private readonly Dictionary<string, HostKernel> _kernels = [];

    /// <summary>Loads the library at <paramref name="path"/>; a file that is not a loadable library is an error naming
    /// it.</summary>
    public HostKernelLibrary(string path)
    {
        try
        {
            _handle = NativeLibrary.Load(Path.GetFullPath(path));
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            throw new InvalidDataException($"cannot load the kernel library '{path}': {e.Message}", e);
        }
    }

    /// <summary>The kernel exported as <paramref name="name"/>.</summary>
    public HostKernel Kernel(string name)
    {
        lock (_kernels)
        {
            if (_kernels.TryGetValue(name, out var k))
                return k;
            if (!NativeLibrary.TryGetExport(_handle, name, out var fn))
                throw new InvalidDataException($"the kernel library has no kernel '{name}'");
            return _kernels[name] = new HostKernel(name, fn);
        }
    }

    /// <summary>The address of the exported function <paramref name="name"/>.</summary>
    public IntPtr Export(string name) =>
        NativeLibrary.TryGetExport(_handle, name, out var fn)
            ? fn
            : throw new InvalidDataException($"the kernel library has no kernel '{name}'");

    /// <inheritdoc/>
    public void Dispose() => NativeLibrary.Free(_handle);
}

/// <summary>One compiled host kernel: pins its buffers and calls the function with their addresses.</summary>
public sealed unsafe class HostKernel(string name, IntPtr function) : IHostKernel
{
    /// <inheritdoc/>
    public string Name { get; } = name;

    /// <inheritdoc/>
    public void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
    {
        int n = inputs.Count + outputs.Count;
        var handles = new GCHandle[n];
        var pointers = stackalloc IntPtr[n];
        try
        {
            for (int i = 0; i < n; i++)
            {
                var a = i < inputs.Count ? inputs[i] : outputs[i - inputs.Count];
                handles[i] = GCHandle.Alloc(a.F != null ? a.F : a.I!, GCHandleType.Pinned);
                pointers[i] = handles[i].AddrOfPinnedObject();
            }
            ((delegate* unmanaged<IntPtr*, void>)function)(pointers);
        }
        finally
        {
            foreach (var h in handles)
                if (h.IsAllocated)
                    h.Free();
        }
    }
}
