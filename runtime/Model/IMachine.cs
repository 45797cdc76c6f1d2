using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Runtime.Model;

/// <summary>The devices a run's steps execute on (simulated CPU devices unless a back end supplies others, e.g.
/// GPUs).</summary>
public interface IMachine
{
    /// <summary>
    /// Runs one step of <paramref name="program"/> on global <paramref name="args"/> and <paramref name="parameters"/>,
    /// as <see cref="ProgramRunner"/> does on this machine's devices.
    /// </summary>
    IReadOnlyList<NDArray> Run(
        ProgramManifest manifest,
        DeviceProgram program,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        IDictionary<string, NDArray>? updates,
        Trace? trace
    );
}

/// <summary>
/// A machine of several processes, each holding only its devices' blocks of the inputs and parameters (an MPI job's
/// process): the steps run on <see cref="HeldBlocks"/>, and the results come back to the first process only.
/// </summary>
public interface IBlockMachine : IMachine
{
    /// <summary>Whether this is the process that gets the results (rank 0).</summary>
    bool Root { get; }

    /// <summary>
    /// Runs one step on the blocks <paramref name="held"/> holds, which the step's parameter updates replace; returns
    /// the global results on the root, null on the other processes.
    /// </summary>
    IReadOnlyList<NDArray>? RunHeld(
        ProgramManifest manifest,
        DeviceProgram program,
        HeldBlocks held,
        TimeSpan timeout,
        Trace? trace
    );

    /// <summary>Every process's <paramref name="data"/> by rank on the root, null on the others.</summary>
    byte[][]? Gather(byte[] data);
}
