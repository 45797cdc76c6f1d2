using System.Diagnostics;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>Open MPI's launcher, and the examples compiled once for the MPI tests.</summary>
public sealed class MpiJobs : IDisposable
{
    /// <summary>Why the MPI tests skip, or null where <c>mpirun</c> is on the PATH.</summary>
    public static string? Missing { get; } =
        (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':')
            .Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "mpirun")))
            ? null
            : "mpirun (Open MPI) is not installed: ./build.sh installs it";

    /// <summary>A folder of this fixture's files.</summary>
    public string Dir { get; } = Directory.CreateTempSubdirectory("mplc-mpi").FullName;

    private readonly Dictionary<string, string> _bundles = [];

    /// <summary>The bundle of <paramref name="example"/> compiled with <paramref name="options"/> (once).</summary>
    public string Bundle(string example, params string[] options)
    {
        string key = $"{example} {string.Join(" ", options)}";
        lock (_bundles)
        {
            if (_bundles.TryGetValue(key, out var b))
                return b;
            b = Path.Combine(Dir, $"b{_bundles.Count}.mplc");
            var r = Mplc.Run(["compile", Repo.Path("examples", example), "-o", b, .. options]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return _bundles[key] = b;
        }
    }

    /// <summary>
    /// Runs <c>mpirun -np <paramref name="np"/> bin/mplrun ARGS</c>; <paramref name="whileRunning"/>, when given,
    /// gets the launcher's process id once it has started and what the job has written to stderr so far. The exit
    /// code, stdout and stderr, and how long it took.
    /// </summary>
    public static (int Code, string Out, string Err, TimeSpan Took) Run(
        int np,
        string[] args,
        Action<int, Func<string>>? whileRunning = null,
        string program = "mplrun",
        params (string Name, string Value)[] env
    )
    {
        var psi = new ProcessStartInfo("mpirun")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "-np", $"{np}", Repo.Path("bin", program) })
            psi.ArgumentList.Add(a);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["TERM"] = "dumb";
        foreach (var (name, value) in env)
            psi.Environment[name] = value;
        var clock = Stopwatch.StartNew();
        using var p = new Process { StartInfo = psi };
        var err = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data != null)
                lock (err)
                    err.AppendLine(e.Data);
        };
        p.Start();
        p.BeginErrorReadLine();
        var output = p.StandardOutput.ReadToEndAsync();
        whileRunning?.Invoke(
            p.Id,
            () =>
            {
                lock (err)
                    return err.ToString();
            }
        );
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(true);
            throw new TimeoutException($"mpirun -np {np} mplrun {string.Join(" ", args)} did not finish in 2 min");
        }
        p.WaitForExit();
        lock (err)
            return (p.ExitCode, output.Result, err.ToString(), clock.Elapsed);
    }

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(Dir, true);
}

/// <summary>A fact that skips, saying why, where Open MPI is missing.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    /// <summary>Skips without mpirun.</summary>
    public MpiFactAttribute() => Skip = MpiJobs.Missing;
}

/// <summary>A theory that skips, saying why, where Open MPI is missing.</summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips without mpirun.</summary>
    public MpiTheoryAttribute() => Skip = MpiJobs.Missing;
}

