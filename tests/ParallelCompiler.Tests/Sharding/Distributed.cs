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

    /// <summary>A distributed training run's losses (key <c>loss</c> of <paramref name="losses"/>) equal one device's
    /// within 1e-5, fall, and every saved parameter (<paramref name="parameters"/>) equals one device's within 1e-4.
    /// </summary>
    public static void AssertTrainsLikeOneDevice((string Mesh, string One) losses, (string Mesh, string One) parameters)
    {
        var (mesh, one) = (
            ParallelCompiler.Runtime.IO.ArrayFile.Read(losses.Mesh)["loss"].Array,
            ParallelCompiler.Runtime.IO.ArrayFile.Read(losses.One)["loss"].Array
        );
        Assert.True(
            MaxRelativeError(one, mesh) <= 1e-5,
            $"losses differ: {string.Join(", ", one.F!)} vs {string.Join(", ", mesh.F!)}"
        );
        Assert.True(one.F![^1] < one.F[0], "the loss should fall");
        var a = ParallelCompiler.Runtime.IO.ArrayFile.Read(parameters.Mesh);
        var b = ParallelCompiler.Runtime.IO.ArrayFile.Read(parameters.One);
        Assert.Equal(b.Keys.Order(), a.Keys.Order());
        foreach (var (key, value) in b)
            Assert.True(MaxRelativeError(value.Array, a[key].Array) <= 1e-4, $"{key} differs");
    }
}
