using System.Runtime.InteropServices;
using ParallelCompiler.Backend;
using ParallelCompiler.Backend.Kernels;
using ParallelCompiler.Backend.Llvm;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The GPU kernels' thread structure (which dimensions go to threads, the grid-stride loop, whole rows per thread
/// for row kernels) compiled for the host and run thread by thread over the launch shape the bundle records, against
/// the interpreter: the indexing of the generated GPU code is checked on machines without a GPU.
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
                var launch = BundleWriter.Launch(spec, tiled: false);
                var fn = (delegate* unmanaged<IntPtr*, long*, void>)lib.Export(spec.Name);
                // The recorded grid, then one of two blocks of 32 threads, where every thread strides over many elements.
                foreach (var (grid, block) in new[] { ((long)launch.Grid[0], (long)launch.Block[0]), (2L, 32L) })
                {
                    var got = rt.DType == DType.I32 ? NDArray.FromInts(rt.ShapeArray, new int[NDArray.ShapeSize(rt.ShapeArray)])
                        : NDArray.FromFloats(rt.DType, rt.ShapeArray, new float[NDArray.ShapeSize(rt.ShapeArray)]);
                    var buffers = args.Append(got).ToArray();
                    var handles = buffers.Select(b => GCHandle.Alloc(b.F != null ? b.F : b.I!, GCHandleType.Pinned)).ToArray();
                    try
                    {
                        var table = handles.Select(h => h.AddrOfPinnedObject()).ToArray();
                        var regs = new long[KernelCodegen.Registers.Length];
                        for (long b = 0; b < grid; b++)
                            for (long thread = 0; thread < block; thread++)
                            {
                                regs[0] = thread; regs[3] = block; regs[4] = b; regs[7] = grid;
                                fixed (IntPtr* t = table)
                                fixed (long* r = regs) fn(t, r);
                            }
                    }
                    finally { foreach (var h in handles) h.Free(); }
                    double err = Distributed.MaxRelativeError(expected, got);
                    if (!(err <= 1e-5)) failures.Add($"{spec.Name} ({KernelCodegen.ParallelDims(spec)} parallel dims, grid {grid}x{block}): {err:G3}");
                }
            }
            Assert.True(failures.Count == 0, string.Join("\n", failures));
        }
        finally { Directory.Delete(dir, true); }
    }

    private static NDArray Random(TensorType t, Random rng)
    {
        long n = NDArray.ShapeSize(t.ShapeArray);
        return t.DType == DType.I32
            ? NDArray.FromInts(t.ShapeArray, Enumerable.Range(0, (int)n).Select(_ => rng.Next(8)).ToArray())
            : NDArray.FromFloats(t.DType, t.ShapeArray, Enumerable.Range(0, (int)n).Select(_ => t.DType.Round((float)(rng.NextDouble() * 2 - 1))).ToArray());
    }
}
