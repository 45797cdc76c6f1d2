using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// The GPU back end's devices: the mesh's logical devices on the GPUs of one process. With one GPU (or fewer GPUs
/// than devices) every logical device shares GPU 0, and collectives run in its memory through device copies and
/// the generated collective kernels (an <see cref="InProcessWorld{T}"/> over <see cref="GpuArrayOps"/>); with a
/// GPU per device each device has its own, and collectives go through NCCL (communicators kept from step to step).
/// Each step copies the inputs and parameters in and the results and updates out; everything between stays on the
/// GPUs, in memory a <see cref="GpuPool"/> per GPU keeps from step to step.
/// </summary>
public sealed class GpuMachine : IMachine, IDisposable
{
    private readonly IReadOnlyList<IGpuDriver> _gpus;
    private readonly IReadOnlyDictionary<string, KernelInfo> _kernels;
    private readonly Func<IReadOnlyList<IGpuDriver>, INccl> _nccl;
    private NcclGroups? _groups;
    private readonly IDisposable? _owned;
    private readonly GpuPool[] _pools;
    private bool _disposed;

    private GpuMachine(
        IReadOnlyList<IGpuDriver> gpus,
        IEnumerable<KernelInfo> kernels,
        Func<IReadOnlyList<IGpuDriver>, INccl> nccl,
        IDisposable? owned
    )
    {
        _gpus = gpus;
        _kernels = kernels.ToDictionary(k => k.Name);
        _nccl = nccl;
        _owned = owned;
        _pools = gpus.Select(g => new GpuPool(g)).ToArray();
    }

    /// <summary>
    /// The first <paramref name="gpus"/> GPUs of this machine (all when null) with <paramref name="ptx"/> loaded; a
    /// machine without a GPU or without as many as asked is an input error saying so.
    /// </summary>
    public static GpuMachine OpenCuda(
        string ptx,
        IEnumerable<KernelInfo> kernels,
        int? gpus = null,
        bool timeKernels = false
    )
    {
        if (!Cuda.Native.CudaApi.Available(out string why))
            throw new RunInputException($"--backend cuda: {why}");
        int have = Cuda.Native.CudaApi.DeviceCount();
        int n = gpus ?? have;
        if (n < 1 || n > have)
            throw new RunInputException($"--gpus {n}: this machine has {have} GPU(s)");
        var drivers = new List<IGpuDriver>();
        try
        {
            for (int i = 0; i < n; i++)
                drivers.Add(new Cuda.CudaDriver(i, ptx) { TimesKernels = timeKernels });
        }
        catch
        {
            foreach (var d in drivers)
                d.Dispose();
            throw;
        }
        return new GpuMachine(drivers, kernels, g => new Cuda.Nccl(g), null);
    }

    /// <summary>
    /// <paramref name="gpus"/> emulated GPUs running the host-grid kernels of the library at <paramref
    /// name="gridLibrary"/>,
    /// their collectives between GPUs through an emulated NCCL.
    /// </summary>
    public static GpuMachine OpenEmulated(
        string gridLibrary,
        IEnumerable<KernelInfo> kernels,
        int gpus = 1,
        bool timeKernels = false
    )
    {
        if (gpus < 1)
            throw new RunInputException($"--gpus must be at least 1, got {gpus}");
        var library = new HostKernelLibrary(gridLibrary);
        var drivers = Enumerable
            .Range(0, gpus)
            .Select(i => (IGpuDriver)new EmulatedGpu(i, library) { TimesKernels = timeKernels })
            .ToList();
        return new GpuMachine(drivers, kernels, g => new EmulatedNccl(g), library);
    }

    /// <summary>Milliseconds on the GPUs in kernel <paramref name="name"/>'s timed launches, in all and the fastest, or
    /// null if none was timed.</summary>
    public (double Total, double Fastest)? KernelMilliseconds(string name)
    {
        double total = 0,
            fastest = double.PositiveInfinity;
        bool any = false;
        foreach (var g in _gpus)
            if (g.Counters.Kernels.TryGetValue(name, out var t))
            {
                total += t.Milliseconds;
                fastest = Math.Min(fastest, t.Fastest);
                any = true;
            }
        return any ? (total, fastest) : null;
    }

