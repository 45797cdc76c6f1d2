using ParallelCompiler.Mplrun;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>Bundles: written by mplc compile -o NAME.mplc, run by mplrun with the runtime alone, refused when
/// damaged.</summary>
public sealed class BundleTests() : TempDirTest("mplc-bundle")
{
    private static (int Code, string Out, string Err) Mplrun(params string[] args) => MplrunInProcess.Run(args);

    /// <summary>Writes a manifest as if the compiler had (its checksum made to match), so that the check behind the
    /// checksum is what a test reaches.</summary>
    private static void Rewrite(string manifest, string text)
    {
        File.WriteAllText(manifest, text);
        File.WriteAllText(
            Path.Combine(Path.GetDirectoryName(manifest)!, ParallelCompiler.Runtime.Model.Bundle.ChecksumFile),
            ParallelCompiler.Runtime.Model.Bundle.Sha256(text)
        );
    }

    private string Bundle(string example, params string[] extra)
    {
        string path = P(Path.ChangeExtension(example, ".mplc"));
        var r = Mplc.Run(["compile", Repo.Path("examples", example), "-o", path, .. extra]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains($"wrote {path}", r.Stdout);
        return path;
    }

    [Fact]
    public void ABundleHoldsTheProgramTheKernelsAndChecksums()
    {
        string b = Bundle("gpt.mpl", "-D", "L=2");
        foreach (
            var f in new[]
            {
                "manifest.json",
                "manifest.sha256",
                "program.json",
                "program.mplir",
                "kernels.ll",
                "kernels.ptx",
                "libkernels.so",
                "libkernels-grid.so",
            }
        )
            Assert.True(File.Exists(Path.Combine(b, f)), f);
        var m = ProgramManifest.FromJson(File.ReadAllText(Path.Combine(b, "manifest.json")));
        Assert.Equal("gpt", m.Name);
        Assert.Equal("mb", m.MicrobatchAxis);
        Assert.Equal("pp=2,dp=2,tp=2", m.PhysicalMesh.ToString());
        Assert.True(m.Training);
        Assert.Equal(["tokens", "labels"], m.Inputs.Select(i => i.Name));
        Assert.Equal(128, m.Inputs[0].IntBound);
        Assert.Contains(m.Params, p => p.Path == "gpt.block.1.mlp.w1" && p.Layout[1].SequenceEqual(["tp"]));
        Assert.Equal(6, m.Files.Count);
        // The pipeline schedule, as the program runs it.
        Assert.Equal(
            ("pp", "1f1b", 4, 1),
            (m.Schedule!.Axis, m.Schedule.Kind, m.Schedule.Microbatches, m.Schedule.Chunks)
        );
        Assert.Equal(["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"], m.Schedule.Order[0]);
        var program = ParallelCompiler
            .Runtime.Model.Bundle.Open(b)
            .Program(n => new ParallelCompiler.Runtime.Distributed.KernelRef(n));
        Assert.Equal(m.Schedule.Order, program.Schedule!.Select(d => d.Select(t => t.Label(1)).ToArray()).ToArray());
        Assert.Contains("\"devices\": 8", File.ReadAllText(Path.Combine(b, "manifest.json")));
        // The collective kernels ride along in the PTX for GPU collectives between devices sharing a GPU.
        Assert.All(
            ParallelCompiler.Runtime.Gpu.CollectiveKernels.All,
            k => Assert.Contains($".entry {k}(", File.ReadAllText(Path.Combine(b, "kernels.ptx")))
        );
        Assert.All(
            m.Kernels,
            k => Assert.Contains($".entry {k.Name}(", File.ReadAllText(Path.Combine(b, "kernels.ptx")))
        );
        // The memory plan: buffers alive at once never share bytes; the arena holds at least the peak.
        var plan = m.Memory!;
        Assert.True(plan.ArenaBytes >= plan.PeakLiveBytes && plan.PeakLiveBytes > 0);
        Assert.True(plan.ArenaBytes <= plan.Buffers.Sum(x => (x.Bytes + 63) / 64 * 64));
        var buffers = plan.Buffers.ToList();
        for (int i = 0; i < buffers.Count; i++)
        for (int j = i + 1; j < buffers.Count; j++)
        {
            var (x, y) = (buffers[i], buffers[j]);
            bool together = x.From <= y.To && y.From <= x.To;
            bool overlap = x.Offset < y.Offset + y.Bytes && y.Offset < x.Offset + x.Bytes;
            Assert.False(
                together && overlap && x.Bytes > 0 && y.Bytes > 0,
                $"slots {x.Slot} and {y.Slot} overlap while both alive"
            );
        }
    }

    /// <summary>
    /// The CPU a bundle's host kernels are for: x86-64-v3 unless asked otherwise (the manifest lists what it
    /// needs of the CPU), this machine's own with --cpu native; mplrun refuses a bundle whose CPU kernels need what
    /// this CPU lacks, saying what, before loading them; an unknown --cpu is an error.
    /// </summary>
    [Fact]
    public void TheHostCpuIsRecordedAndChecked()
    {
        string portable = Bundle("mlp.mpl");
        var m = ProgramManifest.FromJson(File.ReadAllText(Path.Combine(portable, "manifest.json")));
        Assert.Equal("x86-64-v3", m.HostCpu!.Name);
        Assert.Equal(HostCpu.Levels["x86-64-v3"], m.HostCpu.Features);
        Assert.Contains("avx2", m.HostCpu.Features);
        Assert.Empty(m.HostCpu.MissingHere());
        Assert.Equal(0, Mplrun(portable).Code);

        string native = P("native.mplc");
        Assert.Equal(
            0,
            Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "-o", native, "--cpu", "native").ExitCode
        );
        var n = ProgramManifest.FromJson(File.ReadAllText(Path.Combine(native, "manifest.json")));
        Assert.Empty(n.HostCpu!.MissingHere());
        Assert.Equal(0, Mplrun(native).Code);

        // The same bundle as if built where the CPU has an extension this one lacks.
        string manifest = Path.Combine(native, "manifest.json");
        string text = File.ReadAllText(manifest);
        Rewrite(
            manifest,
            text.Replace("\"features\": [", "\"features\": [\"mpl_future_simd\", ", StringComparison.Ordinal)
        );
        Assert.Contains("mpl_future_simd", ProgramManifest.FromJson(File.ReadAllText(manifest)).HostCpu!.Features);
        foreach (var backend in new[] { "cpu", "cuda-emu" })
        {
            var r = Mplrun(native, "--backend", backend);
            Assert.Equal(1, r.Code);
            Assert.Contains(
                $"error: the bundle's host kernels "
                    + $"({(backend == "cpu" ? "libkernels.so" : "libkernels-grid.so")}) were compiled for the CPU "
                    + $"{n.HostCpu.Name}, and this machine's lacks mpl_future_simd: "
                    + "compile the bundle again with --cpu "
                    + $"x86-64-v3",
                r.Err
            );
        }

        var bad = Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "-o", P("bad.mplc"), "--cpu", "pentium");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains(
            "error: --cpu expects native or one of x86-64, x86-64-v2, x86-64-v3, x86-64-v4, got 'pentium'",
            bad.Stderr
        );
    }

    /// <summary>LLVM's feature names become /proc/cpuinfo's; disabled and unknown ones are left out.</summary>
    [Fact]
    public void LlvmFeaturesMapToCpuinfoFlags()
    {
        var cpu = HostCpu.FromLlvm("znver4", "+avx2,+sse4.1,-avx512fp16,+lzcnt,+bmi,+avx512vnni,+cx8,+fma");
        Assert.Equal(["abm", "avx2", "avx512_vnni", "bmi1", "fma", "sse4_1"], cpu.Features);
    }

    /// <summary>mplrun gives what mplc run gives: the transformer's training losses and the MLP's output.</summary>
    [Fact]
    public void MplrunEqualsMplcRun()
    {
        string gpt = Bundle("gpt.mpl", "-D", "L=2");
        var r = Mplrun(gpt, "--steps", "3", "--seed", "2", "--out", P("a.npz"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("running gpt on 8 device(s), mesh pp=2,dp=2,tp=2, backend cpu", r.Err);
        var m = Mplc.Run(
            "run",
            Repo.Path("examples", "gpt.mpl"),
            "-D",
            "L=2",
            "--steps",
            "3",
            "--seed",
            "2",
            "--out",
            P("b.npz")
        );
        Assert.True(m.ExitCode == 0, m.Stderr);
        Assert.Equal(ArrayFile.Read(P("b.npz"))["loss"].Array.F!, ArrayFile.Read(P("a.npz"))["loss"].Array.F!);

        string mlp = Bundle("mlp.mpl");
        File.Copy(Repo.Path("examples", "mlp.mpl"), P("mlp-src.mpl"));
        var interp = Mplc.Run(
            "run",
            Repo.Path("examples", "mlp.mpl"),
            "--backend",
            "interp",
            "--seed",
            "7",
            "--out",
            P("i.npz")
        );
        Assert.True(interp.ExitCode == 0, interp.Stderr);
        r = Mplrun(mlp, "--seed", "7", "--out", P("c.npz"));
        Assert.True(r.Code == 0, r.Err);
        Assert.True(
            Distributed.MaxRelativeError(
                ArrayFile.Read(P("i.npz"))["out"].Array,
                ArrayFile.Read(P("c.npz"))["out"].Array
            ) <= 1e-5
        );
    }

    /// <summary>mplrun is the runtime alone: neither the compiler (and its LLVM binding) nor ANTLR is
    /// referenced.</summary>
    [Fact]
    public void MplrunReferencesOnlyTheRuntime()
    {
        var refs = typeof(MplrunCli).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.Contains("ParallelCompiler.Runtime", refs);
        Assert.DoesNotContain(
            refs,
            r => r == "ParallelCompiler.Compiler" || r.Contains("Antlr", StringComparison.OrdinalIgnoreCase)
        );
        var runtimeRefs = typeof(ProgramManifest).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.DoesNotContain(
            runtimeRefs,
            r => r == "ParallelCompiler.Compiler" || r.Contains("Antlr", StringComparison.OrdinalIgnoreCase)
        );
    }

    [Fact]
    public void DamagedOrMismatchedBundlesAreClearErrors()
    {
        string b = Bundle("mlp.mpl");
        var r = Mplrun(P("nothing.mplc"));
        Assert.Equal(1, r.Code);
        Assert.Contains("is not a bundle: no such directory", r.Err);

        Directory.CreateDirectory(P("empty.mplc"));
        Assert.Contains("is not a bundle: it has no manifest.json", Mplrun(P("empty.mplc")).Err);

        File.AppendAllText(Path.Combine(b, "program.json"), " ");
        r = Mplrun(b);
        Assert.Equal(1, r.Code);
        Assert.Contains(
            "program.json is damaged or from another build (its checksum differs from the manifest's)",
            r.Err
        );

        b = Bundle("mlp.mpl");
        File.Delete(Path.Combine(b, "libkernels.so"));
        Assert.Contains("libkernels.so is missing", Mplrun(b).Err);

        b = Bundle("mlp.mpl");
        Rewrite(
            Path.Combine(b, "manifest.json"),
            File.ReadAllText(Path.Combine(b, "manifest.json")).Replace("\"format\": 1", "\"format\": 9")
        );
        Assert.Contains("manifest format 9, this runtime reads format 1", Mplrun(b).Err);

        Rewrite(Path.Combine(b, "manifest.json"), "{ not json");
        r = Mplrun(b);
        Assert.Equal(1, r.Code);
        Assert.Contains("manifest.json: the manifest is damaged", r.Err);

        b = Bundle("mlp.mpl");
        Assert.Contains("--backend interp needs the compiler", Mplrun(b, "--backend", "interp").Err);
        Assert.Contains("unknown option '--nope'", Mplrun(b, "--nope").Err);
        Assert.Contains("--steps needs a training model", Mplrun(b, "--steps", "2").Err);
        File.WriteAllText(P("file.mplc"), "x");
        var c = Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "-o", P("file.mplc"));
        Assert.Equal(1, c.ExitCode);
        Assert.Contains("is a file; give the name of a folder", c.Stderr);
    }
}
