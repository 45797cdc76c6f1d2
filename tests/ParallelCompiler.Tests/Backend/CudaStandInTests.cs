using System.Diagnostics;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The stand-in CUDA driver and NCCL (tests/standin/, built here with cc into one library) and the bundles the
/// tests run on it: the examples, compiled once.
/// </summary>
public sealed class CudaStandIn : IDisposable
{
    /// <summary>The name of the test collection that shares it.</summary>
    public const string Collection = "cuda stand-in";

    /// <summary>A folder of this fixture's files.</summary>
    public string Dir { get; } = Directory.CreateTempSubdirectory("mplc-standin").FullName;

    /// <summary>The library: libcuda's and libnccl's entry points.</summary>
    public string Library { get; }

    /// <summary>The examples' bundles, by file name.</summary>
    public Dictionary<string, string> Bundles { get; } = [];

    /// <summary>Builds the library and the bundles.</summary>
    public CudaStandIn()
    {
        Library = BuildLibrary(Path.Combine(Dir, "libstandin.so"));
        foreach (
            var (name, example, options) in new[]
            {
                ("mlp.mpl", "mlp.mpl", Array.Empty<string>()),
                ("attention.mpl", "attention.mpl", []),
                ("classifier.mpl", "classifier.mpl", []),
                ("gpt.mpl", "gpt.mpl", ["-D", "L=2"]),
                // CudaStreamTests: started collectives against blocking ones (--sync-collectives).
                ("gpt.mpl sync", "gpt.mpl", ["-D", "L=2", "--sync-collectives"]),
                ("gpt_sp.mpl", "gpt_sp.mpl", ["-D", "L=2", "--bucket-mb", "0"]),
                ("gpt_sp.mpl sync", "gpt_sp.mpl", ["-D", "L=2", "--sync-collectives"]),
                ("gpt_sp.mpl zero", "gpt_sp.mpl", ["-D", "L=2", "--zero", "1", "--bucket-mb", "0"]),
                ("gpt_sp.mpl zero sync", "gpt_sp.mpl", ["-D", "L=2", "--zero", "1", "--sync-collectives"]),
                ("gpt_sp.mpl zero3", "gpt_sp.mpl", ["-D", "L=2", "--zero", "3", "--bucket-mb", "0"]),
                ("gpt_sp.mpl zero3 sync", "gpt_sp.mpl", ["-D", "L=2", "--zero", "3", "--sync-collectives"]),
            }
        )
        {
            string bundle = Path.Combine(Dir, name.Replace(".mpl", "").Replace(' ', '-') + ".mplc");
            var r = Mplc.Run(["compile", Repo.Path("examples", example), "-o", bundle, "--gpu", "sm_80", .. options]);
            if (r.ExitCode != 0)
                throw new InvalidOperationException(r.Stderr);
            Bundles[name] = bundle;
        }
    }

    /// <summary>Builds the stand-in library (tests/standin/*.c) at <paramref name="path"/>.</summary>
    public static string BuildLibrary(string path)
    {
        var psi = new ProcessStartInfo("cc") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (
            var a in new[]
            {
                "-shared",
                "-fPIC",
                "-O1",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-o",
                path,
                Repo.Path("tests", "standin", "cuda_standin.c"),
                Repo.Path("tests", "standin", "nccl_standin.c"),
                Repo.Path("tests", "standin", "streams_standin.c"),
                "-ldl",
                "-lpthread",
                "-lm",
            }
        )
            psi.ArgumentList.Add(a);
        using (var cc = Process.Start(psi)!)
        {
            string err = cc.StandardError.ReadToEnd();
            cc.WaitForExit();
            if (cc.ExitCode != 0)
                throw new InvalidOperationException($"building the stand-in failed:\n{err}");
        }
        return path;
    }

    /// <summary>
    /// Runs <c>bin/mplrun</c> (a process of its own, so that its CUDA library is the stand-in) on
    /// <paramref name="bundle"/> with the stand-in's <paramref name="gpus"/> GPUs and any other settings in
    /// <paramref name="env"/>.
    /// </summary>
    public (int Code, string Stdout, string Stderr) Mplrun(
        string bundle,
        int gpus,
        string[] args,
        params (string Name, string Value)[] env
    )
    {
        var psi = new ProcessStartInfo(Repo.Path("bin", "mplrun"))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(bundle);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["MPLC_CUDA_LIBRARY"] = Library;
        psi.Environment["MPLC_NCCL_LIBRARY"] = Library;
        psi.Environment["MPLC_STANDIN_GPUS"] = gpus.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["MPLC_STANDIN_GRID"] = Path.Combine(bundle, "libkernels-grid.so");
        psi.Environment["MPLC_STANDIN_TIMEOUT"] = "30";
        foreach (var (name, value) in env)
            psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            p.Kill(true);
            throw new TimeoutException($"mplrun " + $"{string.Join(" ", args)} did not finish");
        }
        return (p.ExitCode, output, err.Result);
    }

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(Dir, true);
}

/// <summary>The test classes that share one <see cref="CudaStandIn"/> (its bundles take a while to compile).</summary>
[CollectionDefinition(CudaStandIn.Collection)]
public sealed class CudaStandInCollection : ICollectionFixture<CudaStandIn>;

