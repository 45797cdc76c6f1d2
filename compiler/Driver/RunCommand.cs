using System.CommandLine;
using System.Globalization;
using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;
using Spectre.Console;

namespace ParallelCompiler.Driver;

/// <summary><c>mplc run</c>: compile, run on the mesh's devices, compare with one device, report the steps.</summary>
public sealed partial class Cli
{
    private Command RunCommand()
    {
        var file = FileArg("the .mpl model (or textual IR, .mplir)");
        var inputs = new Option<string?>("--inputs")
        {
            Description = "inputs keyed by argument name (.npz, .npy, .safetensors); random when absent",
        };
        var parameters = new Option<string?>("--params")
        {
            Description = "parameters keyed by dotted path; missing ones use their initialiser",
        };
        var output = new Option<string?>("--out") { Description = "write the result here under the key 'out'" };
        var seed = new Option<ulong>("--seed")
        {
            Description = "seed for initialisers and random inputs",
            DefaultValueFactory = _ => 0,
        };
        var steps = new Option<int>("--steps")
        {
            Description = "training steps on the same inputs (--out then holds 'loss' of shape [N])",
            DefaultValueFactory = _ => 1,
        };
        var saveParams = new Option<string?>("--save-params")
        {
            Description = "write the trained parameters and optimizer state here (.npz, .safetensors)",
        };
        var timeout = new Option<double>("--collective-timeout")
        {
            Description = "seconds a device may wait in a collective before the run is reported as stuck",
            DefaultValueFactory = _ => 60,
        };
        var trace = new Option<string?>("--trace")
        {
            Description =
                "write a Chrome/Perfetto trace (.json): one track per device with compute, sends, receives "
                + "and collectives",
        };
        var backend = new Option<string>("--backend")
        {
            Description =
                "how kernels run: cpu (compiled through LLVM, the default), cuda (PTX on the GPUs), "
                + "cuda-emu (the GPU kernels on emulated GPUs) or interp (the reference interpreter)",
            DefaultValueFactory = _ => "cpu",
        };
        var gpus = new Option<int?>("--gpus")
        {
            Description =
                "GPUs for cuda (default: all) or cuda-emu (default: 1); with one per device, collectives go "
                + "through NCCL",
        };
        var check = new Option<bool>("--check")
        {
            Description =
                "also run the program on one device with the same inputs and parameters and compare every "
                + "result (and, training, every updated parameter); exit 1 beyond the dtype's tolerance",
        };
        var c = new Command(
            "run",
            "compile a .mpl model and run it on every device of its mesh (simulated, one " + "thread each)"
        )
        {
            file,
        };
        c.Options.Add(trace);
        c.Options.Add(backend);
        c.Options.Add(gpus);
        c.Options.Add(check);
        c.Options.Add(inputs);
        c.Options.Add(timeout);
        c.Options.Add(steps);
        c.Options.Add(saveParams);
        AddPipelineOptions(c);
        c.Options.Add(parameters);
        c.Options.Add(output);
        c.Options.Add(seed);
        AddFrontEndOptions(c);
        _ir.AddTo(c);
        c.SetAction(r =>
            Guard(() =>
            {
                string kind = r.GetValue(backend)!;
                if (kind is not ("cpu" or "cuda" or "cuda-emu" or "interp"))
                    throw new UserErrorException(
                        $"--backend " + $"must be cpu, cuda, cuda-emu or interp, got '{kind}'"
                    );
                if (r.GetValue(gpus) is int g && (g < 1 || kind is not ("cuda" or "cuda-emu")))
                    throw new UserErrorException(
                        g < 1 ? $"--gpus must be at least 1, got {g}" : "--gpus applies to --backend cuda and cuda-emu"
                    );
                // The compiled back ends run kernels formed from the final program.
                var pipeline = PipelineOf(r);
                if (kind != "interp" && !pipeline.Contains(Pipelines.Backend))
                    pipeline.Add(Pipelines.Backend);
                CheckOutput("--out", r.GetValue(output));
                CheckOutput(
                    "--save-params",
                    r.GetValue(saveParams),
                    r.GetValue(saveParams) is { } sp && Runtime.Model.ShardedCheckpoint.IsFolder(sp)
                );
                CheckOutput("--trace", r.GetValue(trace));
                var module = FrontEnd(r, r.GetValue(file)!, quiet: false);
                // --check: the same module on a mesh of one device, a rewrite of its mesh rather than a second compile.
                Operation? single = null;
                if (r.GetValue(check))
                {
                    if (module.IsSpmd())
                        throw new UserErrorException(
                            "--check needs the global program: this IR is " + "already per-device (after spmdize)"
                        );
                    single = module.Clone();
                    single.ResizeMesh(single.DeviceMesh().AxisNames.ToDictionary(a => a, _ => 1));
                }
                RunPasses(module, pipeline, _ir.Build(r, stderr));
                if (single != null)
                    RunPasses(single, pipeline, new IRPrintingOptions(), quiet: true);
                var settings = new RunSettings
                {
                    Backend = kind,
                    Gpus = r.GetValue(gpus),
                    InputsPath = r.GetValue(inputs),
                    ParamsPath = r.GetValue(parameters),
                    OutPath = r.GetValue(output),
                    Seed = r.GetValue(seed),
                    Steps = r.GetValue(steps),
                    SaveParamsPath = r.GetValue(saveParams),
                    TracePath = r.GetValue(trace),
                    CollectiveTimeout = TimeSpan.FromSeconds(
                        r.GetValue(timeout) > 0
                            ? r.GetValue(timeout)
                            : throw new UserErrorException("--collective-timeout must be a positive number of seconds")
                    ),
                };
                if (module.IsSpmd())
                    stderr.WriteLine(
                        $"note: running on {module.PhysicalMesh().DeviceCount} simulated "
                            + $"device(s), mesh {module.PhysicalMesh()}"
                    );
                if (single != null)
                {
                    if (settings.SaveParamsPath != null || settings.OutPath != null || settings.TracePath != null)
                        throw new UserErrorException(
                            "--check compares two runs; run without it to write --out, " + "--save-params or --trace"
                        );
                    // Both runs start from the very same arrays.
                    var manifest = ManifestBuilder.Build(module);
                    (settings.InputArrays, settings.ParamArrays) = ModelSession.Load(manifest, settings, stderr);
                }
                // Under mpirun or srun each process compiles the model alike and runs its share of the devices.
                TextWriter shown = stdout,
                    log = stderr;
                var mpi = module.IsSpmd()
                    ? Runtime.Mpi.MpiProcess.Join(
                        module.PhysicalMesh(),
                        settings,
                        settings.Backend != "cpu" || single != null
                            ? "an MPI job runs the cpu back end: run --backend interp, cuda, cuda-emu and --check in "
                                + "one process"
                            : null,
                        ref shown,
                        ref log
                    )
                    : null;
                RunOutcome outcome;
                try
                {
                    outcome =
                        mpi == null
                            ? Progress(settings.Steps, onStep => ModelRunner.Run(module, settings, stderr, onStep))
                            : ModelRunner.Run(module, settings, log, machine: mpi);
                    outcome.Print(settings, ModelRunner.Summary, shown);
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
                if (single != null)
                    return Check(module, single, settings, outcome);
                return 0;
            })
        );
        return c;
    }

    private static string F(float v) => v.ToString("G7", CultureInfo.InvariantCulture);

    /// <summary>
    /// <c>--check</c>: runs the one-device build of the program on the arrays the mesh run started from and
    /// prints, per result, loss and updated parameter, the largest relative difference; exit 1 when one exceeds
    /// the tolerance of its dtype (<see cref="RunComparison.Tolerance"/>).
    /// </summary>
    private int Check(Operation module, Operation single, RunSettings settings, RunOutcome outcome)
    {
        var reference = ModelRunner.Run(single, settings, TextWriter.Null);
        var diffs = RunComparison.Compare(reference, outcome, outcome.Losses != null);
        int bad = 0;
        // A mixed-precision program computes in the half type whatever its parameters are stored in.
        var compute = ParallelCompiler.Passes.MixedPrecision.HalfType(module);
        foreach (var d in diffs)
        {
            var dtype = compute is { } h && d.DType == DType.F32 ? h : d.DType;
            double tol = RunComparison.Tolerance(dtype);
            bool ok = d.Error <= tol;
            if (!ok)
                bad++;
            string where =
                d.Index < 0
                    ? ""
                    : $" at [{d.Index}] (one device {d.Expected.ToString("G7", CultureInfo.InvariantCulture)}, mesh "
                        + $"{d.Got.ToString("G7", CultureInfo.InvariantCulture)})";
            stdout.WriteLine(
                $"check: {d.Name}: largest relative difference "
                    + $"{d.Error:G3}{where}{(ok ? "" : $" exceeds {tol:G} ({dtype.Name()})")}"
            );
        }
        string mesh = module.PhysicalMesh().ToString();
        if (bad > 0)
        {
            stderr.WriteLine(
                $"error: --check: {bad} of {diffs.Count} array(s) differ between mesh {mesh} and one "
                    + $"device beyond their tolerance"
            );
            return 1;
        }
        var worst = RunComparison.Worst(diffs);
        stdout.WriteLine(
            $"check: mesh {mesh} equals one device: {diffs.Count} array(s), largest relative difference "
                + $"{worst?.Error ?? 0:G3}"
        );
        return 0;
    }

    /// <summary>Runs <paramref name="body"/> with a live line (step, loss, time per step) on an interactive terminal, a
    /// line per step otherwise.</summary>
    private RunOutcome Progress(int steps, Func<Action<int, NDArray, TimeSpan>, RunOutcome> body)
    {
        string Line(int step, NDArray loss, TimeSpan t) =>
            $"step {step + 1}/{steps}  loss {(loss.Size == 1 ? F((float)loss.GetDouble(0)) : loss.TypeString)}  "
            + $"{t.TotalMilliseconds:F1} ms/step";
        if (steps == 1)
            return body((_, _, _) => { });
        if (ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected)
        {
            RunOutcome? outcome = null;
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console
                .Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: steps);
                    outcome = body(
                        (step, loss, t) =>
                        {
                            task.Description = Markup.Escape(Line(step, loss, t));
                            task.Increment(1);
                        }
                    );
                });
            return outcome!;
        }
        return body((step, loss, t) => stderr.WriteLine(Line(step, loss, t)));
    }
}