/// <summary>
/// <c>mplrun</c> as the processes of an MPI job (one device each, or several as threads) against the in-process run
/// of the same bundle: every collective meets in process, then across the processes, and reduces in group order as
/// the in-process path does, so the results, losses and trained parameters are equal bit for bit. Bad process counts
/// and a killed rank are clear errors, never a hang.
/// </summary>
public sealed class MpiTests(MpiJobs jobs) : IClassFixture<MpiJobs>
{
    /// <summary>Each example (forward and training, ZeRO-1, a 1F1B pipeline) on 2 and 4 processes, one device a
    /// process or several (4 and 8 devices on 2 processes, 8 on 4).</summary>
    [MpiTheory]
    [InlineData("mlp.mpl", "", 2, 1)]
    [InlineData("classifier.mpl", "", 2, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=2,tp=2", 2, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=2,tp=2 --zero 1", 4, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=1,tp=2", 2, 2)]
    [InlineData("mlp.mpl", "", 4, 1)]
    [InlineData("mlp.mpl", "dp=2,tp=1", 2, 1)]
    [InlineData("attention.mpl", "", 4, 1)]
    [InlineData("classifier.mpl", "", 4, 2)]
    [InlineData("classifier.mpl", "dp=2,tp=1 --zero 1", 2, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=1,tp=2", 4, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=2,tp=1 --zero 1", 4, 2)]
    [InlineData("attention.mpl", "", 2, 1)]
    [InlineData("gpt_sp.mpl", "", 2, 2)]
    [InlineData("gpt_sp.mpl", "", 4, 2)]
    [InlineData("gpt.mpl", "pp=2,dp=2,tp=2 --zero 3", 4, 2)]
    [InlineData("gpt_sp.mpl", "dp=2,tp=2 --zero 2", 2, 2)]
    public void AJobEqualsTheInProcessRunBitForBit(string example, string options, int np, int steps)
    {
        var parts = options.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string[] compile = [.. parts.Length > 0 ? new[] { "--mesh", parts[0] } : [], .. parts.Skip(1)];
        if (example is "gpt.mpl" or "gpt_sp.mpl")
            compile = [.. compile, "-D", "L=2"];
        string bundle = jobs.Bundle(example, compile);
        string tag = $"{Path.GetFileNameWithoutExtension(bundle)}-{np}";
        string[] Args(string who) =>
            [
                bundle,
                "--out",
                Path.Combine(jobs.Dir, $"{tag}-{who}-out.npz"),
                .. steps > 1
                    ? new[] { "--steps", $"{steps}", "--save-params", Path.Combine(jobs.Dir, $"{tag}-{who}-p.npz") }
                    : [],
            ];
        var local = MplrunInProcess.Run(Args("local"));
        Assert.True(local.Code == 0, local.Err);
        var job = MpiJobs.Run(np, Args("mpi"));
        Assert.True(job.Code == 0, job.Err + job.Out);
        Assert.Contains($"{np} MPI processes", job.Err);
        // The first line: the loss of a training run, the result's type of a forward one (then the files written).
        Assert.Contains(local.Out.Split('\n')[0].Trim(), job.Out);
        foreach (var file in steps > 1 ? new[] { "out", "p" } : ["out"])
            SameArrays(
                Path.Combine(jobs.Dir, $"{tag}-local-{file}.npz"),
                Path.Combine(jobs.Dir, $"{tag}-mpi-{file}.npz")
            );
    }

    /// <summary><c>mplrun --check-collectives</c> under mpirun: every collective over each axis of dp=2,tp=2 and over
    /// both, every dtype, reduced from one allgather and shared out, all_gather, all_to_all and permutes, through 4
    /// processes (one device each: the direct blocking calls) and 2 (two devices each: the gathering path) equals the
    /// in-process world's result bit for bit.</summary>
    [MpiTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void EveryCollectiveOverMpiEqualsTheInProcessOne(int np)
    {
        var job = MpiJobs.Run(np, [jobs.Bundle("mlp.mpl"), "--check-collectives"]);
        Assert.True(job.Code == 0, job.Err + job.Out);
        Assert.Matches(
            $"[0-9]+ collective cases over {np} MPI processes, mesh dp=2,tp=2: every result equals the in-process one",
            job.Out
        );
        Assert.DoesNotContain("differs", job.Out);
    }

    /// <summary><c>mplc run</c> under mpirun: every process compiles the model and runs its share of the devices;
    /// the trained parameters equal the one-process run's bit for bit.</summary>
    [MpiFact]
    public void MplcRunIsAnMpiJobToo()
    {
        string[] Args(string p) =>
            [
                "run",
                Repo.Path("examples", "classifier.mpl"),
                "--mesh",
                "dp=2,tp=2",
                "--steps",
                "2",
                "--save-params",
                Path.Combine(jobs.Dir, p),
            ];
        var local = Mplc.Run(Args("mplc-local.npz"));
        Assert.True(local.ExitCode == 0, local.Stderr);
        var job = MpiJobs.Run(2, Args("mplc-mpi.npz"), program: "mplc");
        Assert.True(job.Code == 0, job.Err + job.Out);
        SameArrays(Path.Combine(jobs.Dir, "mplc-local.npz"), Path.Combine(jobs.Dir, "mplc-mpi.npz"));
    }

    /// <summary>A process count that does not divide the mesh's devices, or whose share of devices is not a block of
    /// the mesh, fails on every rank before any collective (each rank that prints before the launcher ends the job
    /// says why).</summary>
    [MpiTheory]
    [InlineData(3, "", "3 processes cannot share the 4 device(s) of mesh dp=2,tp=2")]
    [InlineData(3, "dp=2,tp=3", "3 processes cannot split mesh dp=2,tp=3: each would run 2 consecutive devices")]
    public void ABadProcessCountIsAnErrorOnEveryRank(int np, string mesh, string message)
    {
        string bundle =
            mesh.Length == 0
                ? jobs.Bundle("mlp.mpl")
                : jobs.Bundle("mlp.mpl", "--mesh", mesh, "-D", "D=48", "-D", "B=6");
        var job = MpiJobs.Run(np, [bundle]);
        Assert.NotEqual(0, job.Code);
        int errors = job.Err.Split('\n').Count(l => l.StartsWith("error: " + message, StringComparison.Ordinal));
        // The first rank to exit makes the launcher end the rest, so some may not get to print theirs.
        Assert.True(errors >= 1, job.Err);
        Assert.DoesNotContain("internal error", job.Err);
        Assert.DoesNotContain("   at ", job.Err);
    }

    /// <summary>A rank killed mid-run ends the job at once: the launcher names the dead rank and every other rank
    /// says which collective or receive it was waiting in.</summary>
    [MpiFact]
    public void AKilledRankEndsTheJobNamingTheRankAndTheOps()
    {
        string bundle = jobs.Bundle("gpt.mpl", "--mesh", "pp=2,dp=1,tp=2", "-D", "L=2");
        var sinceKill = new Stopwatch();
        var job = MpiJobs.Run(
            4,
            [bundle, "--steps", "500", "--collective-timeout", "20"],
            (launcher, err) =>
            {
                // Once the job is two steps in (every rank past MPI's start), kill the second rank's process.
                var clock = Stopwatch.StartNew();
                while (!err().Contains("step 2/500", StringComparison.Ordinal) && clock.Elapsed.TotalSeconds < 60)
                    Thread.Sleep(100);
                var children = Children(launcher);
                Assert.True(children.Count == 4, $"the job has {children.Count} processes:\n{err()}");
                Process.GetProcessById(children[1]).Kill();
                sinceKill.Start();
            }
        );
        Assert.NotEqual(0, job.Code);
        Assert.True(sinceKill.Elapsed < TimeSpan.FromSeconds(30), $"the job ended {sinceKill.Elapsed} after the kill");
        Assert.Contains("exited on signal 9", job.Err + job.Out);
        Assert.Contains("was stopped by the MPI launcher while waiting in ", job.Err);
        Assert.DoesNotContain("internal error", job.Err);
    }

    private static List<int> Children(int parent) =>
        [
            .. Directory
                .EnumerateDirectories("/proc")
                .Select(d => int.TryParse(Path.GetFileName(d), out int pid) ? pid : -1)
                .Where(pid => pid > 0 && ParentOf(pid) == parent)
                .Order(),
        ];

    private static int ParentOf(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return -1;
        }
    }

    internal static void SameArrays(string expectedPath, string actualPath)
    {
        var expected = ArrayFile.Read(expectedPath);
        var actual = ArrayFile.Read(actualPath);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (key, e) in expected)
        {
            var a = actual[key].Array;
            Assert.Equal(e.Array.TypeString, a.TypeString);
            if (e.Array.F is { } f)
                Assert.True(
                    f.Select(BitConverter.SingleToInt32Bits).SequenceEqual(a.F!.Select(BitConverter.SingleToInt32Bits)),
                    $"{key} differs"
                );
            else
                Assert.Equal(e.Array.I!, a.I!);
        }
    }
}
