using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Mpi;

namespace ParallelCompiler.Bench;

/// <summary>
/// The runtime's MPI path against Open MPI: all-reduce (f32 sum) of the same buffer sizes at 4 ranks, the runtime's
/// through <see cref="MpiLink"/> under an in-process world of one device a process (what <c>mplrun</c> runs), Open
/// MPI's from tests/Bench/mpi/allreduce.c built with mpicc; and a training step of examples/gpt.mpl on 8 processes
/// against the in-process run of the same bundle. Figures go in docs/PERFORMANCE.md.
/// </summary>
internal static class MpiBench
{
    private static readonly long[] Sizes = [4 << 10, 64 << 10, 1 << 20, 16 << 20];

    // The warm-up before the timed calls, on both sides (tests/Bench/mpi/allreduce.c has the same figures).
    private const int WarmUpCalls = 1000,
        WarmUpPauseMs = 500;

    /// <summary>Runs both comparisons from the repository root <paramref name="root"/>.</summary>
    public static void Run(string root, int ranks, int steps)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-mpibench").FullName;
        string c = Path.Combine(dir, "allreduce");
        Shell("mpicc", ["-O2", "-o", c, Path.Combine(root, "tests", "Bench", "mpi", "allreduce.c")]);
        string[] sizes = [.. Sizes.Select(s => s.ToString(CultureInfo.InvariantCulture))];
        var theirs = Times(Shell("mpirun", [.. Launch(ranks), c, .. sizes]));
        string self = Environment.ProcessPath!;
        string[] me = self.EndsWith("dotnet", StringComparison.Ordinal)
            ? [self, typeof(MpiBench).Assembly.Location]
            : [self];
        // The runtime's ranks run under mplrun's runtime settings (runtime/Mplrun/Mplrun.csproj).
        var ours = Times(Shell("mpirun", [.. Launch(ranks), .. MplrunSettings, .. me, "mpi-rank", .. sizes]));
        Console.WriteLine($"all-reduce f32 sum at {ranks} ranks (mean s a call, slowest rank; GB/s = bytes / s)");
        Console.WriteLine("      bytes   Open MPI us   GB/s   runtime us   GB/s   runtime/Open MPI");
        foreach (long s in Sizes)
            Console.WriteLine(
                $"{s, 11} {theirs[s] * 1e6, 13:F1} {s / theirs[s] / 1e9, 6:F2} {ours[s] * 1e6, 12:F1} "
                    + $"{s / ours[s] / 1e9, 6:F2} {theirs[s] / ours[s], 18:F2}x"
            );
        Gpt(root, dir, steps);
        Directory.Delete(dir, true);
    }

    /// <summary>One rank of the runtime's side (under mpirun): prints, on rank 0, the seconds a call takes for each
    /// size in <paramref name="sizes"/>.</summary>
    public static void Rank(IEnumerable<string> sizes)
    {
        var launch = MpiProcess.FromEnvironment() ?? throw new InvalidOperationException("not under mpirun");
        using var process = MpiProcess.Start(launch);
        var mesh = new DeviceMesh(["x"], [launch.Size]);
        var timeout = TimeSpan.FromSeconds(60);
        using var link = new MpiLink(mesh, timeout);
        string[] axes = ["x"];
        // As a training run's later steps do, the timed calls run the code that the JIT has optimised: two rounds of
        // warm-up calls, each followed by a pause in which the background compilation finishes (its thread would
        // otherwise take a core from a rank in the timed calls). allreduce.c warms up alike.
        var warm = NDArray.FromFloats([1024], new float[1024]);
        for (int round = 0; round < 2; round++)
        {
            using var world = new InProcessWorld<NDArray>(mesh, timeout, HostArrayOps.Instance, link);
            world.Run(
                (rank, comm) =>
                {
                    var site = new CollectiveSite("warm-up", "", 0);
                    for (int w = 0; w < WarmUpCalls; w++)
                        HostBuffers.Return(comm.AllReduce(warm, axes, ReduceKind.Sum, site));
                    return 0;
                }
            );
            Thread.Sleep(WarmUpPauseMs);
        }
        foreach (long bytes in sizes.Select(s => long.Parse(s, CultureInfo.InvariantCulture)))
        {
            int n = (int)(bytes / 4),
                repeat = (int)Math.Clamp(64L * 1024 * 1024 / bytes, 5, 200);
            var x = NDArray.FromFloats([n], [.. Enumerable.Range(0, n).Select(i => (float)(launch.Rank + i % 7))]);
            using var world = new InProcessWorld<NDArray>(mesh, timeout, HostArrayOps.Instance, link);
            var worst = world.Run(
                (rank, comm) =>
                {
                    var site = new CollectiveSite("bench", "", 0);
                    // Each result dies at once; the executor gives it back at its last use, as here.
                    for (int w = 0; w < 3; w++)
                        HostBuffers.Return(comm.AllReduce(x, axes, ReduceKind.Sum, site));
                    var clock = Stopwatch.StartNew();
                    for (int r = 0; r < repeat; r++)
                        HostBuffers.Return(comm.AllReduce(x, axes, ReduceKind.Sum, site));
                    double t = clock.Elapsed.TotalSeconds / repeat;
                    return comm.AllReduce(NDArray.FromFloats([1], [(float)t]), axes, ReduceKind.Max, site).F![0];
                }
            )[0];
            if (launch.Rank == 0)
                Console.WriteLine($"{bytes} {worst.ToString("F9", CultureInfo.InvariantCulture)}");
        }
    }

    // A training step of examples/gpt.mpl on 8 devices: in process, and one process a device.
    private static void Gpt(string root, string dir, int steps)
    {
        string bundle = Path.Combine(dir, "gpt.mplc");
        string bin = Path.Combine(root, "bin");
        Shell(
            Path.Combine(bin, "mplc"),
            ["compile", Path.Combine(root, "examples", "gpt.mpl"), "--mesh", "pp=2,dp=2,tp=2", "-o", bundle]
        );
        string[] run = [bundle, "--steps", $"{steps}"];
        double local = StepMs(Shell(Path.Combine(bin, "mplrun"), run, stderr: true));
        double mpi = StepMs(Shell("mpirun", [.. Launch(8), Path.Combine(bin, "mplrun"), .. run], stderr: true));
        Console.WriteLine(
            $"gpt.mpl training step, mesh pp=2,dp=2,tp=2 (8 devices), median of steps 2..{steps}: in process "
                + $"{local:F1} ms, mpirun -np 8 {mpi:F1} ms ({local / mpi:F2}x)"
        );
    }

    private static double StepMs(string log)
    {
        var ms = log.Split('\n')
            .Where(l =>
                l.StartsWith("step ", StringComparison.Ordinal) && !l.StartsWith("step 1/", StringComparison.Ordinal)
            )
            .Select(l => double.Parse(l.Split("  ")[2].Split(' ')[0], CultureInfo.InvariantCulture))
            .Order()
            .ToList();
        return ms[ms.Count / 2];
    }

    // mplrun's TieredCompilation and ConcurrentGarbageCollection (false both), as environment for a rank of this bench.
    private static readonly string[] MplrunSettings =
    [
        "-x",
        "DOTNET_TieredCompilation=0",
        "-x",
        "DOTNET_gcConcurrent=0",
    ];

    private static string[] Launch(int np) => ["--allow-run-as-root", "--oversubscribe", "-np", $"{np}"];

    private static Dictionary<long, double> Times(string output) =>
        output
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' '))
            .Where(f => f.Length == 2 && long.TryParse(f[0], out _))
            .ToDictionary(
                f => long.Parse(f[0], CultureInfo.InvariantCulture),
                f => double.Parse(f[1], CultureInfo.InvariantCulture)
            );

    private static string Shell(string file, string[] args, bool stderr = false)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["TERM"] = "dumb"; // no terminal escapes in what is parsed
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(" ", args)} failed:\n{err.Result}{output}");
        return stderr ? err.Result + output : output;
    }
}
