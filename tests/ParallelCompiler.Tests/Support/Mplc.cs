using ParallelCompiler.Driver;

namespace ParallelCompiler.Tests.Support;

/// <summary>Runs the mplc command line in-process on a thread with the same large stack as the real
/// executable.</summary>
public static class Mplc
{
    /// <summary>The exit code and everything printed.</summary>
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs mplc with <paramref name="args"/>.</summary>
    public static Result Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = -1;
        var t = new Thread(() => code = Cli.Main(args, o, e), 512 * 1024 * 1024);
        t.Start();
        if (!t.Join(TimeSpan.FromSeconds(120)))
            throw new TimeoutException($"mplc {string.Join(" ", args)} did not " + $"finish in 120 s");
        return new Result(code, o.ToString(), e.ToString());
    }

    /// <summary>Writes <paramref name="source"/> to a temporary .mpl file and compiles it.</summary>
    public static Result CompileSource(string source, params string[] extra)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-test").FullName;
        string path = Path.Combine(dir, "t.mpl");
        File.WriteAllText(path, source);
        try
        {
            return Run(["compile", path, .. extra]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
