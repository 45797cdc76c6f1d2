using ParallelCompiler.Backend;
using ParallelCompiler.Driver;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Syntax;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;

namespace ParallelCompiler.Tests.Backend;

/// <summary>Compiles every kernel function of a module for the host and runs each against the reference
/// interpreter.</summary>
public static class KernelCheck
{
    /// <summary>The module of <paramref name="path"/> after the default pipeline and form-kernels.</summary>
    public static Operation Compile(string path, params string[] extra)
    {
        string outPath = Path.Combine(Directory.CreateTempSubdirectory("mplc-k").FullName, "m.mplir");
        var r = Mplc.Run(["compile", path, "-o", outPath, .. extra]);
        if (r.ExitCode != 0)
            throw new InvalidOperationException(r.Stderr);
        var module = Compilation.ParseIR(Compilation.ReadSource(outPath), new DiagnosticBag(), verify: true);
        Compilation.RunPipeline(
            module,
            Pipelines.Backend,
            new ParallelCompiler.Passes.Infrastructure.IRPrintingOptions(),
            (ParallelCompiler.Passes.Infrastructure.PassRegistry)
                CompilerServices.Create().GetService(typeof(ParallelCompiler.Passes.Infrastructure.PassRegistry))!,
            _ => { }
        );
        return module;
    }

    /// <summary>Every kernel's worst relative error against the interpreter on random inputs (integers within [0,
    /// bound)).</summary>
    public static List<(string Kernel, double Error)> Errors(Operation module, int intBound, int seed = 1)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-kc").FullName;
        string so = Path.Combine(dir, "libk.so");
        KernelCompiler.BuildHostLibrary(module, so);
        using var lib = new HostKernelLibrary(so);
        var rng = new Random(seed);
        var result = new List<(string, double)>();
        foreach (var f in module.Functions().Where(f => f.GetAttr("kernel") != null))
        {
            var args = f.Regions[0]
                .Entry.Arguments.Select(a =>
                {
                    var t = a.TensorType;
                    long n = NDArray.ShapeSize(t.ShapeArray);
                    return t.DType == DType.I32
                        ? NDArray.FromInts(
                            t.ShapeArray,
                            Enumerable.Range(0, (int)n).Select(_ => rng.Next(intBound)).ToArray()
                        )
                        : NDArray.FromFloats(
                            t.DType,
                            t.ShapeArray,
                            Enumerable
                                .Range(0, (int)n)
                                .Select(_ => t.DType.Round((float)(rng.NextDouble() * 2 - 1)))
                                .ToArray()
                        );
                })
                .ToArray();
            var expected = Interpreter.Run(f, args, _ => throw new InvalidOperationException())[0];
            var rt = f.ResultTypes()[0] as TensorType;
            var actual =
                rt!.DType == DType.I32
                    ? NDArray.FromInts(rt.ShapeArray, new int[NDArray.ShapeSize(rt.ShapeArray)])
                    : NDArray.FromFloats(rt.DType, rt.ShapeArray, new float[NDArray.ShapeSize(rt.ShapeArray)]);
            lib.Kernel(f.StringAttr("sym_name")).Execute(args, [actual]);
            result.Add((f.StringAttr("sym_name"), Distributed.MaxRelativeError(expected, actual)));
        }
        Directory.Delete(dir, true);
        return result;
    }

    /// <summary>A module of one f32 matmul of shapes like "2x130x70" and "70x136"; <paramref name="outShape"/> is its
    /// result's.</summary>
    public static Operation MatmulModule(string a, string b, out long[] outShape)
    {
        long[] S(string x) => x.Split('x').Select(long.Parse).ToArray();
        var (sa, sb) = (S(a), S(b));
        outShape = Dialects.Tensor.ShapeRules.Broadcast(sa[..^2], sb[..^2])!.Append(sa[^2]).Append(sb[^1]).ToArray();
        string o = string.Join("x", outShape);
        return IRParser.ParseModule(
            $$"""
            module {
              func.func @f(%a: tensor<{{a}}xf32>, %b: tensor<{{b}}xf32>) -> tensor<{{o}}xf32> {
                %0 = tensor.matmul %a, %b : (tensor<{{a}}xf32>, tensor<{{b}}xf32>) -> tensor<{{o}}xf32>
                func.return %0 : tensor<{{o}}xf32>
              }
            }
            """
        );
    }
}
