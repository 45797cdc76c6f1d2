using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// Runs a device program on every device of its mesh, one thread each with the in-process communicator: global
/// inputs and parameters are sliced into each device's block by their layouts, and the results and parameter
/// updates put back together. A pipelined program runs on the physical mesh (without the microbatch axis): device
/// d's microbatch j is the block of the full mesh's rank with d's coordinates and microbatch coordinate j.
/// </summary>
public static class ProgramRunner
{
    /// <summary>
    /// Runs <paramref name="program"/> with global <paramref name="args"/> and <paramref name="parameters"/> (by path);
    /// returns the global results and puts the new global value of every parameter it updates into <paramref
    /// name="updates"/>.
    /// </summary>
    public static IReadOnlyList<NDArray> Run(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        IDictionary<string, NDArray>? updates = null,
        Trace? trace = null
    )
    {
        using var world = new InProcessDevices<NDArray>(
            new InProcessWorld(manifest.PhysicalMesh, timeout),
            rank => new SimulatedCpuDevice(rank)
        );
        return Run(manifest, program, args, parameters, world, updates, trace);
    }

    /// <summary>Like <see cref="Run(ProgramManifest, DeviceProgram, IReadOnlyList{NDArray}, IReadOnlyDictionary{string,
    /// NDArray}, TimeSpan, IDictionary{string, NDArray}?, Trace?)"/>, on the devices of <paramref
    /// name="world"/>.</summary>
    public static IReadOnlyList<NDArray> Run<T>(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        IDeviceWorld<T> world,
        IDictionary<string, NDArray>? updates = null,
        Trace? trace = null
    )
        where T : class, IArray
    {
        if (world.Mesh.ToString() != manifest.PhysicalMesh.ToString())
            throw new ArgumentException(
                $"the program runs on mesh " + $"{manifest.PhysicalMesh}, the devices form {world.Mesh}"
            );
        var perDevice = world.Run((dev, comm) => RunDevice(manifest, program, args, parameters, dev, comm, trace));
        return Assemble(manifest, program, parameters, perDevice, updates);
    }

    /// <summary>Runs device <paramref name="comm"/>.Rank's part of <paramref name="program"/> on its blocks of the
    /// global <paramref name="args"/> and <paramref name="parameters"/>.</summary>
    public static DeviceOutcome RunDevice<T>(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        IDevice<T> dev,
        ICommunicator<T> comm,
        Trace? trace
    )
        where T : class, IArray =>
        RunDevice(manifest, program, StepValues.Whole(manifest, args, parameters), dev, comm, trace);

    /// <summary>Runs device <paramref name="comm"/>.Rank's part of <paramref name="program"/> on the blocks that
    /// <paramref name="values"/> gives it.</summary>
    public static DeviceOutcome RunDevice<T>(
        ProgramManifest manifest,
        DeviceProgram program,
        StepValues values,
        IDevice<T> dev,
        ICommunicator<T> comm,
        Trace? trace
    )
        where T : class, IArray
    {
        ArgumentNullException.ThrowIfNull(values);
        int m = program.Microbatches;
        int rank = comm.Rank;
        NDArray Param(string path) => values.Param(path, Virtual(manifest, rank, 0));
        var written = new Dictionary<string, NDArray>();
        NDArray?[][] results;
        if (program.PipelineAxis == null)
        {
            var local = new Inputs(manifest.Inputs.Count, i => values.Input(i, rank));
            results = Executor
                .Run(program, dev, comm, local, Param, (path, value) => written[path] = value, trace)
                .Select(r => new NDArray?[] { r })
                .ToArray();
        }
        else
        {
            var local = Enumerable
                .Range(0, m)
                .Select(j =>
                    (IReadOnlyList<NDArray>)
                        new Inputs(manifest.Inputs.Count, i => values.Input(i, Virtual(manifest, rank, j)))
                )
                .ToArray();
            results = PipelineExecutor.Run(
                program,
                dev,
                comm,
                local,
                Param,
                (path, value) => written[path] = value,
                trace
            );
        }
        return new DeviceOutcome(results, written);
    }

