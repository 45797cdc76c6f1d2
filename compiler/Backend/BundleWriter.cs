using System.Security.Cryptography;
using ParallelCompiler.Backend.Llvm;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Backend;

/// <summary>
/// Writes a compiled program as a bundle directory that <c>mplrun</c> runs without the compiler: the manifest
/// (mesh, inputs, results, parameters with layouts and initialisers, kernels with their GPU launch shapes, the
/// memory plan of a device's buffers, the SHA-256 of every file), the per-device program (<c>program.json</c> for the
/// runtime, <c>program.mplir</c> for
/// people), the kernels as LLVM IR and PTX (with the collective kernels), the host kernels as a shared library, and
/// the GPU kernels built for the host grid (<c>libkernels-grid.so</c>, what <c>--backend cuda-emu</c> runs).
/// </summary>
public static class BundleWriter
{
    /// <summary>The files of a bundle besides the manifest.</summary>
    public static readonly string[] FileNames =
    [
        "program.json",
        "program.mplir",
        "kernels.ll",
        "kernels.ptx",
        "libkernels.so",
        "libkernels-grid.so",
    ];

    /// <summary>
    /// Writes the bundle of <paramref name="module"/> (after form-kernels) to <paramref name="dir"/>, its PTX for
    /// <paramref name="gpu"/> and its host kernels for <paramref name="cpu"/> (an x86-64 level, or <c>native</c>: this
    /// machine's CPU), which the manifest records; returns the directory.
    /// </summary>
    public static string Write(Operation module, string dir, string? gpu, string cpu = HostCpu.DefaultLevel)
    {
        var hostCpu = LlvmTarget.HostRequirements(cpu);
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        if (!module.IsSpmd())
            throw new UserErrorException("a bundle holds a per-device program: the pipeline must " + "run spmdize");
        if (File.Exists(dir))
            throw new UserErrorException($"cannot write the bundle '{dir}': a file of that name " + $"exists");
        if (
            Directory.Exists(dir)
            && Directory.EnumerateFileSystemEntries(dir).Any()
            && !File.Exists(Path.Combine(dir, "manifest.json"))
        )
            throw new UserErrorException($"cannot write the bundle '{dir}': the directory exists and is not a bundle");
        Directory.CreateDirectory(dir);
        var program = DeviceProgramBuilder.Build(func, op => new KernelRef(op.StringAttr("callee")));
        File.WriteAllText(Path.Combine(dir, "program.json"), ProgramFile.Write(program));
        File.WriteAllText(Path.Combine(dir, "program.mplir"), Printer.Print(module));
        var specs = KernelCompiler.Specs(module);
        // One optimised host module gives both the library and its LLVM IR.
        KernelCompiler.BuildHostLibrary(
            specs,
            Path.Combine(dir, "libkernels.so"),
            optimizedIr: ir => File.WriteAllText(Path.Combine(dir, "kernels.ll"), ir),
            cpu: cpu
        );
        File.WriteAllText(Path.Combine(dir, "kernels.ptx"), KernelCompiler.Ptx(specs, gpu, collectives: true));
        KernelCompiler.BuildHostLibrary(
            specs,
            Path.Combine(dir, "libkernels-grid.so"),
            KernelTarget.HostGrid,
            cpu: cpu
        );
        var kernels = specs.Select(Launch).ToArray();
        var files = FileNames.ToDictionary(f => f, f => Sha256(Path.Combine(dir, f)));
        string manifest = ManifestBuilder.Build(module, kernels, files, MemoryPlan.For(program), hostCpu).ToJson();
        File.WriteAllText(Path.Combine(dir, "manifest.json"), manifest);
        File.WriteAllText(Path.Combine(dir, Bundle.ChecksumFile), Bundle.Sha256(manifest) + "\n");
        return dir;
    }

    /// <summary>The GPU launch shape of a kernel: 16x16 threads per output tile of a matmul, else <see
    /// cref="KernelCodegen.GpuThreads"/> threads a block, each over <see cref="KernelCodegen.ElementsPerThread"/> of
    /// its parallel elements.</summary>
    public static KernelInfo Launch(KernelSpec spec)
    {
        if (spec.Matmul is { } mm)
        {
            long batch = mm.Batch.Aggregate(1L, (a, b) => a * b);
            long side = KernelCodegen.GpuTile * KernelCodegen.GpuThreadTile(mm);
            return new KernelInfo(
                spec.Name,
                [(int)((mm.N + side - 1) / side), (int)((mm.M + side - 1) / side), (int)batch],
                [KernelCodegen.GpuTile, KernelCodegen.GpuTile, 1],
                Barriers: true
            );
        }
        long total = spec.Output.Shape.Take(KernelCodegen.ParallelDims(spec)).Aggregate(1L, (a, b) => a * b);
        long perBlock = KernelCodegen.GpuThreads * KernelCodegen.ElementsPerThread(spec);
        return new KernelInfo(
            spec.Name,
            [(int)Math.Clamp((total + perBlock - 1) / perBlock, 1, 65535), 1, 1],
            [KernelCodegen.GpuThreads, 1, 1]
        );
    }

    /// <summary>The SHA-256 of a file, lower-case hex.</summary>
    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }
}
