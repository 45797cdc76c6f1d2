using System.Runtime.InteropServices;
using ParallelCompiler.Backend;
using ParallelCompiler.Backend.Llvm;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The GPU kernels' thread structure (which dimensions go to threads, the grid-stride loop, whole rows per thread
/// for row kernels, the shared-memory tiles and barriers of matmuls) compiled for the host and run over the launch
/// shape the bundle records (a block per call, its threads in turn between barriers), against the interpreter: the
/// indexing and synchronisation of the generated GPU code is checked on machines without a GPU.
/// </summary>
public class GpuStructureTests
{
    [Theory]
    [InlineData("mlp.mpl")]
    [InlineData("attention.mpl")]
    [InlineData("classifier.mpl")]
    [InlineData("gpt.mpl")]
    public unsafe void EveryKernelRunThreadByThreadMatchesTheInterpreter(string example)
    {
        var module = KernelCheck.Compile(Repo.Path("examples", example), example == "gpt.mpl" ? ["-D", "L=1"] : []);
        var specs = KernelCompiler.Specs(module);
        string dir = Directory.CreateTempSubdirectory("mplc-grid").FullName;
        try
        {
            string so = Path.Combine(dir, "grid.so");
            KernelCompiler.BuildHostLibrary(specs, so, KernelTarget.HostGrid);
            using var lib = new HostKernelLibrary(so);
            var rng = new Random(3);
            var failures = new List<string>();
            foreach (var f in module.Functions().Where(f => f.GetAttr("kernel") != null))
            {
                var spec = specs.Single(s => s.Name == f.StringAttr("sym_name"));
                var args = f.Regions[0].Entry.Arguments.Select(a => Random(a.TensorType, rng)).ToArray();
                var expected = Interpreter.Run(f, args, _ => throw new InvalidOperationException())[0];
                var rt = (TensorType)f.ResultTypes()[0];
                var fn = (IntPtr)lib.Export(spec.Name);
                // The recorded launch shape; for untiled kernels also one of two blocks of 32 threads, where every
                // thread strides over many elements.
                var launch = BundleWriter.Launch(spec);
                var shapes =
                    spec.Matmul != null
                        ? [(launch.Grid, launch.Block)]
                        : new[] { (launch.Grid, launch.Block), (new[] { 2, 1, 1 }, new[] { 32, 1, 1 }) };
                foreach (var (grid, block) in shapes)
                {
                    var got =
                        rt.DType == DType.I32
                            ? NDArray.FromInts(rt.ShapeArray, new int[NDArray.ShapeSize(rt.ShapeArray)])
                            : NDArray.FromFloats(rt.DType, rt.ShapeArray, new float[NDArray.ShapeSize(rt.ShapeArray)]);
                    RunGrid(fn, args.Append(got).ToArray(), grid, block);
                    double err = Distributed.MaxRelativeError(expected, got);
                    if (!(err <= 1e-5))
                        failures.Add(
                            $"{spec.Name} ({KernelCodegen.ParallelDims(spec)} parallel dims, "
                                + $"grid {string.Join("x", grid)}, block {string.Join("x", block)}): {err:G3}"
                        );
                }
            }
            Assert.True(failures.Count == 0, string.Join("\n", failures));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// The register-tiled GPU matmul on partial tiles along every side and on whole tiles (the vector, double-buffered
    /// path), both tile sizes, with broadcast batches.
    /// </summary>
    [Theory]
    [InlineData("2x130x70", "70x136")] // 8x8 per thread (128x128 tiles), K not a multiple of 8
    [InlineData("3x40x33", "1x33x50")] // 4x4 per thread (64x64 tiles), B broadcast over the batch
    [InlineData("2x256x64", "64x384")] // whole 128x128 tiles, 4 steps of 16 along k (both buffers, twice each)
    [InlineData("128x16", "16x128")] // whole tiles, a single step
    [InlineData("3x64x96", "1x96x128")] // whole 64x64 tiles, 3 steps of 32, B broadcast
    [InlineData("128x8", "8x128")] // 128x128 tiles, K a multiple of 8 but not of the whole-tile step
    public unsafe void TiledGpuMatmulMatchesTheInterpreter(string a, string b)
    {
        var module = KernelCheck.MatmulModule(a, b, out var shape);
        var (sa, sb) = (
            module.EntryFunction()!.Regions[0].Entry.Arguments[0].TensorType.ShapeArray,
            module.EntryFunction()!.Regions[0].Entry.Arguments[1].TensorType.ShapeArray
        );
        var rng = new Random(9);
        var args = new[] { Random(new TensorType(DType.F32, sa), rng), Random(new TensorType(DType.F32, sb), rng) };
        var expected = Interpreter.Run(module.EntryFunction()!, args, _ => throw new InvalidOperationException())[0];
        new ParallelCompiler.Passes.FormKernels().Run(module);
        var spec = KernelCompiler.Specs(module).Single();
        string dir = Directory.CreateTempSubdirectory("mplc-gmm").FullName;
        try
        {
            string so = Path.Combine(dir, "g.so");
            KernelCompiler.BuildHostLibrary([spec], so, KernelTarget.HostGrid);
            using var lib = new HostKernelLibrary(so);
            var got = NDArray.FromFloats(shape, new float[NDArray.ShapeSize(shape)]);
            Array.Fill(got.F!, float.NaN);
            var launch = BundleWriter.Launch(spec);
            RunGrid(lib.Export(spec.Name), [.. args, got], launch.Grid, launch.Block);
            double err = Distributed.MaxRelativeError(expected, got);
            Assert.True(err <= 1e-5, $"{a} @ {b} (thread tile {KernelCodegen.GpuThreadTile(spec.Matmul!)}): {err:G3}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>Runs a host-grid kernel over a grid as the emulated GPU does (a block per call, its threads in turn
    /// between barriers) on pinned arrays.</summary>
    private static unsafe void RunGrid(IntPtr fn, NDArray[] buffers, int[] grid, int[] block)
    {
        var handles = buffers.Select(b => GCHandle.Alloc(b.F != null ? b.F : b.I!, GCHandleType.Pinned)).ToArray();
        try
        {
            var table = handles.Select(h => h.AddrOfPinnedObject()).ToArray();
            fixed (IntPtr* tb = table)
                ParallelCompiler.Runtime.Gpu.EmulatedGpu.RunBlocks(fn, (IntPtr)tb, grid, block);
        }
        finally
        {
            foreach (var h in handles)
                h.Free();
        }
    }

    private static NDArray Random(TensorType t, Random rng)
    {
        long n = NDArray.ShapeSize(t.ShapeArray);
        return t.DType == DType.I32
            ? NDArray.FromInts(t.ShapeArray, Enumerable.Range(0, (int)n).Select(_ => rng.Next(8)).ToArray())
            : NDArray.FromFloats(
                t.DType,
                t.ShapeArray,
                Enumerable.Range(0, (int)n).Select(_ => t.DType.Round((float)(rng.NextDouble() * 2 - 1))).ToArray()
            );
    }
}
