using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Cpu;

/// <summary>Generated host kernels against numpy and against memory bandwidth.</summary>
internal static class Kernels
{
    public static void Run(string root, int repeat)
    {
        const int n = 512;
        var lib = Compile(
            $$"""
            module {
              func.func @mm(%a: tensor<{{n}}x{{n}}xf32>, %b: tensor<{{n}}x{{n}}xf32>) -> tensor<{{n}}x{{n}}xf32> {
                %0 = tensor.matmul %a, %b
                  : (tensor<{{n}}x{{n}}xf32>, tensor<{{n}}x{{n}}xf32>) -> tensor<{{n}}x{{n}}xf32>
                func.return %0 : tensor<{{n}}x{{n}}xf32>
              }
            }
            """
        );
        var rng = new Random(1);
        NDArray Rand(long[] shape) =>
            NDArray.FromFloats(
                shape,
                Enumerable.Range(0, (int)NDArray.ShapeSize(shape)).Select(_ => (float)rng.NextDouble()).ToArray()
            );
        var (a, b, c) = (Rand([n, n]), Rand([n, n]), NDArray.Zeros(DType.F32, [n, n]));
        var mm = lib.Kernel("k0_matmul");
        double ours = Median(repeat, () => mm.Execute([a, b], [c]));
        double flops = 2.0 * n * n * n;
        Console.WriteLine(
            $"generated matmul {n}x{n}x{n} f32, one thread: median {ours * 1e3:F2} ms, "
                + $"{flops / ours / 1e9:F1} GFLOP/s"
        );
        double? numpy = NumpyMatmul(n, repeat);
        if (numpy is { } np)
            Console.WriteLine(
                $"numpy (one BLAS thread) {n}x{n}x{n} f32: median {np * 1e3:F2} ms, "
                    + $"{flops / np / 1e9:F1} GFLOP/s; ratio generated/numpy = {np / ours:F2} (target >= 0.3)"
            );

        // A fused elementwise chain (gelu(x * s + b)) against a plain copy of the same bytes.
        const long size = 1 << 24;
        var chain = Compile(
            $$"""
            module {
              func.func @chain(%x: tensor<{{size}}xf32>, %s: tensor<f32>, %b: tensor<f32>) -> tensor<{{size}}xf32> {
                %0 = tensor.mul %x, %s : (tensor<{{size}}xf32>, tensor<f32>) -> tensor<{{size}}xf32>
                %1 = tensor.add %0, %b : (tensor<{{size}}xf32>, tensor<f32>) -> tensor<{{size}}xf32>
                %2 = tensor.relu %1 : (tensor<{{size}}xf32>) -> tensor<{{size}}xf32>
                func.return %2 : tensor<{{size}}xf32>
              }
            }
            """
        );
        var x = Rand([size]);
        var y = NDArray.Zeros(DType.F32, [size]);
        var k = chain.Kernel("k0_relu");
        double fused = Median(
            repeat,
            () => k.Execute([x, NDArray.FromFloats([], [2f]), NDArray.FromFloats([], [0.5f])], [y])
        );
        double copy = Median(repeat, () => Array.Copy(x.F!, y.F!, size));
        double bytes = 2.0 * size * 4;
        Console.WriteLine(
            $"fused chain relu(x*s+b) over {size} f32: {bytes / fused / 1e9:F1} GB/s; Array.Copy of the "
                + $"same: {bytes / copy / 1e9:F1} GB/s; ratio {copy / fused:F2}"
        );
    }

    private static HostKernelLibrary Compile(string ir)
    {
        var module = IRParser.ParseModule(ir);
        new FormKernels().Run(module);
        string dir = Directory.CreateTempSubdirectory("bench-kernels").FullName;
        string so = Path.Combine(dir, "lib.so");
        KernelCompiler.BuildHostLibrary(module, so);
        return new HostKernelLibrary(so);
    }

    private static double Median(int repeat, Action body)
    {
        body();
        var t = new List<double>();
        for (int i = 0; i < repeat; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            t.Add(sw.Elapsed.TotalSeconds);
        }
        t.Sort();
        return t[t.Count / 2];
    }

    private static double? NumpyMatmul(int n, int repeat)
    {
        string script =
            $"import numpy as np, time\na=np.random.rand({n},{n}).astype(np.float32); "
            + $"b=np.random.rand({n},{n}).astype(np.float32)\na@b\nt=[]\nfor _ in range({repeat}):\n  "
            + $"s=time.perf_counter(); a@b; t.append(time.perf_counter()-s)\nt.sort(); print(t[len(t)//2])";
        var psi = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (var v in new[] { "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS" })
            psi.Environment[v] = "1";
        try
        {
            using var p = Process.Start(psi)!;
            string o = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? double.Parse(o.Trim(), CultureInfo.InvariantCulture) : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
