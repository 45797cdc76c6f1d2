using System.Globalization;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Runtime.Mpi;

namespace ParallelCompiler.Mplrun;

/// <summary>
/// <c>mplrun BUNDLE [--inputs IN] [--params P] [--out OUT] [--steps N] [--save-params P2] [--seed N] [--backend
/// cpu|cuda|cuda-emu]
/// [--gpus N] [--compare cpu] [--trace T.json] [--collective-timeout S]</c>: runs a compiled bundle on every device of
/// its mesh
/// with nothing but the runtime; <c>--compare cpu</c> checks the run against the CPU back end (for GPU nodes without
/// the SDK). Exit codes: 0 success, 1 a problem with the input, 2 an internal error.
/// </summary>
public static class MplrunCli
{
    /// <summary>
    /// <c>--verify</c>: everything <c>mplrun</c> checks before a run, without running: the files and their
    /// checksums, the manifest by itself and against the program, the host kernels (loaded, every kernel the program
    /// names found) and this CPU.
    /// </summary>
    private static int Verify(Bundle bundle, TextWriter stdout)
    {
        var m = bundle.Manifest;
        using var lib = new HostKernelLibrary(bundle.HostLibrary("libkernels.so"));
        var program = bundle.Program(lib.Kernel);
        stdout.WriteLine(
            $"bundle '{bundle.Directory}' is sound: {m.Name}, mesh {m.PhysicalMesh}, {m.Inputs.Count} input(s), "
                + $"{m.Params.Count} parameter(s), {m.Kernels.Count} kernel(s), "
                + $"{program.Instructions.Count} instructions, {m.Files.Count + 2} files checked"
        );
        return 0;
    }

    /// <summary>The line after a usage error: where the options are, not all of them.</summary>
    private const string SeeHelp = "run 'mplrun --help' for the options";

    private const string Usage =
        "usage: mplrun BUNDLE.mplc [--inputs IN.npz] [--params P.npz] [--out OUT.npz] "
        + "[--steps N] [--repeat N] [--save-params P2.npz] "
        + "[--seed N] [--backend cpu|cuda|cuda-emu] [--gpus N] [--compare cpu] [--check-collectives] [--trace T.json] "
        + "[--profile] [--io-stats] [--collective-timeout S]\n"
        + "       mplrun --verify BUNDLE.mplc   (check the bundle without running it)";

