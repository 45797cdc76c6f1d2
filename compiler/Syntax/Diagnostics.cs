using System.Text;

namespace ParallelCompiler.Syntax;

/// <summary>How serious a diagnostic is.</summary>
public enum Severity
{
    /// <summary>Compilation fails.</summary>
    Error,

    /// <summary>Compilation goes on.</summary>
    Warning,

    /// <summary>Extra context for the preceding diagnostic.</summary>
    Note,
}

/// <summary>A message tied to a span of a source file (or to no file at all).</summary>
public sealed record Diagnostic(Severity Severity, SourceText? Source, TextSpan Span, string Message)
{
    /// <summary>
    /// Renders <c>FILE:LINE:COL: error: MESSAGE</c>, then the source line and a caret under the span
    /// (tildes for the rest of it on the same line).
    /// </summary>
    public string Render()
    {
        string sev = Severity switch
        {
            Severity.Error => "error",
            Severity.Warning => "warning",
            _ => "note",
        };
        string message = Shorten(Message);
        if (Source == null)
            return $"{sev}: {message}";
        var (line, col) = Source.LineColumn(Span.Start);
        var sb = new StringBuilder();
        sb.Append($"{Source.Path}:{line}:{col}: {sev}: {message}\n");
        string text = Source.Line(line);
        // A long line is shown as a window of it around the caret, with "..." where it was cut.
        int from = col - 1 > Width - Context ? col - 1 - Context : 0;
        int to = Math.Min(text.Length, from + Width);
        // Control characters (binary garbage) would corrupt a terminal: show them as '?'.
        var shown = new StringBuilder(Width + 8);
        if (from > 0)
            shown.Append("... ");
        for (int i = from; i < to; i++)
            shown.Append(text[i] == '\t' || (!char.IsControl(text[i]) && !char.IsSurrogate(text[i])) ? text[i] : '?');
        if (to < text.Length)
            shown.Append(" ...");
        sb.Append(shown).Append('\n');
        var caret = new StringBuilder();
        if (from > 0)
            caret.Append("    ");
        for (int i = from; i < col - 1 && i < to; i++)
            caret.Append(text[i] == '\t' ? '\t' : ' ');
        caret.Append('^');
        int lineEnd = Source.Offset(line, 1) + text.Length;
        int tildes = Math.Min(Math.Min(Span.End, lineEnd), Source.Offset(line, 1) + to) - Span.Start - 1;
        if (tildes > 0)
            caret.Append('~', tildes);
        sb.Append(caret);
        return sb.ToString();
    }

    /// <summary>How many characters of a source line a diagnostic shows, and how many before the caret when it has
    /// to cut the line.</summary>
    private const int Width = 100,
        Context = 40;

    /// <summary>Most characters of a quoted name or value a message shows.</summary>
    private const int QuotedWidth = 60;

    /// <summary>
    /// <paramref name="message"/> fit for a terminal: a quoted name (no spaces) longer than 60 characters keeps its
    /// start and end around "...", and a line of it stops after 400 characters.
    /// </summary>
    public static string Shorten(string message)
    {
        string s = System.Text.RegularExpressions.Regex.Replace(
            message,
            $"'([^'\\s]{{{QuotedWidth + 1},}})'",
            m =>
            {
                string q = m.Groups[1].Value;
                return $"'{q[..(QuotedWidth / 2 - 2)]}...{q[^(QuotedWidth / 2 - 2)..]}' ({q.Length} characters)";
            }
        );
        return string.Join('\n', s.Split('\n').Select(l => l.Length > 400 ? l[..400] + " ..." : l));
    }
}

/// <summary>Collects diagnostics; stops accepting errors after a limit so garbage input cannot flood the
/// output.</summary>
public sealed class DiagnosticBag
{
    /// <summary>Most errors reported before the rest are summarised.</summary>
    public const int MaxErrors = 20;
    private readonly List<Diagnostic> _items = new();
    private int _suppressed;

    /// <summary>Everything reported, in order.</summary>
    public IReadOnlyList<Diagnostic> Items => _items;

    /// <summary>Number of errors, including suppressed ones.</summary>
    public int ErrorCount => _items.Count(d => d.Severity == Severity.Error) + _suppressed;

    /// <summary>True when an error was reported.</summary>
    public bool HasErrors => ErrorCount > 0;

    /// <summary>Reports an error.</summary>
    public void Error(SourceText? src, TextSpan span, string message) =>
        Add(new Diagnostic(Severity.Error, src, span, message));

    /// <summary>Reports a warning.</summary>
    public void Warning(SourceText? src, TextSpan span, string message) =>
        Add(new Diagnostic(Severity.Warning, src, span, message));

    /// <summary>Adds a diagnostic.</summary>
    public void Add(Diagnostic d)
    {
        if (d.Severity == Severity.Error && ErrorCount >= MaxErrors)
        {
            _suppressed++;
            return;
        }
        _items.Add(d);
    }

    /// <summary>All diagnostics rendered, with a final line when errors were suppressed.</summary>
    public string Render()
    {
        var sb = new StringBuilder();
        foreach (var d in _items)
            sb.Append(d.Render()).Append('\n');
        if (_suppressed > 0)
            sb.Append($"error: {_suppressed} more error(s) not shown\n");
        return sb.ToString();
    }
}

/// <summary>Thrown to stop compilation after errors were reported to a <see cref="DiagnosticBag"/>.</summary>
public sealed class CompilationFailedException(DiagnosticBag diagnostics) : Exception("compilation failed")
{
    /// <summary>The errors.</summary>
    public DiagnosticBag Diagnostics { get; } = diagnostics;
}
