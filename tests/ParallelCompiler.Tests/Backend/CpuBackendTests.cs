using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>The generated host kernels against the reference interpreter.</summary>
public class CpuBackendTests
{
    /// <summary>Every example, run end to end on its mesh with the compiled kernels, gives the interpreter's results
    /// (training: every step's loss).</summary>
    [Theory]
    [InlineData("mlp.mpl", new string[0])]
    [InlineData("attention.mpl", new string[0])]
    [InlineData("classifier.mpl", new[] { "--steps", "3" })]
    [InlineData("gpt.mpl", new[] { "-D", "L=2", "--steps", "3" })]
    public void EveryExampleOnCpuEqualsInterp(string example, string[] extra)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-cpu").FullName;
        try
        {
            NDArray[] Run(string backend)
            {
                string o = Path.Combine(dir, backend + ".npz");
                var r = Mplc.Run([
                    "run",
                    Repo.Path("examples", example),
                    "--backend",
                    backend,
                    "--seed",
                    "11",
                    "--out",
                    o,
                    .. extra,
                ]);
                Assert.True(r.ExitCode == 0, r.Stderr);
                return ParallelCompiler
                    .Runtime.IO.ArrayFile.Read(o)
                    .OrderBy(kv => kv.Key)
                    .Select(kv => kv.Value.Array)
                    .ToArray();
            }
            var (cpu, interp) = (Run("cpu"), Run("interp"));
            Assert.Equal(interp.Length, cpu.Length);
            for (int i = 0; i < cpu.Length; i++)
            {
                double err = Sharding.Distributed.MaxRelativeError(interp[i], cpu[i]);
                Assert.True(err <= 1e-5, $"{example}: output {i} differs by {err:G3}");
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("mlp.mpl")]
    [InlineData("attention.mpl")]
    [InlineData("classifier.mpl")]
    [InlineData("gpt.mpl")]
    public void EveryKernelOfAnExampleMatchesTheInterpreter(string example)
    {
        var module = KernelCheck.Compile(Repo.Path("examples", example), example == "gpt.mpl" ? ["-D", "L=1"] : []);
        var bad = KernelCheck.Errors(module, intBound: 8).Where(e => !(e.Error <= 1e-5)).ToList();
        Assert.True(bad.Count == 0, string.Join("\n", bad.Select(b => $"{b.Kernel}: {b.Error}")));
    }
}

/// <summary>The back end's command-line surface: backends, emitted code, errors.</summary>
public class BackendCliTests
{
    [Fact]
    public void BackendsAgreeAndBadChoicesAreErrors()
    {
        string mlp = Repo.Path("examples", "mlp.mpl");
        var cpu = Mplc.Run("run", mlp, "--seed", "3");
        var interp = Mplc.Run("run", mlp, "--seed", "3", "--backend", "interp");
        Assert.True(cpu.ExitCode == 0 && interp.ExitCode == 0, cpu.Stderr + interp.Stderr);
        Assert.Equal(interp.Stdout, cpu.Stdout);

        var bad = Mplc.Run("run", mlp, "--backend", "tpu");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error: --backend must be cpu, cuda, cuda-emu or interp, got 'tpu'", bad.Stderr);
        bad = Mplc.Run("compile", mlp, "--emit", "wasm");
        Assert.Contains("error: --emit must be ir, llvm, ptx or asm, got 'wasm'", bad.Stderr);
        bad = Mplc.Run("compile", mlp, "--emit", "ptx", "--gpu", "sm_99");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error: --gpu sm_99: the loaded LLVM", bad.Stderr);
        bad = Mplc.Run("compile", mlp, "--emit", "ptx", "--gpu", "volta");
        Assert.Contains("error: --gpu expects sm_XX (e.g. sm_80), got 'volta'", bad.Stderr);
        bad = Mplc.Run("compile", mlp, "--emit", "llvm", "--pass-pipeline=shape-inference");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error: the program has no kernels: the pipeline must end with form-kernels", bad.Stderr);

        // Without a GPU, the CUDA back end says why it cannot run (with one, the CUDA test project runs it).
        if (!ParallelCompiler.Runtime.Cuda.Native.CudaApi.Available(out string why))
        {
            bad = Mplc.Run("run", mlp, "--backend", "cuda");
            Assert.Equal(1, bad.ExitCode);
            Assert.Contains($"error: --backend cuda: {why}", bad.Stderr);
        }

        var asm = Mplc.Run("compile", mlp, "--emit", "asm");
        Assert.True(asm.ExitCode == 0, asm.Stderr);
        Assert.Contains("k0_matmul:", asm.Stdout);
    }
}

/// <summary>The cache of compiled kernel libraries: named by what they depend on, kept to a bounded number.</summary>
public class KernelCacheTests
{
    [Fact]
    public void KeysFollowTheKernelsAndPruningKeepsTheNewest()
    {
        var a = KernelCheck.Compile(Repo.Path("examples", "mlp.mpl"));
        var b = KernelCheck.Compile(Repo.Path("examples", "mlp.mpl"));
        var c = KernelCheck.Compile(Repo.Path("examples", "mlp.mpl"), "--mesh", "dp=1,tp=1");
        Assert.Equal(ParallelCompiler.Backend.KernelCache.Key(a), ParallelCompiler.Backend.KernelCache.Key(b));
        Assert.NotEqual(ParallelCompiler.Backend.KernelCache.Key(a), ParallelCompiler.Backend.KernelCache.Key(c));

        string dir = Directory.CreateTempSubdirectory("mplc-cache").FullName;
        try
        {
            for (int i = 0; i < 5; i++)
            {
                string f = Path.Combine(dir, $"{i}.so");
                File.WriteAllText(f, "x");
                File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddMinutes(i));
            }
            ParallelCompiler.Backend.KernelCache.Prune(dir, keep: 2);
            Assert.Equal(["3.so", "4.so"], Directory.GetFiles(dir).Select(Path.GetFileName).Order());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}

/// <summary>The tiled host matmul on shapes that exercise its blocks: partial k and column blocks, tail rows, broadcast
/// batches.</summary>
public class TiledMatmulTests
{
    [Theory]
    [InlineData("3x301x520", "520x272")]
    [InlineData("2x1x17x300", "3x300x32")]
    [InlineData("4x256", "256x16")]
    public void TiledMatmulMatchesTheInterpreter(string a, string b)
    {
        var module = KernelCheck.MatmulModule(a, b, out var outShape);
        var (sa, sb) = (
            module.EntryFunction()!.Regions[0].Entry.Arguments[0].TensorType.ShapeArray,
            module.EntryFunction()!.Regions[0].Entry.Arguments[1].TensorType.ShapeArray
        );
        var rng = new Random(5);
        NDArray R(long[] s) =>
            NDArray.FromFloats(
                s,
                Enumerable.Range(0, (int)NDArray.ShapeSize(s)).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray()
            );
        var args = new[] { R(sa), R(sb) };
        var expected = Interpreter.Run(module.EntryFunction()!, args, _ => throw new InvalidOperationException())[0];
        new ParallelCompiler.Passes.FormKernels().Run(module);
        Assert.NotNull(ParallelCompiler.Backend.KernelCompiler.Specs(module).Single().Matmul);
        string dir = Directory.CreateTempSubdirectory("mplc-mm").FullName;
        try
        {
            string so = Path.Combine(dir, "mm.so");
            ParallelCompiler.Backend.KernelCompiler.BuildHostLibrary(module, so);
            using var lib = new ParallelCompiler.Runtime.Cpu.HostKernelLibrary(so);
            var got = NDArray.FromFloats(outShape, new float[NDArray.ShapeSize(outShape)]);
            Array.Fill(got.F!, float.NaN); // the kernel must not read what the output held
            lib.Kernel("k0_matmul").Execute(args, [got]);
            double err = Sharding.Distributed.MaxRelativeError(expected, got);
            Assert.True(err <= 1e-5, $"{a} @ {b}: {err:G3}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