/// <summary>
/// The CUDA back end as a GPU node runs it (<c>mplrun --backend cuda</c>: the driver API and NCCL bindings,
/// contexts, module loading, launches with their parameters, copies between host and GPUs and between GPUs,
/// events) against stand-ins of libcuda and libnccl that run the bundle's host-grid kernels on the CPU and check
/// every copy's device addresses. Each run is compared with the CPU back end by <c>--compare cpu</c>.
/// </summary>
[Collection(CudaStandIn.Collection)]
public sealed class CudaStandInTests(CudaStandIn standIn)
{
    public static TheoryData<string, int, int> Runs =>
        new()
        {
            { "mlp.mpl", 1, 0 },
            { "mlp.mpl", 4, 4 },
            { "attention.mpl", 4, 4 },
            { "classifier.mpl", 1, 0 },
            { "classifier.mpl", 4, 4 },
            { "gpt.mpl", 1, 0 },
            { "gpt.mpl", 8, 8 },
        };

    /// <summary>
    /// Every example through the CUDA path equals the CPU back end: its logical devices sharing one GPU (collectives
    /// by the generated kernels), or one GPU each (collectives through NCCL, pipeline messages by peer copies).
    /// </summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void EveryExampleEqualsTheCpu(string example, int gpus, int perDevice)
    {
        string[] steps = example is "classifier.mpl" or "gpt.mpl" ? ["--steps", "2"] : [];
        string[] placement =
            perDevice > 0
                ? ["--gpus", perDevice.ToString(System.Globalization.CultureInfo.InvariantCulture)]
                : ["--gpus", "1"];
        var (code, stdout, stderr) = standIn.Mplrun(
            standIn.Bundles[example],
            gpus,
            ["--backend", "cuda", .. placement, .. steps, "--compare", "cpu", "--profile"]
        );
        Assert.True(code == 0, $"{example} on {gpus} GPU(s): exit {code}\n{stdout}\n{stderr}");
        Assert.Contains("compare: cuda equals cpu", stdout, StringComparison.Ordinal);
        Assert.Contains(
            perDevice > 0 ? "(collectives through NCCL)" : "on cuda:0 (collectives through device copies",
            stderr,
            StringComparison.Ordinal
        );
        // --profile: launches timed between events on the GPU.
        Assert.Contains("GPU best us", stdout, StringComparison.Ordinal);
    }

    /// <summary>Every collective and dtype through the CUDA path, on one shared GPU and through NCCL, equals the
    /// host's.</summary>
    [Fact]
    public void CollectiveSelfTestPassesOnBothPlacements()
    {
        var (code, stdout, stderr) = standIn.Mplrun(
            standIn.Bundles["mlp.mpl"],
            4,
            ["--backend", "cuda", "--gpus", "4", "--check-collectives"]
        );
        Assert.True(code == 0, $"{stdout}\n{stderr}");
        Assert.Contains("4 devices sharing cuda:0: 184 cases equal the host's", stdout, StringComparison.Ordinal);
        Assert.Contains("through NCCL: 184 cases equal the host's", stdout, StringComparison.Ordinal);
    }

    /// <summary>A GPU out of memory: exit 1 with the device, step, op and the driver's call, no stack trace.</summary>
    [Fact]
    public void OutOfMemoryNamesTheDeviceTheOpAndTheCall()
    {
        var (code, _, stderr) = standIn.Mplrun(
            standIn.Bundles["gpt.mpl"],
            8,
            ["--backend", "cuda", "--gpus", "8", "--steps", "1"],
            ("MPLC_STANDIN_MEMORY", "300000")
        );
        Assert.Equal(1, code);
        Assert.Matches(
            @"error: device \d \(pp=\d, dp=\d, tp=\d\), step \d+, .* at \S*gpt\.mpl:\d+:\d+: "
                + @"cuMemAlloc\(\d+\) on cuda:\d failed: 2 out of memory",
            stderr
        );
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    /// <summary>A driver that does not load, a module the driver refuses, too few GPUs: exit 1 saying which.</summary>
    [Fact]
    public void DriverProblemsAreErrors()
    {
        string bundle = standIn.Bundles["mlp.mpl"];
        var missing = standIn.Mplrun(
            bundle,
            1,
            ["--backend", "cuda"],
            ("MPLC_CUDA_LIBRARY", Path.Combine(standIn.Dir, "no-such-libcuda.so"))
        );
        Assert.Equal(1, missing.Code);
        Assert.Contains("no CUDA driver (MPLC_CUDA_LIBRARY=", missing.Stderr, StringComparison.Ordinal);
        var refused = standIn.Mplrun(
            bundle,
            1,
            ["--backend", "cuda"],
            ("MPLC_STANDIN_GRID", Path.Combine(standIn.Dir, "none.so"))
        );
        Assert.Equal(1, refused.Code);
        Assert.Contains("error: cuModuleLoadDataEx failed: 200", refused.Stderr, StringComparison.Ordinal);
        var few = standIn.Mplrun(bundle, 2, ["--backend", "cuda", "--gpus", "4"]);
        Assert.Equal(1, few.Code);
        Assert.Contains("--gpus 4: this machine has 2 GPU(s)", few.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", missing.Stderr + refused.Stderr + few.Stderr, StringComparison.Ordinal);
    }
}
