using ParallelCompiler.Mplrun;

namespace ParallelCompiler.Tests.Support;

/// <summary>Runs the <c>mplrun</c> command line in this process, its output captured.</summary>
public static class MplrunInProcess
{
    /// <summary>The exit code, stdout and stderr of <c>mplrun ARGS</c>.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        int code = MplrunCli.Execute(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
