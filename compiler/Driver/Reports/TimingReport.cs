using System.Globalization;
using ParallelCompiler.Passes.Infrastructure;
using Spectre.Console;

namespace ParallelCompiler.Driver.Reports;

/// <summary><c>--timing</c>: the time spent in each pass.</summary>
public static class TimingReport
{
    /// <summary>Writes the table of <paramref name="pm"/>'s pass times to <paramref name="stderr"/>.</summary>
    public static void Print(PassManager pm, TextWriter stderr)
    {
        double total = pm.Timings.Sum(t => t.Time.TotalMilliseconds);
        var table = new Table().Border(TableBorder.Simple).AddColumns("pass", "time (ms)", "share");
        foreach (var (pass, time) in pm.Timings)
            table.AddRow(
                pass,
                time.TotalMilliseconds.ToString("F3", CultureInfo.InvariantCulture),
                (total > 0 ? time.TotalMilliseconds / total : 0).ToString("P1", CultureInfo.InvariantCulture)
            );
        table.AddRow("total", total.ToString("F3", CultureInfo.InvariantCulture), "");
        Terminal.For(stderr).Write(table);
    }
}
