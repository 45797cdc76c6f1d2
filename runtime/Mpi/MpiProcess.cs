using System.Text;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Runtime.Mpi.Native;

namespace ParallelCompiler.Runtime.Mpi;

/// <summary>
/// This process as one rank of a job that <c>mpirun</c> or <c>srun</c> started: the rank and the world size as the
/// launcher's environment gives them, MPI initialized on <see cref="Start"/>, and the <see cref="IMachine"/> that
/// runs this rank's devices of the mesh (devices / processes of them, consecutive, one thread each), exchanging with
/// the other processes through an <see cref="MpiLink"/> and gathering every device's results on every rank.
/// </summary>
public sealed class MpiProcess : IBlockMachine, IDisposable
{
    private MpiLink? _link;
    private InProcessWorld<NDArray>? _world;
    private MpiGpus? _gpus;
    private int _perProcess;
    private bool _failed;
    private System.Runtime.InteropServices.PosixSignalRegistration? _onTerm;

    private MpiProcess(int rank, int size)
    {
        Rank = rank;
        Size = size;
    }

    /// <summary>This process's rank in the job.</summary>
    public int Rank { get; }

    /// <summary>The number of processes in the job.</summary>
    public int Size { get; }

    /// <summary>
    /// The rank and size of the job this process belongs to, read from the launcher's variables (Open MPI's
    /// <c>OMPI_COMM_WORLD_RANK</c>/<c>_SIZE</c>, PMI's <c>PMI_RANK</c>/<c>PMI_SIZE</c>, Slurm's
    /// <c>SLURM_PROCID</c>/<c>SLURM_NTASKS</c>), or null when no launcher started it.
    /// </summary>
    public static (int Rank, int Size)? FromEnvironment(Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        foreach (
            var (rank, size) in new[]
            {
                ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                ("PMI_RANK", "PMI_SIZE"),
                ("SLURM_PROCID", "SLURM_NTASKS"),
            }
        )
            if (int.TryParse(env(rank), out int r) && int.TryParse(env(size), out int n) && n > 0 && r >= 0 && r < n)
                return (r, n);
        return null;
    }

    /// <summary>
    /// This process as a rank of the MPI job that started it, or null when no launcher did (or a job of one): the
    /// process count is checked against <paramref name="mesh"/> (<see cref="MpiLink.SplitError"/>), and <paramref
    /// name="refuse"/>, when given, is the error for a run that cannot be an MPI job. Ranks other than 0 print
    /// nothing and write no files but their share of a sharded checkpoint; <paramref name="s"/> gets the checkpoint's
    /// writers. The caller calls <see cref="Fail"/> when the run fails and disposes of it at the end.
    /// </summary>
    public static MpiProcess? Join(
        DeviceMesh mesh,
        RunSettings s,
        string? refuse,
        ref TextWriter stdout,
        ref TextWriter stderr
    )
    {
        ArgumentNullException.ThrowIfNull(s);
        if (FromEnvironment() is not { Size: > 1 } launch)
            return null;
        if (MpiLink.SplitError(mesh, launch.Size) is { } split)
            throw new RunInputException(split);
        if (refuse != null)
            throw new RunInputException(refuse);
        var mpi = Start(launch);
        mpi._perProcess = mesh.DeviceCount / mpi.Size;
        if (mpi.Rank != 0)
        {
            // The results come to rank 0 alone, which prints them and writes the files; the other ranks keep
            // --save-params: they write their shards of a checkpoint folder, or send their blocks to rank 0 for a file.
            stdout = TextWriter.Null;
            stderr = TextWriter.Null;
            s.OutPath = s.TracePath = null;
        }
        // Every process reads only its devices' blocks of the input and parameter files.
        s.LocalDevices = [.. Enumerable.Range(mpi.Rank * mpi._perProcess, mpi._perProcess)];
        // Every process writes its share of a sharded checkpoint.
        s.CheckpointWriters = new CheckpointWriters(mpi.Rank, mpi.Size, mpi.AllGather);
        return mpi;
    }

