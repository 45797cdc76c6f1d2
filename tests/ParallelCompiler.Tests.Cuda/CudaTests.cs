using ParallelCompiler.Driver;
using ParallelCompiler.Mplrun;
using ParallelCompiler.Runtime.Cuda.Native;
using ParallelCompiler.Runtime.IO;
using Xunit;

namespace ParallelCompiler.Tests.Cuda;

/// <summary>A fact that runs only where a CUDA driver and <paramref name="gpus"/> GPUs are present, and says why it
/// skipped otherwise.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    /// <summary>Skips without enough GPUs.</summary>
    public GpuFactAttribute(int gpus = 1)
    {
        if (!CudaApi.Available(out string why))
            Skip = $"needs an NVIDIA GPU: {why}";
        else if (CudaApi.DeviceCount() < gpus)
            Skip = $"needs {gpus} GPUs, this machine has {CudaApi.DeviceCount()}";
    }
}

/// <summary>The CUDA back end against the CPU back end: every example's bundle run on the GPU gives the CPU's
/// result.</summary>
public sealed class CudaTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mplc-cuda").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Example(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ParallelCompiler.sln")))
                return Path.Combine(d.FullName, "examples", name);
        throw new InvalidOperationException("no repository root above the tests");
    }

    private static void Ok(int code, string err) => Assert.True(code == 0, err);

    private string Run(string bundle, string backend, string[] extra)
    {
        string outPath = Path.Combine(_dir, $"{backend}-{Guid.NewGuid():N}.npz");
        var (o, e) = (new StringWriter(), new StringWriter());
        Ok(MplrunCli.Execute([bundle, "--backend", backend, "--out", outPath, .. extra], o, e), e.ToString());
        return outPath;
    }

    /// <summary>Every example (training ones for two steps) on one GPU, its logical devices sharing it, equals the CPU
    /// back end.</summary>
    [GpuFact]
    public void EveryExampleOnTheGpuEqualsTheCpu()
    {
        string[] none = [],
            twoSteps = ["--steps", "2"];
        foreach (
            var (example, compile, run) in new[]
            {
                ("mlp.mpl", none, none),
                ("attention.mpl", none, none),
                ("classifier.mpl", none, twoSteps),
                ("gpt.mpl", ["-D", "L=2"], twoSteps),
            }
        )
        {
            string bundle = Path.Combine(_dir, Path.ChangeExtension(example, ".mplc"));
            var (o, e) = (new StringWriter(), new StringWriter());
            Ok(Cli.Main(["compile", Example(example), "-o", bundle, "--gpu", "sm_80", .. compile], o, e), e.ToString());
            var cpu = ArrayFile.Read(Run(bundle, "cpu", run));
            var gpu = ArrayFile.Read(Run(bundle, "cuda", [.. run, "--gpus", "1"]));
            foreach (var (key, value) in cpu)
            {
                var g = gpu[key].Array;
                for (long i = 0; i < value.Array.Size; i++)
                {
                    double x = value.Array.GetDouble(i),
                        y = g.GetDouble(i);
                    Assert.True(
                        Math.Abs(x - y) <= 1e-4 * Math.Max(1, Math.Abs(x)),
                        $"{example} {key}[{i}]: cpu {x}, gpu {y}"
                    );
                }
            }
        }
    }

    /// <summary>Every collective and dtype on GPU arrays of one GPU shared by four logical devices (the generated
    /// collective kernels) equals the host's.</summary>
    [GpuFact]
    public void CollectivesOnOneGpuEqualTheHost()
    {
        using var gpu = new Runtime.Cuda.CudaDriver(0, Backend.KernelCompiler.Ptx([], "sm_80", collectives: true));
        using var heap = new Runtime.Gpu.GpuHeap(gpu);
        var ops = new Runtime.Gpu.GpuArrayOps(heap);
        using var world = new Runtime.Distributed.InProcessDevices<Runtime.Gpu.GpuArray>(
            new Runtime.Distributed.InProcessWorld<Runtime.Gpu.GpuArray>(
                Support.GpuCollectiveCheck.Mesh,
                TimeSpan.FromSeconds(60),
                ops
            ),
            rank => new Runtime.Gpu.GpuDevice(rank, heap, ops, new Dictionary<string, Runtime.Model.KernelInfo>())
        );
        Support.GpuCollectiveCheck.Run(world);
        Assert.Equal(0, heap.Live);
    }

    /// <summary>The same check with one GPU per device: collectives through NCCL.</summary>
    [GpuFact(gpus: 4)]
    public void CollectivesThroughNcclEqualTheHost()
    {
        string ptx = Backend.KernelCompiler.Ptx([], "sm_80", collectives: true);
        var gpus = Enumerable.Range(0, 4).Select(i => new Runtime.Cuda.CudaDriver(i, ptx)).ToArray();
        try
        {
            var heaps = gpus.Select(g => new Runtime.Gpu.GpuHeap(g)).ToArray();
            using var groups = new Runtime.Gpu.NcclGroups(new Runtime.Cuda.Nccl(gpus));
            using (
                var world = new Runtime.Gpu.NcclWorld(
                    Support.GpuCollectiveCheck.Mesh,
                    TimeSpan.FromSeconds(60),
                    groups,
                    heaps,
                    rank => new Runtime.Gpu.GpuDevice(
                        rank,
                        heaps[rank],
                        new Runtime.Gpu.GpuArrayOps(heaps[rank]),
                        new Dictionary<string, Runtime.Model.KernelInfo>()
                    )
                )
            )
                Support.GpuCollectiveCheck.Run(world);
            Assert.All(heaps, h => Assert.Equal(0, h.Live));
        }
        finally
        {
            foreach (var g in gpus)
                g.Dispose();
        }
    }

    /// <summary>
    /// A training step on the GPU gives back every byte it allocated: after the step all of it is kept in the pool
    /// for the next step, and closing the machine returns it to the driver.
    /// </summary>
    [GpuFact]
    public void AStepFreesWhatItAllocated()
    {
        string bundle = Path.Combine(_dir, "gpt-mem.mplc");
        var (o, e) = (new StringWriter(), new StringWriter());
        Ok(Cli.Main(["compile", Example("gpt.mpl"), "-o", bundle, "--gpu", "sm_80", "-D", "L=1"], o, e), e.ToString());
        var b = Runtime.Model.Bundle.Open(bundle);
        var gpu = Runtime.Gpu.GpuMachine.OpenCuda(File.ReadAllText(b.PathOf("kernels.ptx")), b.Manifest.Kernels, 1);
        var m = b.Manifest;
        var args = m
            .Inputs.Select(a => Runtime.Arrays.Initializers.RandomInput(a.DType, a.Shape, 1, a.Name, a.IntBound))
            .ToArray();
        var parameters = m.Params.ToDictionary(
            p => p.Path,
            p => Runtime.Arrays.Initializers.Create(p.Init, p.Std, p.DType, p.Shape, 1, p.Path)
        );
        gpu.Run(
            m,
            b.Program(n => new Runtime.Distributed.KernelRef(n)),
            args,
            parameters,
            TimeSpan.FromSeconds(60),
            new Dictionary<string, Runtime.Arrays.NDArray>(),
            null
        );
        var counters = gpu.Gpus[0].Counters;
        Assert.True(counters.PeakBytes > 0);
        Assert.Equal(counters.BytesInUse, gpu.Pools[0].CachedBytes);
        gpu.Dispose();
        Assert.Equal(0, counters.BytesInUse);
    }

    /// <summary>The ManagedCuda-shaped binding on its own: device variables copied both ways around a launch of the
    /// block-copy kernel.</summary>
    [GpuFact]
    public void TheDriverBindingCopiesAndLaunches()
    {
        using var context = new Runtime.Cuda.CudaContext(0);
        using var module = context.LoadModulePtx(Backend.KernelCompiler.Ptx([], "sm_80", collectives: true));
        var kernel = module.Kernel(Runtime.Gpu.CollectiveKernels.CopyBlocks, (1, 1, 1), (256, 1, 1));
        using var src = new Runtime.Cuda.CudaDeviceVariable<float>(8);
        using var dst = new Runtime.Cuda.CudaDeviceVariable<float>(8);
        src.CopyToDevice([0, 1, 2, 3, 4, 5, 6, 7]);
        dst.CopyToDevice(new float[8]);
        // dst[o * 4 + i] = src[o * 4 + 2 + i] for o < 2, i < 2.
        var t = kernel.Run(dst.DevicePointer, src.DevicePointer, 2, 2, 4, 2, 4, 0);
        var host = new float[8];
        dst.CopyToHost(host);
        Assert.Equal([2f, 3, 0, 0, 6, 7, 0, 0], host);
        Assert.True(t > TimeSpan.Zero);
    }
}
