using ParallelCompiler.Backend;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The PTX a bundle carries (every kernel of a program and the collective kernels) assembled by NVIDIA's ptxas for
/// the A100 (sm_80) and the H100/H200 (sm_90): it must assemble, keep everything in registers (no stack, no
/// spills), and fit its launch: registers per thread times the block's threads within the 65,536 registers of
/// an SM, static shared memory within 48 KiB.
/// </summary>
public class PtxasTests
{
    private const int RegistersPerSm = 65536, StaticSharedLimit = 48 * 1024;

    public static TheoryData<string, string> Programs => new()
    {
        { "examples/mlp.mpl", "" },
        { "examples/attention.mpl", "" },
        { "examples/classifier.mpl", "" },
        { "examples/gpt.mpl", "L=1" },
        { "tests/Bench/gpu/matmul.mpl", "" },
        { "tests/Bench/gpu/chain.mpl", "" },
    };

    [PtxasTheory]
    [MemberData(nameof(Programs))]
    public void EveryKernelAssemblesWithoutSpillsAndFitsItsLaunch(string file, string define)
    {
        var module = KernelCheck.Compile(Repo.Path(file.Split('/')), define.Length > 0 ? ["-D", define] : []);
        var specs = KernelCompiler.Specs(module);
        string ptx = KernelCompiler.Ptx(specs, "sm_80", collectives: true);
        var launches = specs.Select(s => BundleWriter.Launch(s)).Concat(CollectiveKernels.All.Select(n => CollectiveKernels.Shape(n, 1 << 20))).ToList();
        foreach (var arch in new[] { "sm_80", "sm_90" })
        {
            var report = Ptxas.Assemble(ptx, arch);
            foreach (var launch in launches)
            {
                Assert.True(report.TryGetValue(launch.Name, out var k), $"{file}: ptxas ({arch}) did not compile {launch.Name}");
                int threads = launch.Block.Aggregate(1, (a, b) => a * b);
                Assert.True(k.StackBytes == 0 && k.SpillStores == 0 && k.SpillLoads == 0, $"{file}: {k} on {arch} uses local memory");
                Assert.True(k.Registers * threads <= RegistersPerSm, $"{file}: {k} on {arch}: {threads} threads need {k.Registers * threads} registers");
                Assert.True(k.SharedBytes <= StaticSharedLimit, $"{file}: {k} on {arch}");
            }
            Assert.Equal(launches.Count, report.Count);
        }
    }

    [PtxasFact]
    public void ParsesPtxasReport()
    {
        var r = Ptxas.Parse("""
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'k1' for 'sm_90'
            ptxas info    : Function properties for k1
                8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 40 registers, 8192 bytes smem, 400 bytes cmem[0]
            ptxas info    : Compiling entry function 'k0' for 'sm_90'
            ptxas info    : Function properties for k0
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 18 registers, 384 bytes cmem[0]
            """);
        Assert.Equal(new PtxasKernel("k1", 40, 8192, 8, 4, 4), r["k1"]);
        Assert.Equal(new PtxasKernel("k0", 18, 0, 0, 0, 0), r["k0"]);
    }
}