    // A device's inputs, each taken when the program first reads it (a pipeline stage reads only some).
    private sealed class Inputs(int count, Func<int, NDArray> take) : IReadOnlyList<NDArray>
    {
        private readonly NDArray?[] _taken = new NDArray?[count];

        public NDArray this[int index] => _taken[index] ??= take(index);

        public int Count => count;

        public IEnumerator<NDArray> GetEnumerator()
        {
            for (int i = 0; i < count; i++)
                yield return this[i];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>Puts every device's outcome (by rank) back together: returns the global results and puts the new
    /// global value of every updated parameter into <paramref name="updates"/>.</summary>
    public static IReadOnlyList<NDArray> Assemble(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyDictionary<string, NDArray> parameters,
        IReadOnlyList<DeviceOutcome> perDevice,
        IDictionary<string, NDArray>? updates
    )
    {
        var full = manifest.Mesh;
        var physical = manifest.PhysicalMesh;
        var paramDims = manifest.Params.ToDictionary(p => p.Path, p => Dims(p.Layout));
        int m = program.Microbatches;
        bool pipelined =
            manifest.MicrobatchAxis is { } mb && manifest.Mesh.AxisNames.Contains(mb, StringComparer.Ordinal);
        // In a pipeline only the devices of a value's stage hold it; each block position is filled by one of them.
        var blocks = new NDArray?[full.DeviceCount];
        NDArray Assemble(Func<int, int, NDArray?> at, IReadOnlyList<IReadOnlyList<string>> dims, long[] shape)
        {
            Array.Clear(blocks);
            for (int r = 0; r < physical.DeviceCount; r++)
            for (int j = 0; j < (pipelined ? m : 1); j++)
                blocks[Virtual(manifest, r, j)] = at(r, j);
            return BlockLayout.Assemble(blocks, dims, full, shape);
        }
        if (updates != null)
            foreach (var path in perDevice.SelectMany(d => d.Written.Keys).Distinct())
                updates[path] = Assemble(
                    (r, _) => perDevice[r].Written.GetValueOrDefault(path),
                    paramDims[path],
                    parameters[path].Shape
                );
        return manifest
            .Results.Select(
                (t, i) =>
                    Assemble(
                        (r, j) => perDevice[r].Results[i][Math.Min(j, perDevice[r].Results[i].Length - 1)],
                        Dims(t.Layout),
                        t.Shape
                    )
            )
            .ToArray();
    }

    /// <summary>
    /// The blocks of each input (by index) and each parameter (by path) that <paramref name="devices"/> (ranks of the
    /// physical mesh) read in a run of <paramref name="program"/>, distinct, each as its offset and shape in the global
    /// array: in a pipeline a device reads only what its stage's instructions read, each microbatch's block of an
    /// input, and the parameters' blocks once.
    /// </summary>
    public static (
        List<(long[] Offset, long[] Shape)>[] Inputs,
        Dictionary<string, List<(long[] Offset, long[] Shape)>> Params
    ) BlocksRead(ProgramManifest manifest, DeviceProgram program, IEnumerable<int> devices)
    {
        var full = manifest.Mesh;
        var inputs = manifest.Inputs.Select(_ => new List<(long[], long[])>()).ToArray();
        var parameters = manifest.Params.ToDictionary(p => p.Path, _ => new List<(long[], long[])>());
        var seen = new HashSet<string>();
        void Add(List<(long[], long[])> to, string name, long[] shape, string[][] layout, int rank)
        {
            var block = BlockLayout.Of(shape, layout, full, rank);
            if (seen.Add($"{name}\u001f{string.Join(",", block.Offset)}"))
                to.Add(block);
        }
        var paramShapes = manifest.Params.ToDictionary(p => p.Path);
        foreach (int d in devices)
        {
            bool Mine(int stage)
            {
                if (program.PipelineAxis is not { } axis || stage < 0)
                    return true;
                int me = manifest.PhysicalMesh.Coords(d)[manifest.PhysicalMesh.AxisNames.ToList().IndexOf(axis)];
                return stage % manifest.PhysicalMesh.Size(axis) == me;
            }
            foreach (var ins in program.Instructions)
                if (ins is InputInstr i && Mine(ins.Stage))
                {
                    var t = manifest.Inputs[i.Index];
                    for (int j = 0; j < (program.PipelineAxis == null ? 1 : program.Microbatches); j++)
                        Add(
                            inputs[i.Index],
                            $"input {i.Index}",
                            t.Shape,
                            t.Layout,
                            program.PipelineAxis == null ? d : Virtual(manifest, d, j)
                        );
                }
                else if (ins is ParamInstr p && Mine(ins.Stage) && paramShapes.TryGetValue(p.Path, out var info))
                    Add(parameters[p.Path], p.Path, info.Shape, info.Layout, Virtual(manifest, d, 0));
        }
        return (inputs, parameters);
    }

    /// <summary>The full mesh's rank of physical device <paramref name="rank"/>'s microbatch <paramref name="j"/> (the
    /// rank itself without a microbatch axis): the rank whose blocks it takes.</summary>
    public static int Virtual(ProgramManifest manifest, int rank, int j)
    {
        int index = manifest.MicrobatchAxis is { } mb ? manifest.Mesh.AxisNames.ToList().IndexOf(mb) : -1;
        if (index < 0)
            return rank;
        var c = manifest.PhysicalMesh.Coords(rank).ToList();
        c.Insert(index, j);
        return manifest.Mesh.RankOf(c.ToArray());
    }

    private static IReadOnlyList<IReadOnlyList<string>> Dims(string[][] layout) => layout;
}

/// <summary>
/// Where each device's blocks of a step's inputs and parameters come from: global arrays (<see cref="Whole"/>, sliced
/// by the values' layouts), or the blocks one process of an MPI job holds (<see cref="Held"/>). A device's block is
/// named by the full mesh's rank whose block it is.
/// </summary>
public abstract class StepValues
{
    /// <summary>Input <paramref name="index"/>'s block of full-mesh rank <paramref name="rank"/>.</summary>
    public abstract NDArray Input(int index, int rank);

