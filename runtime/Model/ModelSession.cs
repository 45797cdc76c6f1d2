using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.IO;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// One run of a compiled program, the same for <c>mplc run</c> and <c>mplrun</c>: loads inputs (or makes random
/// ones) and parameters (from a file, the rest from their initialisers) and checks them against the manifest,
/// runs <see cref="RunSettings.Steps"/> steps carrying updated parameters and optimizer state from step to step,
/// and writes the results, the losses, the parameters and the trace.
/// </summary>
public static class ModelSession
{
    /// <summary>
    /// Runs the program; <paramref name="runStep"/> runs one step on global inputs and parameters and fills the
    /// updates (by default <see cref="ProgramRunner"/> over the devices of <paramref name="machine"/>, else simulated
    /// CPU devices).
    /// </summary>
    public static RunOutcome Run(
        ProgramManifest manifest,
        DeviceProgram? program,
        RunSettings s,
        TextWriter log,
        Action<int, NDArray, TimeSpan>? onStep = null,
        Func<
            IReadOnlyList<NDArray>,
            Dictionary<string, NDArray>,
            Dictionary<string, NDArray>,
            Trace?,
            IReadOnlyList<NDArray>
        >? runStep = null,
        IMachine? machine = null
    )
    {
        if (s.Steps < 1)
            throw new RunInputException($"--steps must be at least 1, got {s.Steps}");
        if (s.Steps > 1 && !manifest.Training)
            throw new RunInputException(
                "--steps needs a training model (a 'train "
                    + "MODEL optimizer ...' declaration); --repeat runs a forward model again"
            );
        if (s.Repeat < 1)
            throw new RunInputException($"--repeat must be at least 1, got {s.Repeat}");
        if (s.Repeat > 1 && manifest.Training)
            throw new RunInputException("--repeat runs a forward model again; a " + "training model takes --steps");
        foreach (
            var (flag, path) in new[]
            {
                ("--out", s.OutPath),
                ("--save-params", s.SaveParamsPath),
                ("--trace", s.TracePath),
            }
        )
            if (
                path != null
                && OutputFile.Problem(path, folder: flag == "--save-params" && ShardedCheckpoint.IsFolder(path))
                    is { } problem
            )
                throw new RunInputException($"{flag}: {problem}");
        var tally = new Tally();
        var trace = s.TracePath == null && !s.Profile ? null : new Trace();
        if (
            machine is IBlockMachine processes
            && s.LocalDevices != null
            && program != null
            && runStep == null
            && s.InputArrays == null
            && s.ParamArrays == null
        )
            return RunHeld(manifest, program, s, log, onStep, processes, trace);
        var args = s.InputArrays?.ToList() ?? LoadInputs(manifest, s, log, null, tally)!;
        var parameters =
            s.ParamArrays != null
                ? new Dictionary<string, NDArray>(s.ParamArrays)
                : LoadParams(manifest, s, null, tally)!;
        long heldBytes = args.Sum(a => a.Size * 4) + parameters.Values.Sum(p => p.Size * 4);
        runStep ??=
            machine != null
                ? (a, p, u, t) => machine.Run(manifest, program!, a, p, s.CollectiveTimeout, u, t)
                : (a, p, u, t) => ProgramRunner.Run(manifest, program!, a, p, s.CollectiveTimeout, u, t);
        IReadOnlyList<NDArray> results = [];
        var losses = new float[s.Steps];
        for (int run = 0; run < s.Steps * s.Repeat; run++)
        {
            int step = run % s.Steps;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var updates = new Dictionary<string, NDArray>();
            try
            {
                results = runStep(args, parameters, updates, trace);
            }
            catch (Exception e) when (e is ExecutionException or CollectiveException or DeviceException)
            {
                throw new RunInputException(s.Steps > 1 ? $"step {step + 1}: {e.Message}" : e.Message);
            }
            foreach (var (path, value) in updates)
                parameters[path] = value;
            if (manifest.Training)
                losses[step] = (float)results[0].GetDouble(0);
            onStep?.Invoke(step, results[0], sw.Elapsed);
        }
        if (s.TracePath != null)
            WriteTrace(s.TracePath, trace!, manifest.PhysicalMesh);
        if (s.OutPath != null)
            WriteOutputs(s.OutPath, manifest, losses, results);
        if (s.SaveParamsPath != null)
            SaveParams(
                s,
                manifest,
                (_, _) => true,
                (path, o, shape) => BlockLayout.Cut(parameters[path], o, shape),
                () => parameters
            );
        return new RunOutcome(results, manifest.Training ? losses : null, parameters)
        {
            Trace = trace,
            ArrayBytes = (tally.Read, tally.Held),
            HeldBytes = heldBytes,
        };
    }

