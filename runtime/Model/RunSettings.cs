using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.IO;

namespace ParallelCompiler.Runtime.Model;

/// <summary>A problem with what the user gave a run (a file, a key, a shape, an option): reported without a stack
/// trace.</summary>
public sealed class RunInputException(string message) : Exception(message);

/// <summary>What a run reads and writes.</summary>
public sealed class RunSettings
{
    /// <summary>Inputs keyed by argument name (.npz, .npy or .safetensors), or null for random inputs.</summary>
    public string? InputsPath { get; set; }

    /// <summary>Parameters keyed by dotted path, or null to initialise all of them.</summary>
    public string? ParamsPath { get; set; }

    /// <summary>The inputs themselves, in argument order (instead of <see cref="InputsPath"/>), or null.</summary>
    public IReadOnlyList<NDArray>? InputArrays { get; set; }

    /// <summary>Every parameter itself, keyed by dotted path (instead of <see cref="ParamsPath"/>), or null.</summary>
    public IReadOnlyDictionary<string, NDArray>? ParamArrays { get; set; }

    /// <summary>Where the result goes, under the key "out".</summary>
    public string? OutPath { get; set; }

    /// <summary>Seed for initialisers and random inputs.</summary>
    public ulong Seed { get; set; }

    /// <summary>Training steps to run on the same inputs (1 for a forward run).</summary>
    public int Steps { get; set; } = 1;

    /// <summary>Times to run a forward model on the same inputs (for timing; the results are the last run's).</summary>
    public int Repeat { get; set; } = 1;

    /// <summary>Where to write the parameters and optimizer state after the last step (an array file, or a folder
    /// for a <see cref="ShardedCheckpoint"/>), or null.</summary>
    public string? SaveParamsPath { get; set; }

    /// <summary>The processes that write a sharded checkpoint together (an MPI job's), or null for this one
    /// alone.</summary>
    public CheckpointWriters? CheckpointWriters { get; set; }

    /// <summary>How kernels run: "cpu" (compiled host kernels), "interp" (the reference interpreter), "cuda" (GPUs) or
    /// "cuda-emu" (emulated GPUs).</summary>
    public string Backend { get; set; } = "cpu";

    /// <summary>How many GPUs the GPU back ends use (null: every GPU there is for cuda, one for cuda-emu).</summary>
    public int? Gpus { get; set; }

    /// <summary>Where to write a Chrome/Perfetto trace of every device's work, or null.</summary>
    public string? TracePath { get; set; }

    /// <summary>Record every device's work (as for a trace) and return it, for a per-kernel profile.</summary>
    public bool Profile { get; set; }

    /// <summary>The devices (ranks of the physical mesh) this process runs, an MPI job's share, or null for all:
    /// then input and parameter files are read only in the blocks these devices take.</summary>
    public IReadOnlyList<int>? LocalDevices { get; set; }

    /// <summary>How long a device waits in a collective before the run is reported as stuck.</summary>
    public TimeSpan CollectiveTimeout { get; set; } = TimeSpan.FromSeconds(60);
}

/// <summary>What a run gives: the last step's results, the loss of every step (training only) and the final
/// parameters.</summary>
public sealed record RunOutcome(
    IReadOnlyList<NDArray> Results,
    float[]? Losses,
    IReadOnlyDictionary<string, NDArray> Parameters
)
{
    /// <summary>What every device did, when the run was traced or profiled.</summary>
    public Trace? Trace { get; init; }

    /// <summary>The bytes of array data this process read from the input and parameter files (with <see
    /// cref="RunSettings.LocalDevices"/>, only its devices' blocks), and how many the files hold of the arrays the
    /// run took from them.</summary>
    public (long Read, long Held) ArrayBytes { get; init; }

    /// <summary>The bytes of host memory this process allocated for the inputs and parameters it holds: in an MPI job
    /// (<see cref="IBlockMachine"/>) only its devices' blocks, else the global arrays.</summary>
    public long HeldBytes { get; init; }

    /// <summary>
    /// What <c>mplc run</c> and <c>mplrun</c> print after a run: the loss (first and last step) of a training run,
    /// else every result as <paramref name="summary"/> shows it; then each file the run wrote.
    /// </summary>
    public void Print(RunSettings settings, Func<NDArray, string> summary, TextWriter stdout)
    {
        static string F(float v) => v.ToString("G7", System.Globalization.CultureInfo.InvariantCulture);
        if (Losses is { } losses)
            stdout.WriteLine(
                losses.Length == 1
                    ? $"loss: {F(losses[0])}"
                    : $"loss: {F(losses[0])} at step 1, {F(losses[^1])} at step {losses.Length}"
            );
        else
            for (int i = 0; i < Results.Count; i++)
                stdout.WriteLine($"{(Results.Count == 1 ? "out" : $"out{i}")}: {summary(Results[i])}");
        foreach (var w in new[] { settings.SaveParamsPath, settings.OutPath, settings.TracePath })
            if (w != null)
                stdout.WriteLine($"wrote {w}");
    }
}
