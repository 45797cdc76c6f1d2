using System.Globalization;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.IO;

namespace ParallelCompiler.Driver;

/// <summary>What <c>mplc run</c> reads and writes.</summary>
public sealed class RunSettings
{
    /// <summary>Inputs keyed by argument name (.npz, .npy or .safetensors), or null for random inputs.</summary>
    public string? InputsPath { get; set; }
    /// <summary>Parameters keyed by dotted path, or null to initialise all of them.</summary>
    public string? ParamsPath { get; set; }
    /// <summary>Where the result goes, under the key "out".</summary>
    public string? OutPath { get; set; }
    /// <summary>Seed for initialisers and random inputs.</summary>
    public ulong Seed { get; set; }
    /// <summary>Training steps to run on the same inputs (1 for a forward run).</summary>
    public int Steps { get; set; } = 1;
    /// <summary>Where to write the parameters and optimizer state after the last step, or null.</summary>
    public string? SaveParamsPath { get; set; }
    /// <summary>How kernels run: "cpu" (compiled host kernels) or "interp" (the reference interpreter).</summary>
    public string Backend { get; set; } = "cpu";
    /// <summary>Where to write a Chrome/Perfetto trace of every device's work, or null.</summary>
    public string? TracePath { get; set; }
    /// <summary>How long a device waits in a collective before the run is reported as stuck.</summary>
    public TimeSpan CollectiveTimeout { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>What a run gives: the last step's results, the loss of every step (training only) and the final parameters.</summary>
public sealed record RunOutcome(IReadOnlyList<NDArray> Results, float[]? Losses, IReadOnlyDictionary<string, NDArray> Parameters);

/// <summary>
/// Loads inputs and parameters for a compiled module and checks them against its (global) types, then runs it:
/// a per-device module on every device of its mesh, each a thread with the in-process communicator, with inputs
/// and parameters sliced into each device's block and results put back together; a global module on one device
/// with the reference interpreter.
/// </summary>
public static class ModelRunner
{
    /// <summary>
    /// Runs the entry function <see cref="RunSettings.Steps"/> times on the same inputs, carrying the parameters
    /// (and optimizer state) each step updates into the next; <paramref name="onStep"/> hears of every step.
    /// Writes the last step's result under <c>out</c> (a training module also the loss of every step under
    /// <c>loss</c>, shape [steps]) and the saved parameters.
    /// </summary>
    public static RunOutcome Run(Operation module, RunSettings s, TextWriter log, Action<int, NDArray, TimeSpan>? onStep = null)
    {
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        bool training = func.Walk().Any(o => o.Name == "train.update");
        if (s.Steps < 1) throw new UserErrorException($"--steps must be at least 1, got {s.Steps}");
        if (s.Steps > 1 && !training) throw new UserErrorException("--steps needs a training model (a 'train MODEL optimizer ...' declaration)");
        var args = LoadInputs(func, s, log);
        var parameters = LoadParams(func, s);
        if (s.TracePath != null && !module.IsSpmd()) throw new UserErrorException("--trace needs a per-device program: the pipeline must run spmdize");
        var trace = s.TracePath == null ? null : new Trace();
        using var library = s.Backend == "cpu" && module.IsSpmd() && module.Functions().Any(f => f.GetAttr("kernel") != null) ? CompileHostKernels(module) : null;
        Func<Operation, IKernel>? kernels = library == null ? null : op => library.Kernel(op.StringAttr("callee"));
        IReadOnlyList<NDArray> results = [];
        var losses = new float[s.Steps];
        for (int step = 0; step < s.Steps; step++)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var updates = new Dictionary<string, NDArray>();
            try
            {
                results = module.IsSpmd()
                    ? SpmdRunner.Run(module, func, args, parameters, s.CollectiveTimeout, updates, trace, kernels)
                    : Interpreter.Run(func, args, op => parameters[op.StringAttr("path")], (op, v) =>
                    {
                        if (op.Name == "train.update") updates[Dialects.Train.ParameterEffectOpDef.PathOf(op)] = v;
                    });
            }
            catch (Exception e) when (e is InterpreterException or ExecutionException or CollectiveException)
            {
                throw new UserErrorException(s.Steps > 1 ? $"step {step + 1}: {e.Message}" : e.Message);
            }
            foreach (var (path, value) in updates) parameters[path] = value;
            if (training) losses[step] = (float)results[0].GetDouble(0);
            onStep?.Invoke(step, results[0], sw.Elapsed);
        }
        if (trace != null) WriteTrace(s.TracePath!, trace, module.PhysicalMesh());
        if (s.OutPath != null)
        {
            var outputs = new Dictionary<string, NDArray>();
            if (training) outputs["loss"] = NDArray.FromFloats([s.Steps], losses);
            for (int i = 0; i < results.Count; i++) outputs[results.Count == 1 ? "out" : $"out{i}"] = results[i];
            WriteArrays(s.OutPath, outputs);
        }
        if (s.SaveParamsPath != null)
        {
            if (!training) throw new UserErrorException("--save-params needs a training model: nothing was updated");
            WriteArrays(s.SaveParamsPath, parameters);
        }
        return new RunOutcome(results, training ? losses : null, parameters);
    }

    /// <summary>Writes arrays, turning file-system failures into user errors.</summary>
    public static void WriteArrays(string path, IReadOnlyDictionary<string, NDArray> arrays)
    {
        try { ArrayFile.Write(path, arrays); }
        catch (ArrayFileException e) { throw new UserErrorException(e.Message); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserErrorException($"cannot write '{path}': {e.Message}");
        }
    }

    /// <summary>Compiles the module's kernels into a host library and loads it (the file is removed once loaded).</summary>
    public static Runtime.Cpu.HostKernelLibrary CompileHostKernels(Operation module)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-kernels").FullName;
        try
        {
            string so = Path.Combine(dir, "libkernels.so");
            Backend.KernelCompiler.BuildHostLibrary(module, so);
            return new Runtime.Cpu.HostKernelLibrary(so);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static void WriteTrace(string path, Trace trace, DeviceMesh mesh)
    {
        var names = Enumerable.Range(0, mesh.DeviceCount).Select(r =>
            $"device {r}" + (mesh.DeviceCount > 1 ? $" ({string.Join(", ", mesh.AxisNames.Zip(mesh.Coords(r), (a, c) => $"{a}={c}"))})" : "")).ToArray();
        try
        {
            using var f = File.Create(path);
            trace.WriteChromeJson(f, names);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserErrorException($"cannot write '{path}': {e.Message}");
        }
    }

    /// <summary>Reads an array file, turning every failure into a user error that names the file.</summary>
    public static Dictionary<string, NpyArray> ReadArrays(string path)
    {
        try { return ArrayFile.Read(path); }
        catch (ArrayFileException e) { throw new UserErrorException(e.Message); }
    }

    private static List<NDArray> LoadInputs(Operation func, RunSettings s, TextWriter log)
    {
        var args = func.Regions[0].Entry.Arguments;
        var result = new List<NDArray>();
        if (s.InputsPath == null)
        {
            log.WriteLine($"note: no --inputs given: using random inputs (seed {s.Seed})");
            foreach (var a in args)
            {
                var t = SpmdRunner.GlobalType(a);
                result.Add(Initializers.RandomInput(t.DType, t.ShapeArray, s.Seed, a.NameHint ?? "", IntegerBound(a)));
            }
            return result;
        }
        var file = ReadArrays(s.InputsPath);
        var names = args.Select(a => a.NameHint ?? "").ToList();
        foreach (var key in file.Keys)
            if (!names.Contains(key))
                throw new UserErrorException($"{s.InputsPath}: unknown input '{key}' (the model's inputs: {string.Join(", ", names)})");
        foreach (var a in args)
        {
            string name = a.NameHint ?? "";
            if (!file.TryGetValue(name, out var arr))
                throw new UserErrorException($"{s.InputsPath}: missing input '{name}' ({SpmdRunner.GlobalType(a).ToSourceString()})");
            result.Add(Check(arr, SpmdRunner.GlobalType(a), s.InputsPath, "input", name));
        }
        return result;
    }

    private static Dictionary<string, NDArray> LoadParams(Operation func, RunSettings s)
    {
        var ops = func.Regions[0].Entry.Operations.Where(o => o.Name == "tensor.param").ToList();
        var file = s.ParamsPath == null ? new Dictionary<string, NpyArray>() : ReadArrays(s.ParamsPath);
        var paths = ops.Select(o => o.StringAttr("path")).ToHashSet();
        foreach (var key in file.Keys)
            if (!paths.Contains(key))
                throw new UserErrorException($"{s.ParamsPath}: unknown parameter '{key}' (the model has {paths.Count} parameters; 'mplc params' lists them)");
        var result = new Dictionary<string, NDArray>();
        foreach (var op in ops)
        {
            string path = op.StringAttr("path");
            var t = SpmdRunner.GlobalType(op.Result);
            result[path] = file.TryGetValue(path, out var arr)
                ? Check(arr, t, s.ParamsPath!, "parameter", path)
                : Initializers.Create(op.StringAttr("init"), op.GetAttr("std") is null ? 0 : op.FloatAttr("std"), t.DType, t.ShapeArray, s.Seed, path);
        }
        return result;
    }

    /// <summary>Accepts an array for <paramref name="expected"/>: same shape, same element type, float64 for f32 allowed.</summary>
    private static NDArray Check(NpyArray a, TensorType expected, string file, string what, string key)
    {
        string src = NumpyName(a.SourceDtype);
        bool dtypeOk = expected.DType switch
        {
            DType.F32 => src is "float32" or "float64",
            DType.F16 => src == "float16",
            DType.BF16 => src is "bfloat16" or "float32", // numpy has no bfloat16: f32 values are rounded
            DType.I32 => src == "int32",
            _ => false,
        };
        if (!dtypeOk)
        {
            string hint = expected.DType == DType.I32 && src == "int64" ? " (convert with .astype(np.int32))" : "";
            throw new UserErrorException($"{file}: {what} '{key}' must be {expected.ToSourceString()}, found dtype {src}{hint}");
        }
        if (!a.Array.Shape.SequenceEqual(expected.Shape))
            throw new UserErrorException($"{file}: {what} '{key}' must be {expected.ToSourceString()}, found shape [{string.Join(", ", a.Array.Shape)}]");
        var arr = a.Array;
        if (arr.DType == expected.DType) return arr;
        var data = (float[])arr.F!.Clone();
        for (int i = 0; i < data.Length; i++) data[i] = expected.DType.Round(data[i]);
        return NDArray.FromFloats(expected.DType, expected.ShapeArray, data);
    }

    private static string NumpyName(string source) => source switch
    {
        "F32" => "float32", "F64" => "float64", "F16" => "float16", "BF16" => "bfloat16", "I32" => "int32", "I64" => "int64",
        _ => source,
    };

    /// <summary>Random integer inputs stay within the tables and classes they index.</summary>
    private static long IntegerBound(BlockArgument a) => Bound(a) is var b && b == long.MaxValue ? 10 : b;

    private static long Bound(BlockArgument a)
    {
        long bound = long.MaxValue;
        foreach (var (op, idx) in a.Uses)
        {
            if (op.Name is "tensor.embedding" or "tensor.embedding_grad" && idx == 0)
                bound = Math.Min(bound, op.Name == "tensor.embedding" ? op.OperandType(1).Shape[0] : op.IntAttr("rows"));
            if (op.Name == "tensor.cross_entropy" && idx == 1) bound = Math.Min(bound, op.OperandType(0).Shape[^1]);
            if (op.Name == "tensor.one_hot") bound = Math.Min(bound, op.IntAttr("classes"));
            // Through a kernel to the ops of its function that read the argument.
            if (op.Name == "kernel.launch" && op.ParentOp?.ParentOp?.Function(op.StringAttr("callee")) is { } k)
                bound = Math.Min(bound, Bound(k.Regions[0].Entry.Arguments[idx]));
        }
        return bound;
    }

    /// <summary>A one-line summary of an array for the terminal.</summary>
    public static string Summary(NDArray a)
    {
        if (a.Size == 1) return $"{a.TypeString} = {a.GetDouble(0).ToString("G7", CultureInfo.InvariantCulture)}";
        if (a.Size == 0) return $"{a.TypeString} (empty)";
        double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        for (long i = 0; i < a.Size; i++) { double v = a.GetDouble(i); sum += v; min = Math.Min(min, v); max = Math.Max(max, v); }
        string F(double v) => v.ToString("G5", CultureInfo.InvariantCulture);
        return $"{a.TypeString} mean {F(sum / a.Size)}, min {F(min)}, max {F(max)}";
    }
}
