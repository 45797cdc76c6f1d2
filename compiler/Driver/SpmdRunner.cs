using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Driver;

/// <summary>Runs a per-device module on simulated devices (through the runtime's <see
/// cref="Runtime.Model.ProgramRunner"/>).</summary>
public static class SpmdRunner
{
    /// <summary>
    /// Runs <paramref name="func"/> of a spmdized module on every device of its mesh with global
    /// <paramref name="args"/> and <paramref name="parameters"/> (by path); returns the global results and puts the
    /// new global value of every parameter the program updates into <paramref name="updates"/>.
    /// </summary>
    public static IReadOnlyList<NDArray> Run(
        Operation module,
        Operation func,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters,
        TimeSpan timeout,
        IDictionary<string, NDArray>? updates = null,
        Trace? trace = null,
        Func<Operation, IKernel>? kernels = null
    ) =>
        Runtime.Model.ProgramRunner.Run(
            ManifestBuilder.Build(module),
            DeviceProgramBuilder.Build(func, kernels),
            args,
            parameters,
            timeout,
            updates,
            trace
        );
}