    /// <summary>Parameter <paramref name="path"/>'s block of full-mesh rank <paramref name="rank"/>.</summary>
    public abstract NDArray Param(string path, int rank);

    /// <summary>The blocks of global <paramref name="args"/> and <paramref name="parameters"/>.</summary>
    public static StepValues Whole(
        ProgramManifest manifest,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters
    ) => new WholeValues(manifest, args, parameters);

    /// <summary>The blocks <paramref name="held"/> holds.</summary>
    public static StepValues Held(ProgramManifest manifest, HeldBlocks held) => new HeldValues(manifest, held);

    private sealed class WholeValues(
        ProgramManifest manifest,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters
    ) : StepValues
    {
        private readonly Dictionary<string, string[][]> _layouts = manifest.Params.ToDictionary(
            p => p.Path,
            p => p.Layout
        );

        public override NDArray Input(int index, int rank) =>
            BlockLayout.Block(args[index], manifest.Inputs[index].Layout, manifest.Mesh, rank);

        public override NDArray Param(string path, int rank) =>
            BlockLayout.Block(parameters[path], _layouts[path], manifest.Mesh, rank);
    }

    private sealed class HeldValues(ProgramManifest manifest, HeldBlocks held) : StepValues
    {
        private readonly Dictionary<string, ParamInfo> _params = manifest.Params.ToDictionary(p => p.Path);

        public override NDArray Input(int index, int rank)
        {
            var t = manifest.Inputs[index];
            var (offset, shape) = BlockLayout.Of(t.Shape, t.Layout, manifest.Mesh, rank);
            return held.Get(HeldBlocks.Input(index), offset, shape);
        }

        public override NDArray Param(string path, int rank)
        {
            var p = _params[path];
            var (offset, shape) = BlockLayout.Of(p.Shape, p.Layout, manifest.Mesh, rank);
            return held.Get(path, offset, shape);
        }
    }
}

/// <summary>What one device's part of a run gives: its results (one per microbatch in a pipeline, null where its
/// stage holds none) and the blocks of the parameters it updated.</summary>
public sealed record DeviceOutcome(NDArray?[][] Results, IReadOnlyDictionary<string, NDArray> Written);
