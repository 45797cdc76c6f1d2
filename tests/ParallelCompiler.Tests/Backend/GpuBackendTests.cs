using System.Diagnostics;
using ParallelCompiler.Backend;
using ParallelCompiler.Backend.Llvm;
using ParallelCompiler.Mplrun;
using ParallelCompiler.Passes;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.Gpu;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The GPU back end's runtime on emulated GPUs (the bundle's GPU kernels built for the host grid, memory reached
/// only through checked device addresses): models end to end against the CPU back end, with every logical device
/// on one GPU (collectives through the generated kernels) and with one GPU per device (collectives through the
/// NCCL communicator over the emulated NCCL); arrays staying on the GPU; every collective against the host's.
/// </summary>
public sealed class GpuBackendTests() : TempDirTest("mplc-gpu")
{
    /// <summary>Every example on emulated GPUs equals the CPU back end (training: every step's loss and the final
    /// parameters).</summary>
    [Theory]
    [InlineData("mlp.mpl", 1, new string[0])]
    [InlineData("mlp.mpl", 4, new string[0])]
    [InlineData("attention.mpl", 1, new string[0])]
    [InlineData("attention.mpl", 4, new string[0])]
    [InlineData("classifier.mpl", 1, new[] { "--steps", "2" })]
    [InlineData("classifier.mpl", 4, new[] { "--steps", "2" })]
    [InlineData("gpt.mpl", 1, new[] { "-D", "L=2", "--steps", "2" })]
    [InlineData("gpt.mpl", 8, new[] { "-D", "L=2", "--steps", "2" })]
    // ZeRO-1: reduce_scatter and all_gather over dp
    [InlineData("gpt.mpl", 8, new[] { "-D", "L=2", "--zero", "1", "--steps", "2" })]
    public void EveryExampleOnEmulatedGpusEqualsTheCpu(string example, int gpus, string[] extra)
    {
        NDArray[] Run(string backend, params string[] more)
        {
            string o = P($"{backend}{gpus}.npz");
            bool training = extra.Contains("--steps");
            var r = Mplc.Run([
                "run",
                Repo.Path("examples", example),
                "--backend",
                backend,
                "--seed",
                "5",
                "--out",
                o,
                .. training ? new[] { "--save-params", P($"{backend}{gpus}-params.npz") } : [],
                .. more,
                .. extra,
            ]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var arrays = ArrayFile.Read(o).OrderBy(kv => kv.Key).Select(kv => kv.Value.Array);
            if (training)
                arrays = arrays.Concat(
                    ArrayFile.Read(P($"{backend}{gpus}-params.npz")).OrderBy(kv => kv.Key).Select(kv => kv.Value.Array)
                );
            return arrays.ToArray();
        }
        var cpu = Run("cpu");
        var gpu = Run("cuda-emu", "--gpus", gpus.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(cpu.Length, gpu.Length);
        for (int i = 0; i < cpu.Length; i++)
        {
            double err = Distributed.MaxRelativeError(cpu[i], gpu[i]);
            Assert.True(err <= 1e-5, $"{example} on {gpus} emulated GPU(s): array {i} differs by {err:G3}");
        }
    }

    /// <summary>
    /// Between kernels arrays stay on the GPU: the host copies to the GPUs exactly what the simulated CPU devices copy
    /// in (inputs and parameters; plus the collective kernels' address tables) and copies back exactly what they
    /// copy out (results and updates); every array is freed by the end of the step.
    /// </summary>
    [Theory]
    [InlineData("mlp.mpl", 1)]
    [InlineData("gpt.mpl", 1)]
    [InlineData("gpt.mpl", 8)]
    public void ArraysStayOnTheGpuBetweenKernels(string example, int gpus)
    {
        string bundle = P(Path.ChangeExtension(example, ".mplc"));
        var r = Mplc.Run([
            "compile",
            Repo.Path("examples", example),
            "-o",
            bundle,
            .. example == "gpt.mpl" ? new[] { "-D", "L=1" } : [],
        ]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var b = Bundle.Open(bundle);
        var m = b.Manifest;
        var args = m.Inputs.Select(a => Initializers.RandomInput(a.DType, a.Shape, 1, a.Name, a.IntBound)).ToArray();
        var parameters = m.Params.ToDictionary(
            p => p.Path,
            p => Initializers.Create(p.Init, p.Std, p.DType, p.Shape, 1, p.Path)
        );

        using var lib = new HostKernelLibrary(b.PathOf("libkernels.so"));
        var cpuDevices = new SimulatedCpuDevice[m.PhysicalMesh.DeviceCount];
        using (
            var world = new InProcessDevices<NDArray>(
                new InProcessWorld(m.PhysicalMesh, TimeSpan.FromSeconds(60)),
                rank => cpuDevices[rank] = new SimulatedCpuDevice(rank)
            )
        )
            ProgramRunner.Run(m, b.Program(lib.Kernel), args, parameters, world, new Dictionary<string, NDArray>());

        using var gpu = GpuMachine.OpenEmulated(b.PathOf("libkernels-grid.so"), m.Kernels, gpus);
        var program = b.Program(n => new KernelRef(n));
        gpu.Run(m, program, args, parameters, TimeSpan.FromSeconds(60), new Dictionary<string, NDArray>(), null);
        var c = gpu.Gpus.Select(g => g.Counters).ToArray();
        Assert.Equal(cpuDevices.Sum(d => d.BytesCopiedIn), c.Sum(x => x.BytesToDevice - x.BytesOfAddressTables));
        Assert.Equal(cpuDevices.Sum(d => d.BytesCopiedOut), c.Sum(x => x.BytesToHost));
        // Nothing leaks: all the memory still allocated is kept for the next step, which allocates nothing new.
        Assert.All(gpu.Gpus.Zip(gpu.Pools), p => Assert.Equal(p.First.Counters.BytesInUse, p.Second.CachedBytes));
        Assert.True(c.Sum(x => x.Launches) > 0 && c.All(x => x.PeakBytes > 0));
        long allocations = c.Sum(x => x.Allocations);
        int groups = gpu.NcclGroups?.Count ?? 0;
        Assert.Equal(gpus > 1, groups > 0);
        gpu.Run(m, program, args, parameters, TimeSpan.FromSeconds(60), new Dictionary<string, NDArray>(), null);
        Assert.Equal(groups, gpu.NcclGroups?.Count ?? 0); // the communicators are kept, not made again
        // Threads that share a GPU's pool (devices sharing the GPU, or a pipeline message made on the sender's GPU
        // and freed by its receiver) may interleave differently and need a few more blocks at once.
        long more = c.Sum(x => x.Allocations) - allocations;
        Assert.True(
            more <= Math.Max(8, allocations / 10),
            $"the second step made {more} new allocations, the first {allocations}"
        );
        gpu.Dispose();
        Assert.All(c, x => Assert.Equal(0, x.BytesInUse));
    }

    /// <summary>The collective kernels' host-grid build, compiled once for the tests here.</summary>
    private static readonly Lazy<string> s_collectives = new(() =>
    {
        string so = Path.Combine(Directory.CreateTempSubdirectory("mplc-collectives").FullName, "libcollectives.so");
        KernelCompiler.BuildHostLibrary([], so, KernelTarget.HostGrid);
        return so;
    });

    /// <summary>
    /// Every collective over every group of a 2x2 mesh, for each dtype, on GPU arrays (one shared GPU, or a GPU per
    /// device through NCCL) equals the host communicator's result (<see cref="GpuCollectiveCheck"/>).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GpuCollectivesEqualTheHostOnes(bool nccl)
    {
        var mesh = GpuCollectiveCheck.Mesh;
        var timeout = TimeSpan.FromSeconds(30);
        using var library = new HostKernelLibrary(s_collectives.Value);
        var gpus = Enumerable.Range(0, nccl ? 4 : 1).Select(i => new EmulatedGpu(i, library)).ToArray();
        try
        {
            var heaps = gpus.Select(g => new GpuHeap(g)).ToArray();
            IDeviceWorld<GpuArray> world = nccl
                ? new NcclWorld(
                    mesh,
                    timeout,
                    new NcclGroups(new EmulatedNccl(gpus)),
                    heaps,
                    rank => new GpuDevice(
                        rank,
                        heaps[rank],
                        new GpuArrayOps(heaps[rank]),
                        new Dictionary<string, KernelInfo>()
                    )
                )
                : new InProcessDevices<GpuArray>(
                    new InProcessWorld<GpuArray>(mesh, timeout, new GpuArrayOps(heaps[0])),
                    rank => new GpuDevice(
                        rank,
                        heaps[0],
                        new GpuArrayOps(heaps[0]),
                        new Dictionary<string, KernelInfo>()
                    )
                );
            GpuCollectiveCheck.Run(world);
            world.Dispose();
            Assert.All(heaps, h => Assert.Equal(0, h.Live));
        }
        finally
        {
            foreach (var g in gpus)
                g.Dispose();
        }
    }

    /// <summary>Members of a group that disagree on an NCCL call, or one that never comes, fail instead of
    /// hanging.</summary>
    [Fact]
    public void EmulatedNcclRefusesMismatchesAndTimesOut()
    {
        var mesh = new DeviceMesh(["x"], [2]);
        using var library = new HostKernelLibrary(s_collectives.Value);
        var gpus = Enumerable.Range(0, 2).Select(i => new EmulatedGpu(i, library)).ToArray();
        try
        {
            var site = new CollectiveSite("dist.all_reduce", "m.mpl:3:5", 7);
            IDeviceWorld<GpuArray> World()
            {
                var heaps = gpus.Select(g => new GpuHeap(g)).ToArray();
                return new NcclWorld(
                    mesh,
                    TimeSpan.FromSeconds(0.5),
                    new NcclGroups(new EmulatedNccl(gpus)),
                    heaps,
                    rank => new GpuDevice(
                        rank,
                        heaps[rank],
                        new GpuArrayOps(heaps[rank]),
                        new Dictionary<string, KernelInfo>()
                    )
                );
            }
            var x = NDArray.FromFloats([2, 4], new float[8]);
            using (var world = World())
            {
                var e = Assert.Throws<CollectiveException>(() =>
                    world.Run(
                        (d, c) =>
                            c.Rank == 0
                                ? c.AllReduce(d.CopyIn(x), ["x"], ReduceKind.Sum, site)
                                : c.AllGather(d.CopyIn(x), ["x"], 0, site)
                    )
                );
                Assert.Matches(
                    @"^device \d \(x=\d\) in dist.all_reduce over \[x\] at step 7 \(m.mpl:3:5\): NCCL call mismatch: ",
                    e.Message
                );
                Assert.Contains("rank 0 called all_reduce(Sum, 8 x Float32)", e.Message);
                Assert.Contains("rank 1 called all_gather(8 x Float32)", e.Message);
            }
            using (var world = World())
            {
                var e = Assert.Throws<CollectiveTimeoutException>(() =>
                    world.Run((d, c) => c.Rank == 0 ? c.AllReduce(d.CopyIn(x), ["x"], ReduceKind.Sum, site) : null)
                );
                Assert.Equal(
                    "device 0 (x=0) in dist.all_reduce over [x] at step 7 (m.mpl:3:5): NCCL rank 0 waited "
                        + "0.5 s in all_reduce(Sum, 8 x Float32); ranks 1 never called it",
                    e.Message
                );
            }
        }
        finally
        {
            foreach (var g in gpus)
                g.Dispose();
        }
    }

    /// <summary>The emulated GPU refuses what a real one would fault on or corrupt, naming the GPU and the
    /// address.</summary>
    [Fact]
    public unsafe void AnEmulatedGpuRefusesBadAddresses()
    {
        using var library = new HostKernelLibrary(s_collectives.Value);
        using var gpu0 = new EmulatedGpu(0, library);
        using var gpu1 = new EmulatedGpu(1, library);
        var heap = new GpuHeap(gpu0);
        var ops = new GpuArrayOps(heap);
        var a = heap.Allocate(DType.F32, [4], zero: true);
        var other = new GpuHeap(gpu1).Allocate(DType.F32, [4], zero: true);
        var freed = heap.Allocate(DType.F32, [4], zero: true);
        heap.Free(freed);
        Assert.Contains("was already freed", Assert.Throws<InvalidOperationException>(() => ops.Copy(freed)).Message);
        Assert.Contains("was freed twice", Assert.Throws<InvalidOperationException>(() => heap.Free(freed)).Message);
        Assert.Contains(
            "is not in the memory of emulated-gpu:0",
            Assert.Throws<InvalidOperationException>(() => ops.Sum([a, other])).Message
        );
        // Arrays live in 256-byte blocks: a copy that runs past its block is outside.
        var e = Assert.Throws<InvalidOperationException>(() => gpu0.CopyOnDevice(a.Pointer, a.Pointer + 248, 16));
        Assert.Contains("emulated-gpu:0: device copy (source) of 16 bytes", e.Message);
        Assert.Contains("outside every live allocation", e.Message);
        e = Assert.Throws<InvalidOperationException>(() =>
            gpu0.Launch(
                CollectiveKernels.Shape(CollectiveKernels.CopyBlocks, 4),
                [a.Pointer, other.Pointer],
                [1, 4, 4, 0, 4, 0]
            )
        );
        Assert.Contains("kernel mpl_copy_blocks, parameter 1", e.Message);
        var host = new float[100];
        gpu0.CopyToHost(Unsafe(host), a.Pointer, 16);
        Assert.Throws<InvalidOperationException>(() => gpu0.CopyToHost(Unsafe(host), a.Pointer, 260));
        heap.Dispose();
        Assert.Equal(0, gpu0.Counters.BytesInUse);
    }

    private static unsafe void* Unsafe(float[] host) => System.Runtime.CompilerServices.Unsafe.AsPointer(ref host[0]);

    /// <summary>The collective kernels in PTX, checked with FileCheck: entries with global pointers then 64-bit sizes,
    /// the table read, f16 rounding.</summary>
    [Fact]
    public async Task CollectiveKernelsInPtx()
    {
        string ptx = KernelCompiler.Ptx([], "sm_80", collectives: true);
        string checks = string.Join(
            "\n",
            "CHECK-LABEL: .visible .entry mpl_sum_f32(",
            "CHECK-NEXT: .param .u64 mpl_sum_f32_param_0,",
            "CHECK-NEXT: .param .u64 mpl_sum_f32_param_1,",
            "CHECK-NEXT: .param .u64 mpl_sum_f32_param_2,",
            "CHECK-NEXT: .param .u64 mpl_sum_f32_param_3",
            "CHECK-DAG: ld.global.u64",
            "CHECK-DAG: add.rn.f32",
            "CHECK-DAG: st.global.{{[fu]}}32",
            "CHECK-LABEL: .visible .entry mpl_sum_f16(",
            "CHECK: add.rn.f32",
            "CHECK-NEXT: cvt.rn.f16.f32",
            "CHECK-LABEL: .visible .entry mpl_sum_bf16(",
            "CHECK-LABEL: .visible .entry mpl_sum_i32(",
            "CHECK: add.s32",
            "CHECK-LABEL: .visible .entry mpl_max_f32(",
            "CHECK-LABEL: .visible .entry mpl_max_i32(",
            "CHECK: max.s32",
            "CHECK-LABEL: .visible .entry mpl_copy_blocks(",
            "CHECK-COUNT-8: .param .u64",
            "CHECK: ld.global.u32",
            "CHECK: st.global.u32",
            "CHECK-NOT: .shared"
        );
        string file = P("collectives.check");
        File.WriteAllText(file, checks);
        var psi = new ProcessStartInfo("FileCheck-14")
        {
            RedirectStandardInput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(file);
        using var p = Process.Start(psi)!;
        await p.StandardInput.WriteAsync(ptx);
        p.StandardInput.Close();
        string err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, err);
    }

    /// <summary>mplrun runs a bundle on emulated GPUs and reports the host-GPU traffic with --profile; bad choices are
    /// input errors.</summary>
    [Fact]
    public void MplrunRunsABundleOnEmulatedGpus()
    {
        string bundle = P("mlp.mplc");
        Assert.Equal(0, Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "-o", bundle).ExitCode);
        var (o, e) = (new StringWriter(), new StringWriter());
        Assert.True(
            MplrunCli.Execute(
                [bundle, "--backend", "cuda-emu", "--gpus", "4", "--profile", "--repeat", "3", "--compare", "cpu"],
                o,
                e
            ) == 0,
            e.ToString()
        );
        // Every launch timed: the second matmul ran 3 times on each of the 4 devices.
        Assert.Contains("GPU best us", o.ToString());
        Assert.Matches(@"k2_matmul\s+12\s", o.ToString());
        Assert.Contains(
            "compare: cuda-emu equals cpu within 0.0001: 1 array(s), largest relative difference",
            o.ToString()
        );
        Assert.Contains(
            "note: 4 device(s) on emulated-gpu:0, emulated-gpu:1, emulated-gpu:2, emulated-gpu:3 "
                + "(collectives through NCCL)",
            e.ToString()
        );
        Assert.Matches(@"emulated-gpu:3: \d+ launches, \d+ bytes to the GPU, \d+ bytes to the host", o.ToString());
        (o, e) = (new StringWriter(), new StringWriter());
        Assert.True(
            MplrunCli.Execute([bundle, "--backend", "cuda-emu", "--gpus", "4", "--check-collectives"], o, e) == 0,
            o.ToString() + e
        );
        Assert.Contains("collectives, 4 devices sharing emulated-gpu:0: 184 cases equal the host's", o.ToString());
        Assert.Contains(
            "collectives, 4 devices on emulated-gpu:0, emulated-gpu:1, emulated-gpu:2, emulated-gpu:3 "
                + "through NCCL: 184 cases equal the host's",
            o.ToString()
        );
        (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(1, MplrunCli.Execute([bundle, "--check-collectives"], o, e));
        Assert.Contains("error: --check-collectives checks the collectives of a GPU back end", e.ToString());
        (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(1, MplrunCli.Execute([bundle, "--backend", "cuda-emu", "--gpus", "0"], o, e));
        Assert.Contains("error: --gpus must be at least 1, got 0", e.ToString());
        (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(1, MplrunCli.Execute([bundle, "--compare", "interp"], o, e));
        Assert.Contains("error: --compare takes 'cpu'", e.ToString());
        (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(1, MplrunCli.Execute([bundle, "--steps", "2"], o, e));
        Assert.Contains(
            "error: --steps needs a training model (a 'train MODEL optimizer ...' declaration); --repeat "
                + "runs a forward model again",
            e.ToString()
        );
        var bad = Mplc.Run("run", Repo.Path("examples", "mlp.mpl"), "--gpus", "2");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("error: --gpus applies to --backend cuda and cuda-emu", bad.Stderr);
    }
}
