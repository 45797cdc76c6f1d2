using System.Diagnostics;

namespace ParallelCompiler.Tests.Support;

/// <summary>Runs scripts with the system Python, which has numpy: the oracle for the array file formats.</summary>
public static class Python
{
    /// <summary>The interpreter the tests use.</summary>
    public const string Exe = "/usr/bin/python3";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    // Checked once: a missing numpy should fail every oracle test with one clear message, not a traceback each.
    private static readonly Lazy<string?> Problem = new(FindProblem);

    /// <summary>
    /// Runs <paramref name="script"/> with <c>python3 -c</c>; <paramref name="args"/> become sys.argv[1:].
    /// Throws if Python or numpy is unavailable or the script runs longer than 60 s.
    /// </summary>
    public static (int ExitCode, string Stdout, string Stderr) Run(string script, params string[] args)
    {
        if (Problem.Value is { } problem)
            throw new InvalidOperationException(problem);
        return RunRaw(script, args);
    }

    /// <summary>Runs <paramref name="script"/> and fails with its output unless it exits with 0; returns
    /// stdout.</summary>
    public static string RunOk(string script, params string[] args)
    {
        var (code, stdout, stderr) = Run(script, args);
        if (code != 0)
            throw new Xunit.Sdk.XunitException(
                $"python exited with {code}\n--- stdout ---\n{stdout}\n--- stderr " + $"---\n{stderr}"
            );
        return stdout;
    }

    private static string? FindProblem()
    {
        if (!File.Exists(Exe))
            return $"{Exe} is missing: the array file tests need Python 3 with numpy as their oracle";
        var (code, _, stderr) = RunRaw("import numpy", []);
        return code == 0 ? null : $"{Exe} cannot import numpy (install python3-numpy): {stderr.Trim()}";
    }

    private static (int, string, string) RunRaw(string script, string[] args)
    {
        var psi = new ProcessStartInfo(Exe)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {Exe}");
        // Both pipes are drained concurrently so that a chatty script cannot block on a full buffer.
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(Timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"python did not finish within {Timeout.TotalSeconds} s");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