    /// <summary>Runs the command line; returns the exit code.</summary>
    public static int Execute(string[] args, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            return Run(args, stdout, stderr);
        }
        catch (Exception e) when (e is RunInputException or DeviceException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"mplrun: internal error: {e.GetType().Name}: {e.Message}");
            if (args.Contains("--verbose"))
                stderr.WriteLine(e);
            return 2;
        }
    }

    private static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args.Contains("--help") || args.Contains("-h"))
        {
            (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
            return args.Length == 0 ? 1 : 0;
        }
        string? bundlePath = null;
        bool compare = false,
            checkCollectives = false,
            verify = false,
            ioStats = false;
        var s = new RunSettings();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal))
            {
                if (bundlePath != null)
                    throw new RunInputException($"one bundle only: got '{bundlePath}' and " + $"'{a}'\n{SeeHelp}");
                bundlePath = a;
                continue;
            }
            if (a == "--verbose")
                continue;
            if (a == "--profile")
            {
                s.Profile = true;
                continue;
            }
            if (a == "--io-stats")
            {
                ioStats = true;
                continue;
            }
            if (a == "--check-collectives")
            {
                checkCollectives = true;
                continue;
            }
            if (a == "--verify")
            {
                verify = true;
                continue;
            }
            if (a == "--compare")
            {
                if (i + 1 >= args.Length || args[++i] != "cpu")
                    throw new RunInputException(
                        "--compare takes 'cpu' " + "(run again on the CPU back end and compare)"
                    );
                compare = true;
                continue;
            }
            string Value() =>
                i + 1 < args.Length ? args[++i] : throw new RunInputException($"{a} needs a value\n{SeeHelp}");
            switch (a)
            {
                case "--inputs":
                    s.InputsPath = Value();
                    break;
                case "--params":
                    s.ParamsPath = Value();
                    break;
                case "--out":
                    s.OutPath = Value();
                    break;
                case "--save-params":
                    s.SaveParamsPath = Value();
                    break;
                case "--trace":
                    s.TracePath = Value();
                    break;
                case "--backend":
                    s.Backend = Value();
                    break;
                case "--gpus":
                    s.Gpus = Int(a, Value());
                    break;
                case "--steps":
                    s.Steps = Int(a, Value());
                    break;
                case "--repeat":
                    s.Repeat = Int(a, Value());
                    break;
                case "--seed":
                    s.Seed = (ulong)Int(a, Value());
                    break;
                case "--collective-timeout":
                    double t =
                        double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0
                            ? v
                            : throw new RunInputException("--collective-timeout must be a positive number of seconds");
                    s.CollectiveTimeout = TimeSpan.FromSeconds(t);
                    break;
                default:
                    throw new RunInputException($"unknown option '{a}'\n{SeeHelp}");
            }
        }
        if (bundlePath == null)
            throw new RunInputException($"no bundle given\n{SeeHelp}");
        var bundle = Bundle.Open(bundlePath);
        var m = bundle.Manifest;
        if (verify)
            return Verify(bundle, stdout);
        // Every process reports what it read itself, though only rank 0 prints the rest.
        var stats = ioStats ? stderr : null;
        var mpi = MpiProcess.Join(
            m.PhysicalMesh,
            s,
            s.Backend is not ("cpu" or "cuda")
            || (checkCollectives && s.Backend != "cpu")
            || compare
            || (s.Backend == "cuda" && s.Gpus != null)
                ? "an MPI job runs the cpu or the cuda back end (each process on devices/processes GPUs of its node): "
                    + "run --backend cuda-emu, --gpus, --compare and a GPU's --check-collectives in one process"
                : null,
            ref stdout,
            ref stderr
        );
        try
        {
            return RunBundle(bundle, s, compare, checkCollectives, mpi, stdout, stderr, stats);
        }
        catch
        {
            mpi?.Fail();
            throw;
        }
        finally
        {
            mpi?.Dispose();
        }
    }

    private static int RunBundle(
        Bundle bundle,
        RunSettings s,
        bool compare,
        bool checkCollectives,
        MpiProcess? mpi,
        TextWriter stdout,
        TextWriter stderr,
        TextWriter? stats
    )
    {
        var m = bundle.Manifest;
        stderr.WriteLine(
            $"note: running {m.Name} on {m.PhysicalMesh.DeviceCount} device(s), mesh {m.PhysicalMesh}, "
                + $"backend {s.Backend}{(mpi != null ? $", {mpi.Size} MPI processes" : "")}"
        );
        if (checkCollectives && mpi != null)
            return mpi.CheckCollectives(m.PhysicalMesh, s.CollectiveTimeout, stdout) ? 0 : 1;
        IDisposable? owned = null;
        GpuMachine? gpu = null;
        Func<string, IKernel> kernels = name => new KernelRef(name);
        switch (s.Backend)
        {
            case "cpu":
                var lib = new HostKernelLibrary(bundle.HostLibrary("libkernels.so"));
                owned = lib;
                kernels = lib.Kernel;
                break;
            case "cuda" when mpi != null:
                // The process keeps its GPUs until MPI is finalised.
                string where = mpi.OpenGpus(File.ReadAllText(bundle.PathOf("kernels.ptx")), m.Kernels, s.Profile);
                stderr.WriteLine($"note: {where}");
                break;
            case "cuda" or "cuda-emu":
                string grid =
                    s.Backend == "cuda-emu"
                        ? bundle.HostLibrary("libkernels-grid.so")
                        : bundle.PathOf("libkernels-grid.so");
                owned = gpu = GpuMachines.Open(
                    s.Backend,
                    bundle.PathOf("kernels.ptx"),
                    grid,
                    m.Kernels,
                    s.Gpus,
                    timeKernels: s.Profile
                );
                stderr.WriteLine($"note: {gpu.Describe(m.PhysicalMesh.DeviceCount)}");
                break;
            case "interp":
                throw new RunInputException(
                    "--backend interp needs the compiler (the reference interpreter is not "
                        + "part of the runtime): use 'mplc run MODEL.mpl --backend interp'"
                );
            default:
                throw new RunInputException($"--backend must be cpu, cuda or cuda-emu, got '{s.Backend}'");
        }
        using (owned)
        {
            if (checkCollectives)
            {
                if (gpu == null)
                    throw new RunInputException(
                        "--check-collectives checks the collectives of a GPU "
                            + "back end: add --backend cuda or cuda-emu"
                    );
                return gpu.CheckCollectives(stdout) ? 0 : 1;
            }
            var program = bundle.Program(kernels);
            var outcome = ModelSession.Run(
                m,
                program,
                s,
                stderr,
                s.Steps > 1
                    ? (step, loss, t) =>
                        stderr.WriteLine(
                            $"step {step + 1}/{s.Steps}  loss "
                                + loss.GetDouble(0).ToString("G7", CultureInfo.InvariantCulture)
                                + $"  {t.TotalMilliseconds:F1} "
                                + $"ms/step"
                        )
                    : null,
                machine: (IMachine?)mpi ?? gpu
            );
            outcome.Print(s, r => r.TypeString, stdout);
            stats?.WriteLine(
                $"note: {(mpi != null ? $"process {mpi.Rank} of {mpi.Size}" : "the run")} read "
                    + $"{outcome.ArrayBytes.Read} of the {outcome.ArrayBytes.Held} bytes of array data in the input "
                    + "and parameter files"
            );
            stats?.WriteLine(
                $"note: {(mpi != null ? $"process {mpi.Rank} of {mpi.Size}" : "the run")} holds "
                    + $"{outcome.HeldBytes} bytes of inputs and parameters"
            );
            if (s.Profile && outcome.Trace is { } trace)
                PrintProfile(trace, gpu, stdout);
            if (s.Profile && gpu != null)
                PrintTraffic(gpu, stdout);
            if (compare)
                return Compare(bundle, s, outcome, stdout, stderr);
        }
        return 0;
    }

    /// <summary>
    /// Runs the bundle again on the CPU back end with the same inputs, parameters and seed, and compares every
    /// result, every step's loss and every trained parameter: within 1e-4 relative (the GPU's math library and
    /// summation order differ from the host's) it prints the largest difference, else it is an error naming the array.
    /// </summary>
    private static int Compare(Bundle bundle, RunSettings s, RunOutcome outcome, TextWriter stdout, TextWriter stderr)
    {
        const double tolerance = 1e-4;
        var host = new RunSettings
        {
            InputsPath = s.InputsPath,
            ParamsPath = s.ParamsPath,
            Seed = s.Seed,
            Steps = s.Steps,
            CollectiveTimeout = s.CollectiveTimeout,
        };
        RunOutcome reference;
        using (var lib = new HostKernelLibrary(bundle.HostLibrary("libkernels.so")))
            reference = ModelSession.Run(bundle.Manifest, bundle.Program(lib.Kernel), host, TextWriter.Null);
        var diffs = RunComparison.Compare(reference, outcome, bundle.Manifest.Training);
        var w = RunComparison.Worst(diffs);
        double worst = w?.Error ?? 0;
        string at = w == null ? "" : $"{w.Name}[{w.Index}]: cpu {w.Expected}, {s.Backend} {w.Got}";
        string summary =
            $"{diffs.Count} array(s), largest relative difference " + $"{worst:G3}{(at.Length > 0 ? $" at {at}" : "")}";
        if (worst > tolerance)
            throw new RunInputException(
                $"--compare cpu: {s.Backend} differs from cpu: {summary} " + $"(tolerance {tolerance:G})"
            );
        stdout.WriteLine($"compare: {s.Backend} equals cpu within {tolerance:G}: {summary}");
        return 0;
    }

    /// <summary>Per kernel, over all devices and steps: launches, wall time in the launch, and (on a GPU) time on the
    /// GPU in all and of the fastest launch.</summary>
    private static void PrintProfile(Trace trace, GpuMachine? gpu, TextWriter w)
    {
        var rows = trace
            .Events.Where(e => e.Category == "compute")
            .GroupBy(e => e.Name)
            .Select(g => (Name: g.Key, Count: g.Count(), Ms: g.Sum(e => e.End - e.Start) / 1000))
            .OrderByDescending(r => r.Ms)
            .ToList();
        w.WriteLine(
            gpu == null
                ? "kernel                     launches   total ms    mean us"
                : "kernel                     launches   total ms    mean us     GPU ms  GPU best us"
        );
        foreach (var (name, count, ms) in rows)
        {
            string k = name.StartsWith("kernel ", StringComparison.Ordinal) ? name[7..] : name;
            string line = $"{k, -26} {count, 8} {ms, 10:F3} {ms * 1000 / count, 10:F1}";
            if (gpu != null)
                line += gpu.KernelMilliseconds(k) is var (total, best)
                    ? $" {total, 10:F3} {best * 1000, 12:F1}"
                    : "          -            -";
            w.WriteLine(line);
        }
    }

    /// <summary>What went between the host and the GPUs, and the GPUs' peak memory.</summary>
    private static void PrintTraffic(GpuMachine gpu, TextWriter w)
    {
        foreach (var g in gpu.Gpus)
        {
            var c = g.Counters;
            w.WriteLine(
                $"{g.Name}: {c.Launches} launches, {c.BytesToDevice} bytes to the GPU, {c.BytesToHost} bytes "
                    + $"to the host, "
                    + $"{c.BytesOnDevice} bytes copied on the GPU, peak {c.PeakBytes} bytes allocated"
            );
        }
    }

    private static int Int(string flag, string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) && x >= 0
            ? x
            : throw new RunInputException($"{flag} expects a non-negative integer, got '{v}'");
}
