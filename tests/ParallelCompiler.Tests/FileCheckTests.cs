using System.Diagnostics;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests;

/// <summary>
/// Runs the textual IR tests in tests/ir: each file's `// RUN:` lines, with `mplc` the built compiler, `%s` the
/// file, `%S` its folder and `FileCheck` LLVM's FileCheck-14, the habit of MLIR's own tests. A RUN line ending in
/// `\` continues on the next RUN line.
/// </summary>
public class FileCheckTests
{
    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Repo.Path("tests", "ir"), "*.mplir").Order())
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public async Task Run(string file)
    {
        string path = Repo.Path("tests", "ir", file);
        var runs = Runs(File.ReadLines(path));
        Assert.NotEmpty(runs);
        string mplc = $"dotnet {Quote(Path.Combine(AppContext.BaseDirectory, "mplc.dll"))}";
        foreach (var run in runs)
        {
            string cmd = run.Replace("%s", Quote(path))
                .Replace("%S", Quote(Path.GetDirectoryName(path)!))
                .Replace("FileCheck ", "FileCheck-14 --dump-input=fail ");
            cmd = System.Text.RegularExpressions.Regex.Replace(
                cmd,
                @"(^|\|\s*|&&\s*)mplc ",
                m => m.Value.Replace("mplc ", mplc + " ")
            );
            var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add("-o");
            psi.ArgumentList.Add("pipefail");
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(cmd);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await p.WaitForExitAsync(cts.Token);
            Assert.True(p.ExitCode == 0, $"RUN: {run}\nexit {p.ExitCode}\n{await stdout}\n{await stderr}");
        }
    }

    /// <summary>The commands of the `// RUN:` lines; a line ending in `\` goes on in the next RUN line, as in
    /// lit.</summary>
    private static List<string> Runs(IEnumerable<string> lines)
    {
        var runs = new List<string>();
        string? open = null;
        foreach (var l in lines.Where(l => l.Contains("RUN:")))
        {
            string part = l[(l.IndexOf("RUN:") + 4)..].Trim();
            bool more = part.EndsWith('\\');
            if (more)
                part = part[..^1].TrimEnd();
            open = open == null ? part : open + " " + part;
            if (!more)
            {
                runs.Add(open);
                open = null;
            }
        }
        if (open != null)
            runs.Add(open);
        return runs;
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";
}
