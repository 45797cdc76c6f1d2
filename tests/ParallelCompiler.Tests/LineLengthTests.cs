using System.Text.RegularExpressions;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests;

/// <summary>
/// Every source and documentation file of the repository keeps to the width .editorconfig states
/// (<c>max_line_length</c>). CSharpier formats the C# to that width (<c>./build.sh test</c> runs
/// <c>dotnet csharpier check .</c>); this test holds the rest, and the lines CSharpier cannot break (a long string
/// or comment), to it as well.
/// </summary>
public class LineLengthTests
{
    /// <summary>Folders never read: build outputs, installed packages, version control.</summary>
    private static readonly HashSet<string> Skipped = ["bin", "obj", "node_modules", ".git", "TestResults", "out"];

    /// <summary>Files that tools write, not people: the solution (<c>dotnet sln</c>) and npm's lock file.</summary>
    private static readonly HashSet<string> Generated = ["ParallelCompiler.sln", "package-lock.json"];

    private static readonly string[] Text =
    [
        ".cs",
        ".md",
        ".mpl",
        ".mplir",
        ".sh",
        ".ps1",
        ".py",
        ".c",
        ".h",
        ".json",
        ".csproj",
        ".props",
        ".g4",
        ".editorconfig",
        ".gitignore",
        "",
    ];

    [Fact]
    public void EditorconfigStatesTheWidth() => Assert.Equal(120, MaxLineLength());

    [Fact]
    public void EveryLineFits()
    {
        int max = MaxLineLength();
        var files = Files(Repo.Root).ToList();
        Assert.Contains(files, f => f.EndsWith(".cs", StringComparison.Ordinal));
        Assert.Contains(files, f => f.EndsWith(".md", StringComparison.Ordinal));
        var wide = new List<string>();
        foreach (var f in files)
        {
            int n = 0;
            foreach (var line in File.ReadLines(f))
            {
                n++;
                if (line.Length > max)
                    wide.Add($"{Path.GetRelativePath(Repo.Root, f)}:{n}: {line.Length} characters");
            }
        }
        Assert.True(wide.Count == 0, $"{wide.Count} line(s) wider than {max}:\n" + string.Join("\n", wide.Take(50)));
    }

    [Fact]
    public void AWideLineIsFound()
    {
        string dir = Directory.CreateTempSubdirectory("mpl-width-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "a.md"), new string('x', 121) + "\n");
            File.WriteAllText(Path.Combine(dir, "b.npy"), new string('x', 500));
            Directory.CreateDirectory(Path.Combine(dir, "obj"));
            File.WriteAllText(Path.Combine(dir, "obj", "c.cs"), new string('x', 500));
            var files = Files(dir).ToList();
            Assert.Equal([Path.Combine(dir, "a.md")], files);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static int MaxLineLength()
    {
        var m = Regex.Match(
            File.ReadAllText(Repo.Path(".editorconfig")),
            @"^\s*max_line_length\s*=\s*(\d+)",
            RegexOptions.Multiline
        );
        Assert.True(m.Success, ".editorconfig states no max_line_length");
        return int.Parse(m.Groups[1].Value);
    }

    private static IEnumerable<string> Files(string dir)
    {
        foreach (var f in Directory.GetFiles(dir).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(f);
            if (!Generated.Contains(name) && Text.Contains(Path.GetExtension(name)) && !IsBinary(f))
                yield return f;
        }
        foreach (var d in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
            if (!Skipped.Contains(Path.GetFileName(d)))
                foreach (var f in Files(d))
                    yield return f;
    }

    private static bool IsBinary(string path)
    {
        using var s = File.OpenRead(path);
        var head = new byte[4096];
        int n = s.Read(head, 0, head.Length);
        return Array.IndexOf(head, (byte)0, 0, n) >= 0;
    }
}