    /// <summary>
    /// The collective self-test (<see cref="CollectiveSelfTest"/>) on these GPUs: four logical devices sharing GPU 0
    /// and, with four GPUs or more, one GPU each through NCCL. One line per placement; false when any case differs.
    /// </summary>
    public bool CheckCollectives(TextWriter log)
    {
        bool ok = true;
        foreach (bool share in OneGpuPerDevice(4) ? new[] { true, false } : [true])
        {
            var (cases, failures) = WithWorld(
                CollectiveSelfTest.Mesh,
                TimeSpan.FromSeconds(60),
                CollectiveSelfTest.Run,
                share
            );
            string where = share
                ? $"4 devices sharing {_gpus[0].Name}"
                : $"4 devices on {string.Join(", ", _gpus.Take(4).Select(g => g.Name))} through NCCL";
            log.WriteLine(
                failures.Count == 0
                    ? $"collectives, {where}: {cases} cases equal the host's"
                    : $"collectives, {where}: {failures.Count} of {cases} cases differ from the host's"
            );
            foreach (var f in failures)
                log.WriteLine($"  {f}");
            ok &= failures.Count == 0;
        }
        return ok;
    }

    /// <summary>The NCCL communicators kept for the next step (null until a mesh runs with a GPU per device).</summary>
    public NcclGroups? NcclGroups => _groups;

    /// <summary>Per GPU, the memory kept for reuse by the next step.</summary>
    public IReadOnlyList<GpuPool> Pools => _pools;

    /// <summary>The GPUs.</summary>
    public IReadOnlyList<IGpuDriver> Gpus => _gpus;

    /// <summary>How a mesh of <paramref name="devices"/> devices is placed: one GPU per device (NCCL) or all on GPU
    /// 0.</summary>
    public bool OneGpuPerDevice(int devices) => devices > 1 && _gpus.Count >= devices;

    /// <summary>A line for the log: where the devices of a mesh of <paramref name="devices"/> run.</summary>
    public string Describe(int devices) =>
        OneGpuPerDevice(devices)
            ? $"{devices} device(s) on "
                + string.Join(", ", _gpus.Take(devices).Select(g => g.Name))
                + " (collectives through "
                + $"NCCL)"
            : $"{devices} device(s) on {_gpus[0].Name}"
                + (devices > 1 ? " (collectives through device copies and generated kernels)" : "");

    /// <inheritdoc/>
    public IReadOnlyList<NDArray> Run(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        IDictionary<string, NDArray>? updates,
        Trace? trace
    ) =>
        WithWorld(
            manifest.PhysicalMesh,
            timeout,
            world => ProgramRunner.Run(manifest, program, args, parameters, world, updates, trace)
        );

    /// <summary>
    /// Runs <paramref name="body"/> on the devices of <paramref name="mesh"/> placed on these GPUs (<see
    /// cref="OneGpuPerDevice"/>,
    /// unless <paramref name="shareOneGpu"/>); the arrays of the run are freed (kept in the pools) when it returns.
    /// </summary>
    public T WithWorld<T>(
        DeviceMesh mesh,
        TimeSpan timeout,
        Func<IDeviceWorld<GpuArray>, T> body,
        bool shareOneGpu = false
    )
    {
        var heaps =
            OneGpuPerDevice(mesh.DeviceCount) && !shareOneGpu
                ? _pools.Take(mesh.DeviceCount).Select(p => new GpuHeap(p)).ToArray()
                : [new GpuHeap(_pools[0])];
        try
        {
            IDeviceWorld<GpuArray> world;
            if (heaps.Length > 1)
            {
                _groups ??= new NcclGroups(_nccl(_gpus));
                world = new NcclWorld(
                    mesh,
                    timeout,
                    _groups,
                    heaps,
                    rank => new GpuDevice(rank, heaps[rank], new GpuArrayOps(heaps[rank]), _kernels)
                );
            }
            else
            {
                var ops = new GpuArrayOps(heaps[0]);
                world = new InProcessDevices<GpuArray>(
                    new InProcessWorld<GpuArray>(mesh, timeout, ops),
                    rank => new GpuDevice(rank, heaps[0], ops, _kernels)
                );
            }
            using (world)
                return body(world);
        }
        catch when (heaps.Length > 1)
        {
            // Members of a failed run may have left NCCL calls behind: start the next run with new communicators.
            _groups?.Dispose();
            _groups = null;
            throw;
        }
        finally
        {
            foreach (var h in heaps)
                h.Dispose();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _groups?.Dispose();
        foreach (var p in _pools)
            p.Dispose();
        foreach (var g in _gpus)
            g.Dispose();
        _owned?.Dispose();
    }
}
