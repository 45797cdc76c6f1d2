namespace ParallelCompiler.Tests.Support;

/// <summary>A test class with a temporary directory of its own, removed when the test ends.</summary>
public abstract class TempDirTest(string prefix) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory(prefix).FullName;

    /// <summary>A path in the directory.</summary>
    protected string P(string name) => Path.Combine(_dir, name);

    /// <summary>Removes the directory.</summary>
    public void Dispose()
    {
        Directory.Delete(_dir, true);
        GC.SuppressFinalize(this);
    }
}
