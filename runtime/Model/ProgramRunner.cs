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
        var full = manifest.Mesh;
        var physical = manifest.PhysicalMesh;
        var argDims = manifest.Inputs.Select(i => Dims(i.Layout)).ToArray();
        var paramDims = manifest.Params.ToDictionary(p => p.Path, p => Dims(p.Layout));
        int m = program.Microbatches;
        int mbIndex = manifest.MicrobatchAxis is { } mb ? full.AxisNames.ToList().IndexOf(mb) : -1;
        int Virtual(int rank, int j)
        {
            if (mbIndex < 0)
                return rank;
            var c = physical.Coords(rank).ToList();
            c.Insert(mbIndex, j);
            return full.RankOf(c.ToArray());
        }
        NDArray Param(string path, int rank) =>
            BlockLayout.Block(parameters[path], paramDims[path], full, Virtual(rank, 0));
        if (world.Mesh.ToString() != physical.ToString())
            throw new ArgumentException($"the program runs on mesh " + $"{physical}, the devices form {world.Mesh}");
        var perDevice = world.Run(
            (dev, comm) =>
            {
                int rank = comm.Rank;
                var written = new Dictionary<string, NDArray>();
                NDArray?[][] results;
                if (program.PipelineAxis == null)
                {
                    var local = args.Select((a, i) => BlockLayout.Block(a, argDims[i], full, rank)).ToArray();
                    results = Executor
                        .Run(
                            program,
                            dev,
                            comm,
                            local,
                            path => Param(path, rank),
                            (path, value) => written[path] = value,
                            trace
                        )
                        .Select(r => new NDArray?[] { r })
                        .ToArray();
                }
                else
                {
                    var local = Enumerable
                        .Range(0, m)
                        .Select(j =>
                            (IReadOnlyList<NDArray>)
                                args.Select((a, i) => BlockLayout.Block(a, argDims[i], full, Virtual(rank, j)))
                                    .ToArray()
                        )
                        .ToArray();
                    results = PipelineExecutor.Run(
                        program,
                        dev,
                        comm,
                        local,
                        path => Param(path, rank),
                        (path, value) => written[path] = value,
                        trace
                    );
                }
                return (Results: results, Written: written);
            }
        );
        // In a pipeline only the devices of a value's stage hold it; each block position is filled by one of them.
        var blocks = new NDArray?[full.DeviceCount];
        NDArray Assemble(Func<int, int, NDArray?> at, IReadOnlyList<IReadOnlyList<string>> dims, long[] shape)
        {
            Array.Clear(blocks);
            for (int r = 0; r < physical.DeviceCount; r++)
            for (int j = 0; j < (mbIndex < 0 ? 1 : m); j++)
                blocks[Virtual(r, j)] = at(r, j);
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

    private static IReadOnlyList<IReadOnlyList<string>> Dims(string[][] layout) => layout;
}
