using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>The sharding passes through the command line: runs over the mesh, statistics, warnings and
/// errors.</summary>
public class ShardingCliTests
{
    /// <summary>(example, its mesh flattened to one device, extra flags).</summary>
    public static TheoryData<string, string, string> ShardedExamples() =>
        new()
        {
            { "mlp.mpl", "dp=1,tp=1", "" },
            { "attention.mpl", "dp=1,tp=1", "" },
            { "gpt.mpl", "pp=1,dp=1,tp=1", "L=2" },
        };

    /// <summary>Every example with shardings runs on all devices of its mesh and gives what one device gives.</summary>
    [Theory]
    [MemberData(nameof(ShardedExamples))]
    public void ExampleOnItsMeshEqualsOneDevice(string example, string oneDevice, string define)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-dist").FullName;
        try
        {
            string[] extra = define.Length > 0 ? ["-D", define] : [];
            var spmd = Mplc.Run([
                "run",
                Repo.Path("examples", example),
                "--seed",
                "5",
                "--out",
                Path.Combine(dir, "spmd.npz"),
                .. extra,
            ]);
            Assert.True(spmd.ExitCode == 0, spmd.Stderr);
            Assert.Matches(@"note: running on (4|8) simulated device\(s\)", spmd.Stderr);
            var single = Mplc.Run([
                "run",
                Repo.Path("examples", example),
                "--seed",
                "5",
                "--mesh",
                oneDevice,
                "--out",
                Path.Combine(dir, "one.npz"),
                .. extra,
            ]);
            Assert.True(single.ExitCode == 0, single.Stderr);
            Assert.Contains("running on 1 simulated device(s)", single.Stderr);
            var a = ArrayFile.Read(Path.Combine(dir, "spmd.npz"))["out"].Array;
            var b = ArrayFile.Read(Path.Combine(dir, "one.npz"))["out"].Array;
            Assert.True(Distributed.MaxRelativeError(b, a) <= 1e-5, $"error {Distributed.MaxRelativeError(b, a)}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void StatsShowFlopsCollectivesAndMemoryPerDevice()
    {
        var r = Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "--stats", "-o", "/dev/null");
        Assert.True(r.ExitCode == 0, r.Stderr);
        // per device: two matmuls of 2*4*128*64, the bias add (512) and gelu (8 per element, 4,096).
        Assert.Matches(@"0-3\s+135\.7 K\s+1, 1\.0 KiB\s+1\.0 KiB\s+64\.5 KiB\s+\d+\.\d KiB", r.Stderr);
        Assert.Contains("4 device(s), mesh dp=2,tp=2", r.Stderr);
    }

    [Fact]
    public void GatheringAUserShardedTensorInFullIsAWarning()
    {
        var r = Mplc.CompileSource(
            """
            mesh m[tp = 2];
            model f(x: f32[8, 64] shard[_, tp]) -> f32[8, 64] {
              return causal_mask(x);
            }
            """
        );
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches(
            @"t\.mpl:2:7: warning: 'x' \(f32\[8, 64\] shard\[_, tp\], 2\.0 KiB\) "
                + @"is gathered in full on every device of the mesh \(tp=2\)",
            r.Stderr
        );
        Assert.Contains("dist.all_gather", r.Stdout);
    }

    [Fact]
    public void IndivisibleDimensionInIRIsAnErrorNamingDimensionAxesAndSizes()
    {
        var r = OnIR(
            "opt",
            """
            module {
              dist.mesh {axes = ["x", "y"], shape = [2, 2], sym_name = "grid"} : () -> ()
              func.func @f(%a: tensor<6x8xf32, shard[(x, y), _]>) -> tensor<6x8xf32, shard[(x, y), _]> {
                func.return %a : tensor<6x8xf32, shard[(x, y), _]>
              }
            }
            """,
            "--pass-pipeline=spmdize"
        );
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "error: dimension 0 of 'a' (f32[6, 8], size 6) is not divisible by mesh axes x=2, y=2 " + "(product 4)",
            r.Stderr
        );
        Assert.DoesNotContain("internal compiler error", r.Stderr);
    }

    [Fact]
    public void ADeviceWaitingForeverIsReportedAfterTheTimeout()
    {
        var r = OnIR(
            "run",
            """
            module attributes {spmd = true} {
              dist.mesh {axes = ["x"], shape = [2], sym_name = "grid"} : () -> ()
              func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {
                %0 = dist.recv {axis = "x", shift = 1} : () -> tensor<4xf32>
                %1 = tensor.add %a, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
                func.return %1 : tensor<4xf32>
              }
            }
            """,
            "--collective-timeout",
            "0.3"
        );
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "error: device 1 (x=1) waited 0.3 s in recv from device 0 (x=0), dist.recv at step 1",
            r.Stderr
        );
    }

    [Fact]
    public void CollectivesVerifyTheirShapesAgainstTheMesh()
    {
        var r = OnIR(
            "opt",
            """
            module attributes {spmd = true} {
              dist.mesh {axes = ["x"], shape = [4], sym_name = "grid"} : () -> ()
              func.func @f(%a: tensor<4x2xf32>) -> tensor<8x2xf32> {
                %0 = dist.all_gather %a {axes = ["x"], dim = 0} : (tensor<4x2xf32>) -> tensor<8x2xf32>
                func.return %0 : tensor<8x2xf32>
              }
            }
            """
        );
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "all_gather: over [x] (4 devices) a tensor<4x2xf32> gives tensor<16x2xf32>, not tensor<8x2xf32>",
            r.Stderr
        );
    }

    /// <summary>Writes <paramref name="ir"/> to a temporary .mplir file and runs an mplc command on it.</summary>
    private static Mplc.Result OnIR(string command, string ir, params string[] flags)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-ir").FullName;
        string path = Path.Combine(dir, "test.mplir");
        File.WriteAllText(path, ir);
        try
        {
            return Mplc.Run([command, path, .. flags]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