    /// <summary>Initializes MPI (errors returned, not fatal) and checks that its world is the launcher's.</summary>
    public static MpiProcess Start((int Rank, int Size) launch)
    {
        if (!MpiNative.Initialized())
            MpiNative.InitThread(MpiNative.ThreadSerialized);
        nint world = MpiNative.CommWorld;
        MpiNative.CommSetErrhandler(world, MpiNative.ErrorsReturn);
        int rank = MpiNative.CommRank(world),
            size = MpiNative.CommSize(world);
        if (rank != launch.Rank || size != launch.Size)
            throw new RunInputException(
                $"MPI gives rank {rank} of {size}, the launcher's environment rank {launch.Rank} of {launch.Size}"
            );
        var p = new MpiProcess(rank, size);
        // The launcher ends every process of the job with SIGTERM when one of them dies: say where this one was.
        p._onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM,
            _ =>
            {
                foreach (string line in p.StoppedLines())
                    Console.Error.WriteLine(line);
                Console.Error.Flush();
                Environment.Exit(1);
            }
        );
        return p;
    }

    /// <summary>
    /// Runs this process's devices on GPUs of its node (<c>--backend cuda</c>), chosen by its rank among the node's
    /// processes, collectives and messages through NCCL; a line for the log saying where they run.
    /// </summary>
    public string OpenGpus(string ptx, IEnumerable<KernelInfo> kernels, bool timeKernels)
    {
        if (_gpus != null)
            throw new InvalidOperationException("the GPUs are open already");
        _gpus = MpiGpus.Open(Rank, Size, _perProcess, ptx, kernels, timeKernels);
        return _gpus.Description;
    }

    /// <inheritdoc/>
    public IReadOnlyList<NDArray> Run(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        IDictionary<string, NDArray>? updates,
        Trace? trace
    )
    {
        _link ??= new MpiLink(manifest.PhysicalMesh, timeout);
        DeviceOutcome[] mine;
        try
        {
            mine =
                _gpus != null
                    ? _gpus.Run(manifest, program, StepValues.Whole(manifest, args, parameters), timeout, trace, _link)
                    : RunOnHost(manifest, program, args, parameters, timeout, trace);
        }
        catch
        {
            _failed = true;
            throw;
        }
        var bytes = _link.AllGatherBytes(Encode(mine));
        var perDevice = bytes.SelectMany(Decode).ToArray();
        return ProgramRunner.Assemble(manifest, program, parameters, perDevice, updates);
    }

    /// <inheritdoc/>
    public bool Root => Rank == 0;

    /// <inheritdoc/>
    public IReadOnlyList<NDArray>? RunHeld(
        ProgramManifest manifest,
        DeviceProgram program,
        HeldBlocks held,
        TimeSpan timeout,
        Trace? trace
    )
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(held);
        _link ??= new MpiLink(manifest.PhysicalMesh, timeout);
        var values = StepValues.Held(manifest, held);
        DeviceOutcome[] mine;
        try
        {
            mine =
                _gpus != null
                    ? _gpus.Run(manifest, program, values, timeout, trace, _link)
                    : RunOnHost(manifest, program, values, timeout, trace);
        }
        catch
        {
            _failed = true;
            throw;
        }
        // The updates replace this process's blocks; only the results travel, to rank 0.
        var layouts = manifest.Params.ToDictionary(p => p.Path);
        for (int i = 0; i < mine.Length; i++)
        {
            int rank = ProgramRunner.Virtual(manifest, _link.First + i, 0);
            foreach (var (path, block) in mine[i].Written)
            {
                var p = layouts[path];
                held.Put(path, BlockLayout.Of(p.Shape, p.Layout, manifest.Mesh, rank).Offset, block);
            }
        }
        var results = Array.ConvertAll(mine, o => new DeviceOutcome(o.Results, new Dictionary<string, NDArray>()));
        if (_link.GatherOnRoot(Encode(results)) is not { } all)
            return null;
        var perDevice = all.SelectMany(Decode).ToArray();
        return ProgramRunner.Assemble(manifest, program, new Dictionary<string, NDArray>(), perDevice, null);
    }

    /// <inheritdoc/>
    public byte[][]? Gather(byte[] data) =>
        (_link ?? throw new InvalidOperationException("no run has started the link yet")).GatherOnRoot(data);

    // This process's devices as simulated CPU devices, exchanging through the link.
    private DeviceOutcome[] RunOnHost(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        Trace? trace
    ) => RunOnHost(manifest, program, StepValues.Whole(manifest, args, parameters), timeout, trace);

    private DeviceOutcome[] RunOnHost(
        ProgramManifest manifest,
        DeviceProgram program,
        StepValues values,
        TimeSpan timeout,
        Trace? trace
    )
    {
        // A world a step, as in process; the link's communicators stay.
        _link!.StartStep();
        _world = new InProcessWorld<NDArray>(manifest.PhysicalMesh, timeout, HostArrayOps.Instance, _link);
        return _world.Run(
            (rank, comm) =>
                ProgramRunner.RunDevice(manifest, program, values, new SimulatedCpuDevice(rank), comm, trace)
        );
    }

    /// <summary>
    /// <c>--check-collectives</c> in an MPI job: every collective over <paramref name="mesh"/>'s groups through the
    /// processes against the in-process world (<see cref="MpiCollectiveCheck"/>); rank 0 prints every process's
    /// differences, or that there are none. Whether all results are equal bit for bit.
    /// </summary>
    public bool CheckCollectives(DeviceMesh mesh, TimeSpan timeout, TextWriter stdout)
    {
        _link ??= new MpiLink(mesh, timeout);
        var (cases, failures) = MpiCollectiveCheck.Run(_link, mesh, timeout);
        var all = _link
            .AllGatherBytes(Encoding.UTF8.GetBytes(string.Join("\n", failures)))
            .SelectMany(b => Encoding.UTF8.GetString(b).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            .ToList();
        foreach (var f in all)
            stdout.WriteLine($"differs: {f}");
        stdout.WriteLine(
            all.Count == 0
                ? $"{cases} collective cases over {Size} MPI processes, mesh {mesh}: every result equals the "
                    + "in-process one bit for bit"
                : $"{all.Count} of {cases} collective cases over {Size} MPI processes differ from the in-process ones"
        );
        return all.Count == 0;
    }

    /// <summary>Every process's <paramref name="data"/> by rank, after a run (a sharded checkpoint's
    /// exchange).</summary>
    public byte[][] AllGather(byte[] data) =>
        (_link ?? throw new InvalidOperationException("no run has started the link yet")).AllGatherBytes(data);

    // What each of this process's devices was waiting in when the launcher stopped the job.
    private IEnumerable<string> StoppedLines()
    {
        const string why = "another process of the job failed or was killed (the launcher's message names it)";
        var world = _world;
        bool any = false;
        if ((world != null || _gpus != null) && _link != null)
            for (int d = _link.First; d < _link.First + _link.Count; d++)
                if (
                    (_gpus != null ? _gpus.ActivityOf(d) : world!.ActivityOf(d)) is { } a
                    && a.StartsWith("is waiting in ", StringComparison.Ordinal)
                )
                {
                    any = true;
                    yield return $"error: device {d} was stopped by the MPI launcher while waiting in "
                        + $"{a["is waiting in ".Length..]}: {why}";
                }
        if (!any)
            yield return $"error: process {Rank} was stopped by the MPI launcher: {why}";
    }

    /// <summary>Finalizes MPI after a run that succeeded; after a failure the process just ends (a peer may still
    /// wait in a collective that will never complete, and the launcher ends the job).</summary>
    public void Dispose()
    {
        _onTerm?.Dispose();
        if (_failed)
            return;
        _gpus?.Dispose();
        _link?.Dispose();
        MpiNative.FinalizeMpi();
    }

    /// <summary>Marks the run as failed, so that <see cref="Dispose"/> leaves MPI as it is.</summary>
    public void Fail() => _failed = true;

    private static byte[] Encode(DeviceOutcome[] outcomes)
    {
        using var m = new MemoryStream();
        using var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true);
        w.Write(outcomes.Length);
        foreach (var o in outcomes)
        {
            w.Write(o.Results.Length);
            foreach (var r in o.Results)
            {
                w.Write(r.Length);
                foreach (var x in r)
                    ArrayWire.Write(w, x);
            }
            w.Write(o.Written.Count);
            foreach (var (path, x) in o.Written)
            {
                w.Write(path);
                ArrayWire.Write(w, x);
            }
        }
        w.Flush();
        return m.ToArray();
    }

    private static DeviceOutcome[] Decode(byte[] bytes)
    {
        using var r = new BinaryReader(new MemoryStream(bytes));
        var outcomes = new DeviceOutcome[r.ReadInt32()];
        for (int o = 0; o < outcomes.Length; o++)
            outcomes[o] = DecodeOne(r);
        return outcomes;
    }

    private static DeviceOutcome DecodeOne(BinaryReader r)
    {
        var results = new NDArray?[r.ReadInt32()][];
        for (int i = 0; i < results.Length; i++)
        {
            results[i] = new NDArray?[r.ReadInt32()];
            for (int j = 0; j < results[i].Length; j++)
                results[i][j] = ArrayWire.Read(r);
        }
        var written = new Dictionary<string, NDArray>();
        for (int n = r.ReadInt32(), i = 0; i < n; i++)
        {
            string path = r.ReadString();
            written[path] = ArrayWire.Read(r)!;
        }
        return new DeviceOutcome(results, written);
    }
}
