using ParallelCompiler.Driver;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using Xunit;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>Runs a global module on one device and, after the sharding passes, on every device of its mesh.</summary>
public static class Distributed
{
    /// <summary>Single-device results of the global program, then the same inputs through propagation, reshards,
    /// spmdize and the simulated devices.</summary>
    public static (IReadOnlyList<NDArray> Single, IReadOnlyList<NDArray> Spmd) Run(
        Operation module,
        IReadOnlyList<NDArray> args,
        IReadOnlyDictionary<string, NDArray> parameters
    )
    {
        var func = module.EntryFunction()!;
        var single = Interpreter.Run(func, args, op => parameters[op.StringAttr("path")]);
        new ShardingPropagation().Run(module);
        Verifier.Verify(module);
        new InsertReshards().Run(module);
        Verifier.Verify(module);
        new Spmdize().Run(module);
        Verifier.Verify(module);
        var spmd = SpmdRunner.Run(module, func, args, parameters, TimeSpan.FromSeconds(30));
        return (single, spmd);
    }

    /// <summary>The largest difference relative to max(|expected|, 1), with NaN equal to NaN and infinities to
    /// themselves.</summary>
    public static double MaxRelativeError(NDArray expected, NDArray actual)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        return ArrayOps.WorstRelativeDifference(expected, actual).Error;
    }
}
