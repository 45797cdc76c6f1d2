using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ParallelCompiler.IR;
using ParallelCompiler.Tests.IR;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>
/// The central property: for generated programs, meshes of 1 to 8 devices over 1 to 3 axes and legal user
/// shardings of the arguments and parameters, running the per-device program on every device gives the
/// single-device interpreter's result within 1e-4. FsCheck shrinks a failure to a short program and layout.
/// </summary>
public class DistributedPropertyTests
{
    /// <summary>Meshes as (axis, size) lists: 1 to 8 devices, 1 to 3 axes.</summary>
    internal static readonly (string, int)[][] Meshes =
    [
        [("x", 1)],
        [("x", 2)],
        [("x", 4)],
        [("x", 8)],
        [("x", 2), ("y", 2)],
        [("x", 2), ("y", 4)],
        [("x", 4), ("y", 2)],
        [("x", 2), ("y", 2), ("z", 2)],
        [("x", 1), ("y", 2), ("z", 2)],
        [("x", 2), ("y", 1)],
        [("x", 3)],
        [("x", 3), ("y", 2)],
    ];

    [Property(MaxTest = 300, EndSize = 32)]
    public Property DistributedEqualsSingleDevice(byte[] steps, byte meshCode, byte[] layoutCodes)
    {
        var mesh = Meshes[meshCode % Meshes.Length];
        // Dimensions 12, 8 and 24: most meshes divide them, the size-3 axes only some; the layout generator picks legal
        // splits only.
        var module = ProgramGen.Build(steps, 12, 8, 24);
        var layouts = Layouts.Apply(module, mesh, layoutCodes);
        var (args, parameters) = Layouts.Inputs(module, seed: (ulong)steps.Length * 31 + meshCode);
        string before = Printer.Print(module);
        var (single, spmd) = Distributed.Run(module, args, parameters);
        double err = Distributed.MaxRelativeError(single[0], spmd[0]);
        return (err <= 1e-4).Label(
            $"max relative error {err:G3} on mesh "
                + string.Join(",", mesh.Select(m => $"{m.Item1}={m.Item2}"))
                + $" with {layouts}\n{before}\n--- per device "
                + $"---\n{Printer.Print(module)}"
        );
    }
}
