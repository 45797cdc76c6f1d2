using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Cuda;

/// <summary>
/// The CUDA back end of a bundle: its PTX loaded on GPU 0, every logical device of the mesh sharing that GPU. A
/// kernel launch stages its buffers through the GPU (copy in, launch with the manifest's grid and block, copy out);
/// values between kernels and the collectives stay in host memory, so the communicator is the in-process one.
/// </summary>
public sealed class CudaBackend : IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaModule _module;
    private readonly Dictionary<string, KernelInfo> _launch;
    private readonly Dictionary<string, IKernel> _kernels = [];
    private readonly Lock _gate = new();

    /// <summary>Per kernel: launches and the time spent in launch and execution on the GPU (buffer copies excluded).</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, (int Launches, double Milliseconds)> GpuTime { get; } = new();

    private CudaBackend(CudaContext context, CudaModule module, IEnumerable<KernelInfo> kernels)
    {
        _context = context;
        _module = module;
        _launch = kernels.ToDictionary(k => k.Name);
    }

    /// <summary>Loads the bundle's PTX; a machine without a GPU is an input error saying so.</summary>
    public static CudaBackend Open(Bundle bundle) => Open(File.ReadAllText(bundle.PathOf("kernels.ptx")), bundle.Manifest.Kernels);

    /// <summary>Loads <paramref name="ptx"/> on GPU 0 with the launch shapes of its kernels.</summary>
    public static CudaBackend Open(string ptx, IEnumerable<KernelInfo> kernels)
    {
        if (!Native.CudaApi.Available(out string why)) throw new RunInputException($"--backend cuda: {why}");
        var ctx = new CudaContext(0);
        try { return new CudaBackend(ctx, ctx.LoadModulePtx(ptx), kernels); }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    /// <summary>The kernel named <paramref name="name"/>.</summary>
    public IKernel Kernel(string name)
    {
        lock (_gate)
        {
            if (_kernels.TryGetValue(name, out var k)) return k;
            var info = _launch.TryGetValue(name, out var i) ? i : throw new InvalidDataException($"the manifest has no launch shape for kernel '{name}'");
            var kernel = _module.Kernel(name, ((uint)info.Grid[0], (uint)info.Grid[1], (uint)info.Grid[2]), ((uint)info.Block[0], (uint)info.Block[1], (uint)info.Block[2]));
            return _kernels[name] = new StagedKernel(kernel, _context, _gate, GpuTime);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _module.Dispose();
        _context.Dispose();
    }

    /// <summary>A launch that copies its operands to the GPU and its result back; one launch at a time on the shared GPU.</summary>
    private sealed class StagedKernel(CudaKernel kernel, CudaContext context, Lock gate,
        System.Collections.Concurrent.ConcurrentDictionary<string, (int Launches, double Milliseconds)> times) : IHostKernel
    {
        public string Name => kernel.Name;

        public void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
        {
            lock (gate)
            {
                context.MakeCurrent();
                var buffers = new List<IDisposable>();
                try
                {
                    var pointers = new List<ulong>();
                    foreach (var a in inputs.Concat(outputs))
                    {
                        if (a.F != null)
                        {
                            var v = new CudaDeviceVariable<float>(a.F.Length);
                            buffers.Add(v);
                            v.CopyToDevice(a.F);
                            pointers.Add(v.DevicePointer);
                        }
                        else
                        {
                            var v = new CudaDeviceVariable<int>(a.I!.Length);
                            buffers.Add(v);
                            v.CopyToDevice(a.I);
                            pointers.Add(v.DevicePointer);
                        }
                    }
                    var t = kernel.Run([.. pointers]);
                    times.AddOrUpdate(kernel.Name, (1, t.TotalMilliseconds), (_, x) => (x.Launches + 1, x.Milliseconds + t.TotalMilliseconds));
                    var o = outputs[0];
                    if (o.F != null) ((CudaDeviceVariable<float>)buffers[^1]).CopyToHost(o.F);
                    else ((CudaDeviceVariable<int>)buffers[^1]).CopyToHost(o.I!);
                }
                finally
                {
                    foreach (var b in buffers) b.Dispose();
                }
            }
        }
    }
}
