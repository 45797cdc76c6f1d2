using ParallelCompiler.Backend;
using ParallelCompiler.Backend.Llvm;
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
    private const int RegistersPerSm = 65536,
        StaticSharedLimit = 48 * 1024;

    public static TheoryData<string, string> Programs =>
        new()
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
        var launches = specs
            .Select(BundleWriter.Launch)
            .Concat(CollectiveKernels.All.Select(n => CollectiveKernels.Shape(n, 1 << 20)))
            .ToList();
        foreach (var arch in new[] { "sm_80", "sm_90" })
        {
            var report = Ptxas.Assemble(ptx, arch);
            foreach (var launch in launches)
            {
                Assert.True(
                    report.TryGetValue(launch.Name, out var k),
                    $"{file}: ptxas ({arch}) did not compile {launch.Name}"
                );
                int threads = launch.Block.Aggregate(1, (a, b) => a * b);
                Assert.True(
                    k.StackBytes == 0 && k.SpillStores == 0 && k.SpillLoads == 0,
                    $"{file}: {k} on {arch} uses local memory"
                );
                Assert.True(
                    k.Registers * threads <= RegistersPerSm,
                    $"{file}: {k} on {arch}: {threads} threads need {k.Registers * threads} registers"
                );
                Assert.True(k.SharedBytes <= StaticSharedLimit, $"{file}: {k} on {arch}");
            }
            Assert.Equal(launches.Count, report.Count);
        }
    }

    /// <summary>
    /// The tiled matmul on partial and whole tiles (both thread tiles): no local memory; whole tiles are declared
    /// to run 256 threads a block with two blocks an SM, so ptxas keeps them within 128 registers a thread.
    /// </summary>
    [PtxasTheory]
    [InlineData("2x130x70", "70x136", false)]
    [InlineData("3x40x33", "1x33x50", false)]
    [InlineData("2x256x64", "64x384", true)]
    [InlineData("128x16", "16x128", true)]
    [InlineData("3x64x96", "1x96x128", true)]
    [InlineData("128x8", "8x128", false)]
    [InlineData("4096x4096", "4096x4096", true)]
    public void TiledMatmulKeepsToRegisters(string a, string b, bool whole)
    {
        var spec = MatmulSpec(a, b);
        string ptx = KernelCompiler.Ptx([spec], "sm_80");
        Assert.Equal(whole, ptx.Contains(".maxntid 16, 16, 1", StringComparison.Ordinal));
        Assert.Equal(whole, ptx.Contains(".minnctapersm 2", StringComparison.Ordinal));
        foreach (var arch in new[] { "sm_80", "sm_90" })
        {
            var k = Ptxas.Assemble(ptx, arch)[spec.Name];
            Assert.True(
                k.StackBytes == 0 && k.SpillStores == 0 && k.SpillLoads == 0,
                $"{a} @ {b}: {k} on {arch} uses local memory"
            );
            if (whole)
                Assert.True(k.Registers <= RegistersPerSm / (2 * 256), $"{a} @ {b}: {k} on {arch}");
        }
    }

    /// <summary>
    /// The machine code of the 4096^3 benchmark's loop over k (sm_90, by nvdisasm): one barrier a step of 16,
    /// operands from shared memory only as 128-bit loads (16 multiply-adds for each), tiles from global memory as
    /// 128-bit loads (two of A, two of B), and at least 85% of its instructions fused multiply-adds.
    /// </summary>
    [PtxasFact]
    public void WholeTileMatmulLoopIsMostlyFusedMultiplyAdds()
    {
        var spec = MatmulSpec("4096x4096", "4096x4096");
        string dir = Directory.CreateTempSubdirectory("mplc-sass").FullName;
        try
        {
            string cubin = Path.Combine(dir, "k.cubin");
            Ptxas.Assemble(KernelCompiler.Ptx([spec], "sm_80"), "sm_90", cubin);
            var loop = Ptxas.InnermostLoop(Ptxas.Disassemble(cubin));
            int Count(string prefix) =>
                loop.Count(op => op == prefix || op.StartsWith(prefix + ".", StringComparison.Ordinal));
            string mix = string.Join(
                ", ",
                loop.GroupBy(op => op).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}")
            );
            Assert.True(Count("FFMA") == 1024, mix); // 8x8 outputs a thread, 16 values of k a step
            Assert.True(Count("BAR") == 1, mix);
            Assert.True(Count("LDS") == Count("LDS.128") && Count("LDS.128") * 16 <= Count("FFMA"), mix);
            Assert.True(Count("LDG") == Count("LDG.E.128") && Count("LDG") == 4, mix);
            Assert.True(Count("FFMA") >= 0.85 * loop.Count, mix);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// The bandwidth benchmark's fused elementwise kernel (sm_90, by nvdisasm): each trip of its loop issues the
    /// loads of four elements before the first store, so four loads per thread are in flight together.
    /// </summary>
    [PtxasFact]
    public void ElementwiseLoopLoadsFourElementsBeforeStoring()
    {
        var module = KernelCheck.Compile(Repo.Path("tests", "Bench", "gpu", "chain.mpl"));
        var spec = KernelCompiler.Specs(module).Single();
        string dir = Directory.CreateTempSubdirectory("mplc-sass").FullName;
        try
        {
            string cubin = Path.Combine(dir, "k.cubin");
            Ptxas.Assemble(KernelCompiler.Ptx([spec], "sm_80"), "sm_90", cubin);
            var memory = Ptxas
                .InnermostLoop(Ptxas.Disassemble(cubin))
                .Where(op =>
                    op.StartsWith("LDG", StringComparison.Ordinal) || op.StartsWith("STG", StringComparison.Ordinal)
                )
                .ToList();
            Assert.True(
                memory.Count == 2 * KernelCodegen.GpuUnroll
                    && memory.Take(KernelCodegen.GpuUnroll).All(op => op.StartsWith("LDG", StringComparison.Ordinal)),
                string.Join(" ", memory)
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static ParallelCompiler.Kernels.KernelSpec MatmulSpec(string a, string b)
    {
        var module = KernelCheck.MatmulModule(a, b, out _);
        new ParallelCompiler.Passes.FormKernels().Run(module);
        return KernelCompiler.Specs(module).Single();
    }

    [PtxasFact]
    public void ParsesPtxasReport()
    {
        var r = Ptxas.Parse(
            """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'k1' for 'sm_90'
            ptxas info    : Function properties for k1
                8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 40 registers, 8192 bytes smem, 400 bytes cmem[0]
            ptxas info    : Compiling entry function 'k0' for 'sm_90'
            ptxas info    : Function properties for k0
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 18 registers, 384 bytes cmem[0]
            """
        );
        Assert.Equal(new PtxasKernel("k1", 40, 8192, 8, 4, 4), r["k1"]);
        Assert.Equal(new PtxasKernel("k0", 18, 0, 0, 0, 0), r["k0"]);
    }
}
