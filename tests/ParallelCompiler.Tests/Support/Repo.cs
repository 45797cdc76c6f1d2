namespace ParallelCompiler.Tests.Support;

/// <summary>Finds files of the repository (examples, oracle scripts) from wherever the test binaries were
/// built.</summary>
public static class Repo
{
    private static readonly Lazy<string> RootDir = new(FindRoot);

    /// <summary>The folder holding ParallelCompiler.sln.</summary>
    public static string Root => RootDir.Value;

    /// <summary>A path below <see cref="Root"/>: <c>Repo.Path("examples", "mlp.mpl")</c>.</summary>
    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "ParallelCompiler.sln")))
                return dir.FullName;
        throw new InvalidOperationException(
            $"no folder above {AppContext.BaseDirectory} contains ParallelCompiler.sln"
        );
    }
}