    // A run whose processes each hold only their devices' blocks (an MPI job): the blocks are read or made one by one,
    // the steps update them in place, the results come to the root alone, and parameters are saved as a sharded
    // checkpoint from every process's blocks or gathered on the root for one file.
    private static RunOutcome RunHeld(
        ProgramManifest manifest,
        DeviceProgram program,
        RunSettings s,
        TextWriter log,
        Action<int, NDArray, TimeSpan>? onStep,
        IBlockMachine machine,
        Trace? trace
    )
    {
        var tally = new Tally();
        var blocks = ProgramRunner.BlocksRead(manifest, program, s.LocalDevices!);
        var held = new HeldBlocks();
        LoadInputs(manifest, s, log, (blocks.Inputs, held), tally);
        LoadParams(manifest, s, (blocks.Params, held), tally);
        IReadOnlyList<NDArray>? results = null;
        var losses = new float[s.Steps];
        for (int run = 0; run < s.Steps * s.Repeat; run++)
        {
            int step = run % s.Steps;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                results = machine.RunHeld(manifest, program, held, s.CollectiveTimeout, trace);
            }
            catch (Exception e) when (e is ExecutionException or CollectiveException or DeviceException)
            {
                throw new RunInputException(s.Steps > 1 ? $"step {step + 1}: {e.Message}" : e.Message);
            }
            if (results == null)
                continue;
            if (manifest.Training)
                losses[step] = (float)results[0].GetDouble(0);
            onStep?.Invoke(step, results[0], sw.Elapsed);
        }
        if (machine.Root && s.TracePath != null)
            WriteTrace(s.TracePath, trace!, manifest.PhysicalMesh);
        if (machine.Root && s.OutPath != null)
            WriteOutputs(s.OutPath, manifest, losses, results!);
        if (s.SaveParamsPath != null)
            SaveParams(s, manifest, held.Holds, held.Get, () => GatherParams(manifest, held, machine));
        return new RunOutcome(
            results ?? [],
            manifest.Training && results != null ? losses : null,
            new Dictionary<string, NDArray>()
        )
        {
            Trace = trace,
            ArrayBytes = (tally.Read, tally.Held),
            HeldBytes = held.Bytes,
        };
    }

    // Every parameter whole on the root, from every process's blocks (null on the other processes).
    private static Dictionary<string, NDArray>? GatherParams(
        ProgramManifest manifest,
        HeldBlocks held,
        IBlockMachine machine
    )
    {
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, System.Text.Encoding.UTF8, leaveOpen: true))
            foreach (var p in manifest.Params)
            foreach (var (offset, block) in held.Blocks(p.Path))
            {
                w.Write(p.Path);
                foreach (long o in offset)
                    w.Write(o);
                ArrayWire.Write(w, block);
            }
        if (machine.Gather(m.ToArray()) is not { } all)
            return null;
        var whole = manifest.Params.ToDictionary(p => p.Path, p => NDArray.Zeros(p.DType, p.Shape));
        foreach (var bytes in all)
        {
            using var r = new BinaryReader(new MemoryStream(bytes));
            while (r.BaseStream.Position < r.BaseStream.Length)
            {
                var target = whole[r.ReadString()];
                var offset = new long[target.Shape.Length];
                for (int d = 0; d < offset.Length; d++)
                    offset[d] = r.ReadInt64();
                BlockLayout.Put(ArrayWire.Read(r)!, target, offset);
            }
        }
        return whole;
    }

    // --save-params: a sharded checkpoint of the blocks this process holds, or one file of the whole parameters (where
    // whole gives them: null on the processes that do not write it).
    private static void SaveParams(
        RunSettings s,
        ProgramManifest manifest,
        Func<string, long[], bool> holds,
        Func<string, long[], long[], NDArray> block,
        Func<Dictionary<string, NDArray>?> whole
    )
    {
        if (!manifest.Training)
            throw new RunInputException("--save-params needs a training model: nothing was " + "updated");
        if (ShardedCheckpoint.IsFolder(s.SaveParamsPath!))
            ShardedCheckpoint.Write(
                s.SaveParamsPath!,
                manifest,
                holds,
                block,
                s.CheckpointWriters ?? new CheckpointWriters(0, 1, b => [b])
            );
        else if (whole() is { } all)
            WriteArrays(s.SaveParamsPath!, all);
    }

    // --out: the losses of a training run and the results, as "out" (or "out0", "out1", ...).
    private static void WriteOutputs(
        string path,
        ProgramManifest manifest,
        float[] losses,
        IReadOnlyList<NDArray> results
    )
    {
        var outputs = new Dictionary<string, NDArray>();
        if (manifest.Training)
            outputs["loss"] = NDArray.FromFloats([losses.Length], losses);
        for (int i = 0; i < results.Count; i++)
            outputs[results.Count == 1 ? "out" : $"out{i}"] = results[i];
        WriteArrays(path, outputs);
    }

    /// <summary>Writes arrays, turning file-system failures into input errors.</summary>
    public static void WriteArrays(string path, IReadOnlyDictionary<string, NDArray> arrays)
    {
        try
        {
            ArrayFile.Write(path, arrays);
        }
        catch (ArrayFileException e)
        {
            throw new RunInputException(e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunInputException(OutputFile.Describe(path, e));
        }
    }

    /// <summary>Reads an array file, turning every failure into an input error that names the file.</summary>
    public static Dictionary<string, NpyArray> ReadArrays(string path)
    {
        try
        {
            return ArrayFile.Read(path);
        }
        catch (ArrayFileException e)
        {
            throw new RunInputException(e.Message);
        }
    }

    /// <summary>The inputs and parameters a run of <paramref name="manifest"/> with <paramref name="s"/> starts
    /// from.</summary>
    public static (List<NDArray> Inputs, Dictionary<string, NDArray> Params) Load(
        ProgramManifest manifest,
        RunSettings s,
        TextWriter log
    ) => (LoadInputs(manifest, s, log, null, new Tally())!, LoadParams(manifest, s, null, new Tally())!);

    // The bytes of array data read and held by the files a run read.
    private sealed class Tally
    {
        public long Read;
        public long Held;
    }

    // Opens an array file to read its arrays or their blocks, turning every failure into an input error.
    private static T Reading<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (ArrayFileException e)
        {
            throw new RunInputException(e.Message);
        }
    }

    // The inputs as global arrays, or (with held) only the blocks each input's list names, put into held (then null).
    private static List<NDArray>? LoadInputs(
        ProgramManifest manifest,
        RunSettings s,
        TextWriter log,
        (List<(long[] Offset, long[] Shape)>[] Blocks, HeldBlocks To)? held,
        Tally tally
    )
    {
        var result = new List<NDArray>();
        if (s.InputsPath == null)
        {
            log.WriteLine($"note: no --inputs given: using random inputs (seed {s.Seed})");
            for (int i = 0; i < manifest.Inputs.Count; i++)
            {
                var a = manifest.Inputs[i];
                if (held is ({ } blocks, { } to))
                    foreach (var (offset, shape) in blocks[i])
                        to.Put(
                            HeldBlocks.Input(i),
                            offset,
                            Initializers.RandomInputBlock(a.DType, a.Shape, s.Seed, a.Name, a.IntBound, offset, shape)
                        );
                else
                    result.Add(Initializers.RandomInput(a.DType, a.Shape, s.Seed, a.Name, a.IntBound));
            }
            return held == null ? result : null;
        }
        using var file = Reading(() => ArrayReader.Open(s.InputsPath));
        var names = manifest.Inputs.Select(a => a.Name).ToList();
        foreach (var key in file.Keys)
            if (!names.Contains(key))
                throw new RunInputException(
                    $"{s.InputsPath}: unknown input '{key}' (the model's inputs: " + $"{string.Join(", ", names)})"
                );
        for (int i = 0; i < manifest.Inputs.Count; i++)
        {
            var a = manifest.Inputs[i];
            if (!file.Keys.Contains(a.Name))
                throw new RunInputException(
                    $"{s.InputsPath}: missing input '{a.Name}' ({SourceType(a.DType, a.Shape)})"
                );
            var (shape, source) = Reading(() => file.Info(a.Name));
            Check(source, shape, a.DType, a.Shape, s.InputsPath, "input", a.Name);
            if (held is ({ } blocks, { } to))
                foreach (var (offset, extent) in blocks[i])
                    to.Put(
                        HeldBlocks.Input(i),
                        offset,
                        Convert(Reading(() => file.ReadBlock(a.Name, offset, extent)).Array, a.DType)
                    );
            else
                result.Add(Convert(Reading(() => file.Read(a.Name)).Array, a.DType));
        }
        tally.Read += file.BytesRead;
        tally.Held += file.DataBytes(names);
        return held == null ? result : null;
    }

    // The parameters as global arrays, or (with held) only the blocks each one's list names, put into held (then
    // null); those the file or checkpoint lacks from their initialisers.
    private static Dictionary<string, NDArray>? LoadParams(
        ProgramManifest manifest,
        RunSettings s,
        (Dictionary<string, List<(long[] Offset, long[] Shape)>> Blocks, HeldBlocks To)? held,
        Tally tally
    )
    {
        var result = new Dictionary<string, NDArray>();
        // A parameter from its initialiser: whole, or the blocks held.
        void Init(ParamInfo p)
        {
            if (held is ({ } blocks, { } to))
                foreach (var (offset, shape) in blocks[p.Path])
                    to.Put(
                        p.Path,
                        offset,
                        Initializers.CreateBlock(p.Init, p.Std, p.DType, p.Shape, s.Seed, p.Path, offset, shape)
                    );
            else
                result[p.Path] = Initializers.Create(p.Init, p.Std, p.DType, p.Shape, s.Seed, p.Path);
        }
        if (s.ParamsPath != null && Directory.Exists(s.ParamsPath))
        {
            var saved = ShardedCheckpoint.ReadBlocks(
                s.ParamsPath,
                manifest,
                held?.Blocks,
                out long read,
                out long bytes
            );
            tally.Read += read;
            tally.Held += bytes;
            foreach (var p in manifest.Params)
                if (!saved.TryGetValue(p.Path, out var parts))
                    Init(p);
                else if (held is (_, { } to))
                    foreach (var (offset, block) in parts)
                        to.Put(p.Path, offset, block);
                else
                    result[p.Path] = parts[0].Block;
            return held == null ? result : null;
        }
        using var file = s.ParamsPath == null ? null : Reading(() => ArrayReader.Open(s.ParamsPath));
        var keys = file?.Keys ?? [];
        var paths = manifest.Params.Select(p => p.Path).ToHashSet();
        foreach (var key in keys)
            if (!paths.Contains(key))
                throw new RunInputException(
                    $"{s.ParamsPath}: unknown parameter '{key}' (the model has {paths.Count} "
                        + $"parameters; 'mplc params' lists them)"
                );
        foreach (var p in manifest.Params)
        {
            if (file == null || !keys.Contains(p.Path))
            {
                Init(p);
                continue;
            }
            var (shape, source) = Reading(() => file.Info(p.Path));
            Check(source, shape, p.DType, p.Shape, s.ParamsPath!, "parameter", p.Path);
            if (held is ({ } blocks, { } to))
                foreach (var (offset, extent) in blocks[p.Path])
                    to.Put(
                        p.Path,
                        offset,
                        Convert(Reading(() => file.ReadBlock(p.Path, offset, extent)).Array, p.DType)
                    );
            else
                result[p.Path] = Convert(Reading(() => file.Read(p.Path)).Array, p.DType);
        }
        if (file != null)
        {
            tally.Read += file.BytesRead;
            tally.Held += file.DataBytes(keys);
        }
        return held == null ? result : null;
    }

    /// <summary>The source spelling of a type: <c>f32[8, 64]</c>.</summary>
    public static string SourceType(DType dtype, long[] shape) => $"{dtype.Name()}[{string.Join(", ", shape)}]";

    /// <summary>Accepts an array for the expected type: same shape, same element type, float64 for f32
    /// allowed.</summary>
    private static void Check(
        string sourceDtype,
        long[] found,
        DType dtype,
        long[] shape,
        string file,
        string what,
        string key
    )
    {
        string src = NumpyName(sourceDtype);
        bool dtypeOk = dtype switch
        {
            DType.F32 => src is "float32" or "float64",
            DType.F16 => src == "float16",
            DType.BF16 => src is "bfloat16" or "float32", // numpy has no bfloat16: f32 values are rounded
            DType.I32 => src == "int32",
            _ => false,
        };
        if (!dtypeOk)
        {
            string hint = dtype == DType.I32 && src == "int64" ? " (convert with .astype(np.int32))" : "";
            throw new RunInputException(
                $"{file}: {what} '{key}' must be {SourceType(dtype, shape)}, found dtype " + $"{src}{hint}"
            );
        }
        if (!found.SequenceEqual(shape))
            throw new RunInputException(
                $"{file}: {what} '{key}' must be {SourceType(dtype, shape)}, found shape "
                    + $"[{string.Join(", ", found)}]"
            );
    }

    // The array as the model's type (f32 values for a bf16 parameter rounded).
    private static NDArray Convert(NDArray arr, DType dtype)
    {
        if (arr.DType == dtype)
            return arr;
        var data = (float[])arr.F!.Clone();
        for (int i = 0; i < data.Length; i++)
            data[i] = dtype.Round(data[i]);
        return NDArray.FromFloats(dtype, arr.Shape, data);
    }

    private static string NumpyName(string source) =>
        source switch
        {
            "F32" => "float32",
            "F64" => "float64",
            "F16" => "float16",
            "BF16" => "bfloat16",
            "I32" => "int32",
            "I64" => "int64",
            _ => source,
        };

    private static void WriteTrace(string path, Trace trace, DeviceMesh mesh)
    {
        var names = Enumerable
            .Range(0, mesh.DeviceCount)
            .Select(r =>
                $"device {r}"
                + (
                    mesh.DeviceCount > 1
                        ? $" ({string.Join(", ", mesh.AxisNames.Zip(mesh.Coords(r), (a, c) => $"{a}={c}"))})"
                        : ""
                )
            )
            .ToArray();
        try
        {
            using var f = File.Create(path);
            trace.WriteChromeJson(f, names);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunInputException(OutputFile.Describe(path, e));
        }
    }
}
