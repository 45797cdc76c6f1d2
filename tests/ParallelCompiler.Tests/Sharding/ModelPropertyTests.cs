using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Tests.IR;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>
/// The central property end to end, as a user meets it: a generated model (<see cref="ModelGen"/>: every op,
/// integer ids and labels, a tied table, sharding constraints, a scalar loss, forward or a training step) with
/// generated shardings of every dimension of its arguments and parameters goes through the default pipeline
/// twice, on its mesh and on a mesh of one device, and each build runs as <c>mplc run</c> runs it, drawing its
/// own random inputs and parameters from its manifest. The loss and (training) every updated parameter must
/// agree within 1e-4. So a layout that changes the program's inputs counts as much as a wrong collective.
/// </summary>
public class ModelPropertyTests
{
    private static readonly PassRegistry Registry = (PassRegistry)
        CompilerServices.Create().GetService(typeof(PassRegistry))!;

    /// <summary>Programs of 6 to 30 steps (FsCheck's own arrays are mostly a few bytes long when a property takes
    /// several), shrinking as arrays do.</summary>
    public static class LongPrograms
    {
        /// <summary>The byte arrays of this property.</summary>
        public static Arbitrary<byte[]> Bytes() =>
            Arb.From(
                Gen.Choose(6, 30).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i), n)),
                ArbMap.Default.ArbFor<byte[]>().Shrinker
            );
    }

    [Property(MaxTest = 400, Arbitrary = [typeof(LongPrograms)])]
    public Property MeshEqualsOneDevice(byte[] steps, byte meshCode, byte[] layoutCodes, bool train)
    {
        var mesh = DistributedPropertyTests.Meshes[
            ModelGen.Mix(meshCode, steps.Length) % DistributedPropertyTests.Meshes.Length
        ];
        int c = 0;
        byte Next() => ModelGen.Mix(layoutCodes.Length == 0 ? (byte)0 : layoutCodes[c % layoutCodes.Length], c++);
        layoutCodes = layoutCodes.Select(ModelGen.Mix).ToArray();
        var module = ModelGen.Build(steps, 12, 8, 24, train, shape => Layouts.Pick(shape, mesh, Next));
        string layouts = Layouts.Apply(module, mesh, layoutCodes);
        string source = Printer.Print(module);
        var single = module.Clone();
        single.ResizeMesh(mesh.ToDictionary(m => m.Item1, _ => 1));
        Compile(single);
        try
        {
            Compile(module);
        }
        catch (PassInputException e)
        {
            // A layout the mesh cannot hold (a split that a reshape cannot carry) must be a clear input error.
            return true.Label($"input error: {e.Message}").Classify(true, "rejected with an input error");
        }
        var settings = new RunSettings
        {
            Backend = "interp",
            Seed = (ulong)steps.Length,
            CollectiveTimeout = TimeSpan.FromSeconds(30),
        };
        var want = ModelRunner.Run(single, settings, TextWriter.Null);
        var got = ModelRunner.Run(module, settings, TextWriter.Null);
        var worst = RunComparison.Worst(RunComparison.Compare(want, got, train));
        string m = string.Join(",", mesh.Select(x => $"{x.Item1}={x.Item2}"));
        return (worst == null || worst.Error <= 1e-4)
            .Label(
                $"{worst?.Name} differs by {worst?.Error:G3} at [{worst?.Index}] (one device {worst?.Expected}, "
                    + $"mesh {worst?.Got}) on mesh {m} with {layouts}\n{source}"
            )
            .Classify(train, "training")
            .Classify(source.Contains("dist.reshard"), "with a constraint")
            .Classify(source.Contains("tensor.embedding"), "with token ids")
            .Classify(source.Contains("tensor.cross_entropy"), "cross_entropy");
    }

    private static void Compile(Operation module) =>
        Compilation.RunPipeline(module, Pipelines.DefaultString, new IRPrintingOptions(), Registry);
}
