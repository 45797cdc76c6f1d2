using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Training;

/// <summary>A model written wholly in bf16 trains: adam's f32 step count meets bf16 moments through
/// tensor.convert.</summary>
public class PrecisionTrainingTests() : TempDirTest("mplc-bf16")
{
    private string Bf16Gpt()
    {
        string path = P("gpt_bf16.mpl");
        File.WriteAllText(path, File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace("f32", "bf16"));
        return path;
    }

    [Fact]
    public void ABf16TransformerTrainsOnItsMeshAsOnOneDevice()
    {
        var r = Mplc.Run("run", Bf16Gpt(), "-D", "L=1", "--check");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("check: gpt.wte.adam_m: largest relative difference", r.Stdout);
        Assert.Contains("equals one device", r.Stdout);
    }

    [Fact]
    public void TheCompiledKernelsAgreeWithTheInterpreterInBf16()
    {
        string o1 = P("cpu.npz"),
            o2 = P("interp.npz");
        foreach (var (backend, o) in new[] { ("cpu", o1), ("interp", o2) })
        {
            var r = Mplc.Run(
                "run",
                Bf16Gpt(),
                "-D",
                "L=1",
                "--backend",
                backend,
                "--steps",
                "2",
                "--out",
                o,
                "--mesh",
                "pp=1,dp=2,tp=2"
            );
            Assert.True(r.ExitCode == 0, r.Stderr);
        }
        var a = ParallelCompiler.Runtime.IO.ArrayFile.Read(o1)["loss"].Array;
        var b = ParallelCompiler.Runtime.IO.ArrayFile.Read(o2)["loss"].Array;
        Assert.True(ParallelCompiler.Tests.Sharding.Distributed.MaxRelativeError(b, a) <= 1e-2);
    }
}
