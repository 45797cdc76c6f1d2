using ParallelCompiler.Backend;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Driver;

/// <summary>
/// Runs a compiled module through the runtime, as <c>mplrun</c> runs a bundle: its manifest (inputs, results and
/// parameters with their global layouts) and device program go to <see cref="ModelSession"/>. Kernels are the
/// compiled host kernels (<c>--backend cpu</c>), the PTX kernels on GPUs (<c>cuda</c>), the same kernels built for
/// the host grid on emulated GPUs (<c>cuda-emu</c>) or the reference interpreter (<c>interp</c>). A module the pipeline
/// left global (no spmdize) runs on one device with the reference interpreter.
/// </summary>
public static class ModelRunner
{
    /// <summary>Runs the module's entry function <see cref="RunSettings.Steps"/> times; <paramref name="onStep"/> hears
    /// of every step; <paramref name="machine"/>, when given, runs the compiled host kernels' devices (an MPI
    /// process's).</summary>
    public static RunOutcome Run(
        Operation module,
        RunSettings s,
        TextWriter log,
        Action<int, NDArray, TimeSpan>? onStep = null,
        IMachine? machine = null
    )
    {
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        var manifest = ManifestBuilder.Build(module);
        if (!module.IsSpmd())
        {
            if (s.TracePath != null)
                throw new UserErrorException("--trace needs a per-device program: the pipeline " + "must run spmdize");
            return ModelSession.Run(
                manifest,
                null,
                s,
                log,
                onStep,
                (args, parameters, updates, _) =>
                {
                    try
                    {
                        return Interpreter.Run(
                            func,
                            args,
                            op => parameters[op.StringAttr("path")],
                            (op, v) =>
                            {
                                if (op.Name == "train.update")
                                    updates[Dialects.Train.ParameterEffectOpDef.PathOf(op)] = v;
                            }
                        );
                    }
                    catch (InterpreterException e)
                    {
                        throw new ExecutionException(e.Message, e);
                    }
                }
            );
        }
        bool compiled = module.Functions().Any(f => f.GetAttr("kernel") != null);
        using var library = s.Backend == "cpu" && compiled ? CompileHostKernels(module) : null;
        using var gpu = s.Backend is "cuda" or "cuda-emu" ? OpenGpus(module, s) : null;
        if (gpu != null)
            log.WriteLine($"note: {gpu.Describe(manifest.PhysicalMesh.DeviceCount)}");
        Func<Operation, IKernel>? kernels =
            library != null ? op => library.Kernel(op.StringAttr("callee"))
            : gpu != null ? op => new KernelRef(op.StringAttr("callee"))
            : null;
        var program = DeviceProgramBuilder.Build(func, kernels);
        return ModelSession.Run(manifest, program, s, log, onStep, machine: (IMachine?)gpu ?? machine);
    }

    /// <summary>The GPUs of <c>--backend cuda</c> with the module's PTX, or the emulated GPUs of <c>cuda-emu</c> with
    /// its host-grid kernels.</summary>
    private static Runtime.Gpu.GpuMachine OpenGpus(Operation module, RunSettings s)
    {
        var specs = Backend.KernelCompiler.Specs(module);
        var launches = specs.Select(Backend.BundleWriter.Launch).ToArray();
        if (s.Backend == "cuda")
            return Runtime.Gpu.GpuMachine.OpenCuda(
                Backend.KernelCompiler.Ptx(specs, collectives: true),
                launches,
                s.Gpus
            );
        return WithHostLibrary(
            module,
            Backend.Llvm.KernelTarget.HostGrid,
            so => Runtime.Gpu.GpuMachine.OpenEmulated(so, launches, s.Gpus ?? 1)
        );
    }

    /// <summary>
    /// The module's kernels as a loaded host library. Libraries are cached by the text of the kernel functions,
    /// the loaded LLVM, the host CPU and this build of the compiler (in <c>$MPLC_CACHE_DIR</c>, else
    /// <c>$XDG_CACHE_HOME/mplc</c> or <c>~/.cache/mplc</c>; <c>MPLC_CACHE_DIR=off</c> disables it), so running the
    /// same program again skips LLVM and the linker.
    /// </summary>
    public static Runtime.Cpu.HostKernelLibrary CompileHostKernels(Operation module) =>
        WithHostLibrary(module, Backend.Llvm.KernelTarget.Cpu, so => new Runtime.Cpu.HostKernelLibrary(so));

    /// <summary>
    /// Loads the module's kernels built for <paramref name="target"/> (the host, or the host grid of an emulated
    /// GPU) with <paramref name="load"/>, from the cache when it has them (see <see cref="CompileHostKernels"/>).
    /// </summary>
    private static T WithHostLibrary<T>(Operation module, Backend.Llvm.KernelTarget target, Func<string, T> load)
    {
        string suffix = target == Backend.Llvm.KernelTarget.Cpu ? ".so" : "-grid.so";
        string? cache = Backend.KernelCache.Directory();
        if (cache != null)
        {
            string path = Path.Combine(cache, Backend.KernelCache.Key(module) + suffix);
            if (File.Exists(path))
            {
                try
                {
                    return load(path);
                }
                catch (InvalidDataException)
                {
                    File.Delete(path);
                } // damaged: build it again
            }
            string tmp = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            Backend.KernelCompiler.BuildHostLibrary(Backend.KernelCompiler.Specs(module), tmp, target);
            File.Move(tmp, path, overwrite: true); // atomic: a concurrent run sees a whole library or none
            Backend.KernelCache.Prune(cache);
            return load(path);
        }
        string dir = Directory.CreateTempSubdirectory("mplc-kernels").FullName;
        try
        {
            string so = Path.Combine(dir, "libkernels" + suffix);
            Backend.KernelCompiler.BuildHostLibrary(Backend.KernelCompiler.Specs(module), so, target);
            return load(so); // loaded: the file may go
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>A one-line summary of an array for the terminal.</summary>
    public static string Summary(NDArray a)
    {
        if (a.Size == 1)
            return $"{a.TypeString} = "
                + $"{a.GetDouble(0).ToString("G7", System.Globalization.CultureInfo.InvariantCulture)}";
        if (a.Size == 0)
            return $"{a.TypeString} (empty)";
        double sum = 0,
            min = double.PositiveInfinity,
            max = double.NegativeInfinity;
        for (long i = 0; i < a.Size; i++)
        {
            double v = a.GetDouble(i);
            sum += v;
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }
        string F(double v) => v.ToString("G5", System.Globalization.CultureInfo.InvariantCulture);
        return $"{a.TypeString} mean {F(sum / a.Size)}, min {F(min)}, max {F(max)}";
    }
}
