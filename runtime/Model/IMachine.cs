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
