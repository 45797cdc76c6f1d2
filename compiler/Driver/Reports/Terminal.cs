using Spectre.Console;

namespace ParallelCompiler.Driver.Reports;

/// <summary>Where reports and tables are written: plain text that reads the same in a terminal, a file or a
/// test.</summary>
public static class Terminal
{
    /// <summary>A plain (no colour, no ANSI) console 160 columns wide writing to <paramref name="w"/>.</summary>
    public static IAnsiConsole For(TextWriter w)
    {
        var c = AnsiConsole.Create(
            new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(w),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
            }
        );
        c.Profile.Width = 160;
        return c;
    }
}
