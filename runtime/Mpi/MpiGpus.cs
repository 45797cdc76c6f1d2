using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// The GPU back end in one process of an MPI job: this process's devices (devices / processes of them,
/// consecutive) on one GPU each of its node, chosen by the process's rank among the processes of that node
/// (<c>MPI_Comm_split_type</c>, shared memory): the node's kth process takes GPUs k*n to k*n + n - 1. Collectives and
/// messages go through NCCL; a group of devices that spans processes gets its communicator from
/// <c>ncclCommInitRank</c>, the unique id made by its first member's process and sent to the others over the group's
/// MPI communicator. Communicators are kept from step to step.
/// </summary>
internal sealed class MpiGpus : IDisposable
{
    private readonly IReadOnlyList<IGpuDriver> _gpus;
    private readonly GpuPool[] _pools;
    private readonly IReadOnlyDictionary<string, KernelInfo> _kernels;
    private readonly INccl _nccl;
    private NcclGroups? _groups;
    private NcclWorld? _world;

    private MpiGpus(
        IReadOnlyList<IGpuDriver> gpus,
        IEnumerable<KernelInfo> kernels,
        INccl nccl,
        int first,
        string description
    )
    {
        _gpus = gpus;
        _pools = gpus.Select(g => new GpuPool(g)).ToArray();
        _kernels = kernels.ToDictionary(k => k.Name);
        _nccl = nccl;
        First = first;
        Description = description;
    }

    /// <summary>The first device this process runs.</summary>
    public int First { get; }

    /// <summary>Where this process's devices run, for the log.</summary>
    public string Description { get; }

    /// <summary>
    /// Opens the GPUs of process <paramref name="rank"/> of <paramref name="size"/>, which runs <paramref
    /// name="perProcess"/> devices, with <paramref name="ptx"/> loaded; too few GPUs on the node is an input error
    /// naming the process and the GPUs it needs.
    /// </summary>
    public static MpiGpus Open(
        int rank,
        int size,
        int perProcess,
        string ptx,
        IEnumerable<KernelInfo> kernels,
        bool timeKernels
    )
    {
        if (!Cuda.Native.CudaApi.Available(out string why))
            throw new RunInputException($"--backend cuda: {why}");
        nint node = MpiNative.CommSplitShared(MpiNative.CommWorld, rank);
        int local = MpiNative.CommRank(node),
            onNode = MpiNative.CommSize(node);
        int have = Cuda.Native.CudaApi.DeviceCount(),
            from = local * perProcess;
        if (from + perProcess > have)
            throw new RunInputException(
                $"process {rank} of {size} is process {local} of {onNode} on its node and runs {perProcess} "
                    + $"device(s) on GPUs {from} to {from + perProcess - 1}, but the node has {have} GPU(s)"
            );
        var drivers = new List<IGpuDriver>();
        try
        {
            for (int i = 0; i < perProcess; i++)
                drivers.Add(new Cuda.CudaDriver(from + i, ptx) { TimesKernels = timeKernels });
            int first = rank * perProcess;
            string description =
                $"process {rank}: device(s) {first} to {first + perProcess - 1} on "
                + string.Join(", ", drivers.Select(d => d.Name))
                + $" (process {local} of {onNode} on its node; collectives through NCCL across {size} processes)";
            return new MpiGpus(drivers, kernels, new Cuda.Nccl(drivers), first, description);
        }
        catch
        {
            foreach (var d in drivers)
                d.Dispose();
            throw;
        }
    }

    /// <summary>What device <paramref name="rank"/> of this process is doing (for the launcher's stop).</summary>
    public string? ActivityOf(int rank) => _world?.ActivityOf(rank);

    /// <summary>Runs this process's devices of one step; their outcomes in device order.</summary>
    public DeviceOutcome[] Run(
        ProgramManifest manifest,
        DeviceProgram program,
        StepValues values,
        TimeSpan timeout,
        Trace? trace,
        MpiLink link
    )
    {
        var mesh = manifest.PhysicalMesh;
        if (_groups == null)
        {
            _groups = new NcclGroups(_nccl, members => Make(link, members));
            // Every process joins the communicator of all devices (messages and permutes) now, at the same point:
            // made when first used, it would wait for processes whose devices never send.
            _groups.Of([.. Enumerable.Range(0, mesh.DeviceCount)], First);
        }
        var heaps = _pools.Select(p => new GpuHeap(p)).ToArray();
        try
        {
            using var world = new NcclWorld(
                mesh,
                timeout,
                _groups,
                heaps,
                rank => new GpuDevice(rank, heaps[rank - First], new GpuArrayOps(heaps[rank - First]), _kernels),
                First
            );
            _world = world;
            return world.Run((dev, comm) => ProgramRunner.RunDevice(manifest, program, values, dev, comm, trace));
        }
        finally
        {
            foreach (var h in heaps)
                h.Dispose();
        }
    }

    // The communicators of this process's members of a group (null for the other processes' members): from one
    // ncclCommInitAll when the group is all here, else joined with the other processes' members.
    private IReadOnlyList<INcclComm?> Make(MpiLink link, int[] members)
    {
        int count = _gpus.Count;
        var local = members.Where(m => m >= First && m < First + count).ToArray();
        if (local.Length == members.Length)
            return _nccl.Group([.. members.Select(m => m - First)]);
        int root = members[0] / count;
        byte[] id = link.Process == root ? _nccl.UniqueId() : [];
        id = link.Broadcast(members, root, id);
        var joined = _nccl.Join(id, members.Length, [.. local.Select(m => (m - First, Array.IndexOf(members, m)))]);
        var comms = new INcclComm?[members.Length];
        for (int k = 0; k < local.Length; k++)
            comms[Array.IndexOf(members, local[k])] = joined[k];
        return comms;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        // Destroys the communicators (what disposing of the groups does), also when no step made any.
        _nccl.Dispose();
        foreach (var p in _pools)
            p.Dispose();
        foreach (var g in _gpus)
            g.Dispose();
    }
}
