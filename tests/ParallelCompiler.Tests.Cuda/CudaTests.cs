using ParallelCompiler.Driver;
using ParallelCompiler.Mplrun;
using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.IO;
using Xunit;

namespace ParallelCompiler.Tests.Cuda;

/// <summary>A fact that runs only where a CUDA GPU and driver are present, and says why it skipped otherwise.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    /// <summary>Skips without a GPU.</summary>
    public GpuFactAttribute()
    {
        if (!CudaApi.Available(out string why)) Skip = $"needs an NVIDIA GPU: {why}";
    }
}

/// <summary>The CUDA back end against the CPU back end: every example's bundle run on the GPU gives the CPU's result.</summary>
public sealed class CudaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mplc-cuda").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Example(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ParallelCompiler.sln"))) return Path.Combine(d.FullName, "examples", name);
        throw new InvalidOperationException("no repository root above the tests");
    }

    private static void Ok(int code, string err) => Assert.True(code == 0, err);

    private string Run(string bundle, string backend, params string[] extra)
    {
        string outPath = Path.Combine(_dir, $"{backend}-{Guid.NewGuid():N}.npz");
        var (o, e) = (new StringWriter(), new StringWriter());
        Ok(MplrunCli.Execute([bundle, "--backend", backend, "--out", outPath, .. extra], o, e), e.ToString());
        return outPath;
    }

    [GpuFact]
    public void EveryExampleOnTheGpuEqualsTheCpu()
    {
        foreach (var (example, extra) in new[] { ("mlp.mpl", Array.Empty<string>()), ("attention.mpl", []), ("classifier.mpl", []), ("gpt.mpl", ["-D", "L=2"]) })
        {
            string bundle = Path.Combine(_dir, Path.ChangeExtension(example, ".mplc"));
            var (o, e) = (new StringWriter(), new StringWriter());
            Ok(Cli.Main(["compile", Example(example), "-o", bundle, "--gpu", "sm_80", .. extra], o, e), e.ToString());
            var cpu = ArrayFile.Read(Run(bundle, "cpu"));
            var gpu = ArrayFile.Read(Run(bundle, "cuda"));
            foreach (var (key, value) in cpu)
            {
                var g = gpu[key].Array;
                for (long i = 0; i < value.Array.Size; i++)
                {
                    double x = value.Array.GetDouble(i), y = g.GetDouble(i);
                    Assert.True(Math.Abs(x - y) <= 1e-4 * Math.Max(1, Math.Abs(x)), $"{example} {key}[{i}]: cpu {x}, gpu {y}");
                }
            }
        }
    }
}
