using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Driver;

/// <summary>Runs a per-device module on simulated devices: one thread per device of the mesh, sharing memory.</summary>
public static class SpmdRunner
{
    /// <summary>
    /// Runs <paramref name="func"/> of a spmdized module on every device of its mesh with global
    /// <paramref name="args"/> and <paramref name="parameters"/> (by path); returns the global results and puts the
    /// new global value of every parameter the program updates into <paramref name="updates"/>.
    /// </summary>
    public static IReadOnlyList<NDArray> Run(Operation module, Operation func, IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters, TimeSpan timeout, IDictionary<string, NDArray>? updates = null, Trace? trace = null,
        Func<Operation, IKernel>? kernels = null)
    {
        var mesh = module.DeviceMesh();
        var program = DeviceProgramBuilder.Build(func, kernels);
        var entry = func.Regions[0].Entry;
        var argDims = entry.Arguments.Select(a => Dims(GlobalType(a))).ToArray();
        // A weight tied across pipeline stages appears once per stage, always in the same layout.
        var paramDims = entry.Operations.Where(o => o.Name == "tensor.param").GroupBy(o => o.StringAttr("path"))
            .ToDictionary(g => g.Key, g => Dims(GlobalType(g.First().Result)));
        var resultTypes = func.GetAttr("result_layouts") is ArrayAttr r
            ? r.Items.Select(i => (TensorType)((TypeAttr)i).Type).ToArray()
            : func.ResultTypes().Cast<TensorType>().ToArray();
        if (program.PipelineAxis != null) return RunPipelined(module, program, args, argDims, parameters, paramDims, resultTypes, timeout, updates, trace);
        using var world = new InProcessWorld(mesh, timeout);
        var perDevice = world.Run((rank, comm) =>
        {
            var device = new SimulatedCpuDevice(rank);
            var local = args.Select((a, i) => BlockLayout.Block(a, argDims[i], mesh, rank)).ToArray();
            var written = new Dictionary<string, NDArray>();
            var results = Executor.Run(program, device, comm, local, path => BlockLayout.Block(parameters[path], paramDims[path], mesh, rank),
                (path, value) => written[path] = value, trace);
            return (Results: results, Written: written);
        });
        if (updates != null)
            foreach (var path in perDevice.SelectMany(d => d.Written.Keys).Distinct())
                updates[path] = BlockLayout.Assemble(perDevice.Select(d => d.Written.GetValueOrDefault(path)).ToArray(), paramDims[path], mesh, parameters[path].Shape);
        return resultTypes.Select((t, i) => BlockLayout.Assemble(perDevice.Select(d => d.Results[i]).ToArray(), Dims(t), mesh, t.ShapeArray)).ToArray();
    }

    /// <summary>
    /// A pipelined program: the world is the physical mesh (without the microbatch axis); device d's microbatch j
    /// is the block of the full mesh's rank with d's coordinates and mb = j. Only the devices of a value's stage
    /// hold it; each block position is filled by one of them.
    /// </summary>
    private static IReadOnlyList<NDArray> RunPipelined(Operation module, DeviceProgram program, IReadOnlyList<NDArray> args,
        IReadOnlyList<IReadOnlyList<string>>[] argDims, IReadOnlyDictionary<string, NDArray> parameters, Dictionary<string, IReadOnlyList<IReadOnlyList<string>>> paramDims,
        TensorType[] resultTypes, TimeSpan timeout, IDictionary<string, NDArray>? updates, Trace? trace)
    {
        var full = module.DeviceMesh();
        var physical = module.PhysicalMesh();
        int m = program.Microbatches;
        int mbIndex = program.MicrobatchAxis is { } mb ? full.AxisNames.ToList().IndexOf(mb) : -1;
        int Virtual(int rank, int j)
        {
            if (mbIndex < 0) return rank;
            var c = physical.Coords(rank).ToList();
            c.Insert(mbIndex, j);
            return full.RankOf(c.ToArray());
        }
        using var world = new InProcessWorld(physical, timeout);
        var perDevice = world.Run((rank, comm) =>
        {
            var device = new SimulatedCpuDevice(rank);
            var local = Enumerable.Range(0, m).Select(j => (IReadOnlyList<NDArray>)args.Select((a, i) => BlockLayout.Block(a, argDims[i], full, Virtual(rank, j))).ToArray()).ToArray();
            var written = new Dictionary<string, NDArray>();
            var results = PipelineExecutor.Run(program, device, comm, local,
                path => BlockLayout.Block(parameters[path], paramDims[path], full, Virtual(rank, 0)), (path, value) => written[path] = value, trace);
            return (Results: results, Written: written);
        });
        var blocks = new NDArray?[full.DeviceCount];
        NDArray Assemble(Func<int, int, NDArray?> at, IReadOnlyList<IReadOnlyList<string>> dims, long[] shape)
        {
            Array.Clear(blocks);
            for (int r = 0; r < physical.DeviceCount; r++)
                for (int j = 0; j < m; j++) blocks[Virtual(r, j)] = at(r, j);
            return BlockLayout.Assemble(blocks, dims, full, shape);
        }
        if (updates != null)
            foreach (var path in perDevice.SelectMany(d => d.Written.Keys).Distinct())
                updates[path] = Assemble((r, _) => perDevice[r].Written.GetValueOrDefault(path), paramDims[path], parameters[path].Shape);
        return resultTypes.Select((t, i) => Assemble((r, j) => perDevice[r].Results[i][j], Dims(t), t.ShapeArray)).ToArray();
    }

    /// <summary>The global type of a function argument or parameter (after spmdize its own type is the local block).</summary>
    public static TensorType GlobalType(Value v)
    {
        if (v is BlockArgument a && a.Owner.Parent?.Owner is { } func && func.GetAttr("arg_layouts") is ArrayAttr layouts)
            return (TensorType)((TypeAttr)layouts.Items[a.Index]).Type;
        if (v.DefiningOp is { Name: "tensor.param" } p && p.GetAttr("layout") is TypeAttr t) return (TensorType)t.Type;
        return v.TensorType;
    }

    private static IReadOnlyList<IReadOnlyList<string>> Dims(TensorType t) =>
        t.Sharding?.Dims ?? Enumerable.Range(0, t.Rank).Select(_ => (IReadOnlyList<string>)Array.Empty<string>()).ToArray();
}
