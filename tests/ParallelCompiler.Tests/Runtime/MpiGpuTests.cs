using System.Diagnostics;
using ParallelCompiler.Tests.Backend;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>
/// <c>mplrun --backend cuda</c> as the processes of an MPI job, on the stand-in driver and NCCL (tests/standin/):
/// each process takes GPUs of its node by its node-local rank, groups that span processes make their NCCL
/// communicators with <c>ncclCommInitRank</c> from a unique id sent over MPI, and pipeline messages between processes
/// go through NCCL's send and receive, grouped with the next receive (the stand-in's sends wait for their receives,
/// so 1F1B's sends in both directions would hang otherwise). The results, losses and trained parameters equal the
/// one-process run of the same bundle through NCCL bit for bit.
/// </summary>
public sealed class MpiGpuTests(MpiJobs jobs) : IClassFixture<MpiJobs>
{
    private static readonly Lazy<string> s_library = new(() =>
        CudaStandIn.BuildLibrary(Path.Combine(Directory.CreateTempSubdirectory("mplc-mpi-standin").FullName, "lib.so"))
    );

    private (string Name, string Value)[] Env(string bundle, int gpus) =>
        [
            ("MPLC_CUDA_LIBRARY", s_library.Value),
            ("MPLC_NCCL_LIBRARY", s_library.Value),
            ("MPLC_STANDIN_GPUS", $"{gpus}"),
            ("MPLC_STANDIN_GRID", Path.Combine(bundle, "libkernels-grid.so")),
            ("MPLC_STANDIN_TIMEOUT", "30"),
            ("MPLC_STANDIN_DIR", jobs.Dir),
        ];

    /// <summary>Forward (2 devices a process) and training with a 1F1B pipeline whose stages are in different
    /// processes (4 devices a process, and 2).</summary>
    [MpiTheory]
    [InlineData("mlp.mpl", 2, 1)]
    [InlineData("gpt.mpl", 2, 2)]
    [InlineData("gpt.mpl", 4, 2)]
    public void AGpuJobEqualsTheOneProcessNcclRunBitForBit(string example, int np, int steps)
    {
        string[] compile = example == "gpt.mpl" ? ["--gpu", "sm_80", "-D", "L=2"] : ["--gpu", "sm_80"];
        string bundle = jobs.Bundle(example, compile);
        int devices = example == "gpt.mpl" ? 8 : 4;
        string tag = $"gpu-{Path.GetFileNameWithoutExtension(bundle)}-{np}";
        string[] Args(string who) =>
            [
                bundle,
                "--backend",
                "cuda",
                "--out",
                Path.Combine(jobs.Dir, $"{tag}-{who}-out.npz"),
                .. steps > 1
                    ? new[] { "--steps", $"{steps}", "--save-params", Path.Combine(jobs.Dir, $"{tag}-{who}-p.npz") }
                    : [],
            ];
        var local = Mplrun([.. Args("local"), "--gpus", $"{devices}"], Env(bundle, devices));
        Assert.True(local.Code == 0, local.Err);
        Assert.Contains("(collectives through NCCL)", local.Err);
        var job = MpiJobs.Run(np, Args("mpi"), env: Env(bundle, devices));
        Assert.True(job.Code == 0, job.Err + job.Out);
        Assert.Contains($"process 0: device(s) 0 to {devices / np - 1} on cuda:0", job.Err);
        Assert.Contains($"collectives through NCCL across {np} processes", job.Err);
        Assert.Contains(local.Out.Split('\n')[0].Trim(), job.Out);
        foreach (var file in steps > 1 ? new[] { "out", "p" } : ["out"])
            MpiTests.SameArrays(
                Path.Combine(jobs.Dir, $"{tag}-local-{file}.npz"),
                Path.Combine(jobs.Dir, $"{tag}-mpi-{file}.npz")
            );
        // Every communicator's folder is removed when the communicators are destroyed.
        Assert.Empty(Directory.EnumerateDirectories(jobs.Dir, "mplc-nccl-*"));
    }

    /// <summary>A node without GPUs for every process: the process short of them says which it needs, exit 1.</summary>
    [MpiFact]
    public void TooFewGpusOnTheNodeIsAnError()
    {
        string bundle = jobs.Bundle("mlp.mpl", "--gpu", "sm_80");
        var job = MpiJobs.Run(2, [bundle, "--backend", "cuda"], env: Env(bundle, 2));
        Assert.NotEqual(0, job.Code);
        Assert.Contains(
            "error: process 1 of 2 is process 1 of 2 on its node and runs 2 device(s) on GPUs 2 to 3, but the node "
                + "has 2 GPU(s)",
            job.Err
        );
        Assert.DoesNotContain("   at ", job.Err);
    }

    private static (int Code, string Out, string Err) Mplrun(string[] args, (string Name, string Value)[] env)
    {
        var psi = new ProcessStartInfo(Repo.Path("bin", "mplrun"))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        foreach (var (name, value) in env)
            psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(true);
            throw new TimeoutException($"mplrun {string.Join(" ", args)} did not finish");
        }
        return (p.ExitCode, output, err.Result);
    }
}
