using System.Text.RegularExpressions;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests;

/// <summary>
/// The dependency order of the source folders, as docs/architecture.md states it: a file may use its own folder
/// and the folders before it, never one after it; the runtime uses none of the compiler's. Read from the text of
/// every file (its <c>using</c> lines and its qualified names, comments and strings left out), so the next cycle
/// fails here the day it is written.
/// </summary>
public static partial class Layering
{
    /// <summary>The compiler's folders, lowest first.</summary>
    public static readonly string[] Order =
    [
        "Syntax",
        "IR",
        "Dialects",
        "Lowering",
        "Analysis",
        "Interp",
        "Kernels",
        "Passes",
        "Cost",
        "Backend",
        "Planner",
        "Driver",
        "Mplc",
    ];

    /// <summary>
    /// The folders <paramref name="source"/>, a file of folder <paramref name="layer"/> (a compiler folder, or
    /// "runtime"), uses against the order: <c>using ParallelCompiler.X</c>, <c>ParallelCompiler.X.Y</c>, and
    /// <c>X.Y</c> names inside the project's namespace.
    /// </summary>
    public static IEnumerable<string> Violations(string layer, string source)
    {
        string code = CommentsAndStrings()
            .Replace(source, m => m.Value.StartsWith("//", StringComparison.Ordinal) ? "" : "\"\"");
        int rank = layer == "runtime" ? -1 : Array.IndexOf(Order, layer);
        var used = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match m in Qualified().Matches(code))
            used.Add(m.Groups[1].Value);
        if (layer != "runtime")
            foreach (Match m in Bare().Matches(code))
                used.Add(m.Groups[1].Value);
        return used.Where(u => Array.IndexOf(Order, u) > rank).Select(u => $"uses {u}");
    }

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|@""(?:[^""]|"""")*""|""(?:[^""\\\n]|\\.)*""", RegexOptions.Singleline)]
    private static partial Regex CommentsAndStrings();

    [GeneratedRegex(@"\bParallelCompiler\.(\w+)")]
    private static partial Regex Qualified();

    [GeneratedRegex(
        @"(?<![\w.])(Syntax|IR|Dialects|Lowering|Analysis|Interp|Kernels|Passes|Cost|Backend|Planner|Driver|Mplc)"
            + @"\.[A-Z]"
    )]
    private static partial Regex Bare();
}

/// <summary>The layering of the source tree and the checker itself.</summary>
public class LayeringTests
{
    [Fact]
    public void EveryFileUsesOnlyItsFolderAndTheFoldersBeforeIt()
    {
        var problems = new List<string>();
        foreach (
            var (root, layerOf) in new (string, Func<string, string>)[]
            {
                ("compiler", rel => rel.Split('/')[0]),
                ("runtime", _ => "runtime"),
            }
        )
        foreach (var file in Directory.EnumerateFiles(Repo.Path(root), "*.cs", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(Repo.Path(root), file).Replace('\\', '/');
            if (rel.Split('/').Any(p => p is "bin" or "obj") || !rel.Contains('/') && root == "compiler")
                continue;
            string layer = layerOf(rel);
            if (root == "compiler")
                Assert.True(
                    Layering.Order.Contains(layer),
                    $"compiler/{layer}/ is not in the stated order; place it in Layering.Order and docs/architecture.md"
                );
            problems.AddRange(
                Layering.Violations(layer, File.ReadAllText(file)).Select(v => $"{root}/{rel} ({layer}) {v}")
            );
        }
        Assert.True(
            problems.Count == 0,
            "imports against the order " + string.Join(" -> ", Layering.Order) + ":\n" + string.Join("\n", problems)
        );
    }

    [Fact]
    public void TheStatedOrderIsTheOneInTheArchitecturePage()
    {
        string doc = Regex.Replace(File.ReadAllText(Repo.Path("docs", "architecture.md")), @"\s+", " ");
        Assert.Contains(string.Join(" -> ", Layering.Order), doc);
    }

    [Fact]
    public void AWrongImportIsCaught()
    {
        Assert.Equal(
            ["uses Passes"],
            Layering.Violations("IR", "using ParallelCompiler.Passes;\nnamespace ParallelCompiler.IR;")
        );
        Assert.Equal(["uses Backend"], Layering.Violations("Passes", "var k = Backend.KernelCompiler.Ptx(m);"));
        Assert.Equal(
            ["uses Driver"],
            Layering.Violations("Analysis", "throw new ParallelCompiler.Driver.UserErrorException(\"x\");")
        );
        Assert.Equal(["uses IR"], Layering.Violations("runtime", "using ParallelCompiler.IR;"));
        // Its own folder, folders before it, comments and strings are fine; so is the runtime, below everything.
        Assert.Empty(
            Layering.Violations(
                "Passes",
                "using ParallelCompiler.Passes.Infrastructure;\nusing ParallelCompiler.IR;\nusing "
                    + "ParallelCompiler.Runtime.Arrays;"
            )
        );
        Assert.Empty(Layering.Violations("IR", "// see Passes.Spmdize\nvar s = \"Backend.Kernels\"; /* Driver.Cli */"));
        Assert.Empty(Layering.Violations("Syntax", "x.Driver.Y = manifest.Kernels.Count;"));
    }
}
