namespace ParallelCompiler.Syntax;

/// <summary>A source file's text with its line starts, to turn offsets into 1-based lines and columns.</summary>
public sealed class SourceText
{
    private readonly int[] _lineStarts;

    /// <summary>The path as the user gave it (used in messages).</summary>
    public string Path { get; }

    /// <summary>The whole text.</summary>
    public string Text { get; }

    /// <summary>Wraps <paramref name="text"/> read from <paramref name="path"/>.</summary>
    public SourceText(string path, string text)
    {
        Path = path;
        Text = text;
        var starts = new List<int> { 0 };
        for (int i = 0; i < text.Length; i++)
            if (text[i] == '\n')
                starts.Add(i + 1);
        _lineStarts = starts.ToArray();
    }

    /// <summary>1-based line and column of an offset (columns count UTF-16 code units, tabs as one).</summary>
    public (int Line, int Column) LineColumn(int offset)
    {
        offset = Math.Clamp(offset, 0, Text.Length);
        int line = Array.BinarySearch(_lineStarts, offset);
        if (line < 0)
            line = ~line - 1;
        return (line + 1, offset - _lineStarts[line] + 1);
    }

    /// <summary>Offset of a 1-based line and column.</summary>
    public int Offset(int line, int column) =>
        line < 1 ? 0
        : line > _lineStarts.Length ? Text.Length
        : Math.Min(Text.Length, _lineStarts[line - 1] + Math.Max(0, column - 1));

    /// <summary>The text of a 1-based line without its line break.</summary>
    public string Line(int line)
    {
        if (line < 1 || line > _lineStarts.Length)
            return "";
        int start = _lineStarts[line - 1];
        int end = line < _lineStarts.Length ? _lineStarts[line] : Text.Length;
        return Text[start..end].TrimEnd('\n', '\r');
    }

    /// <summary>Reads a file as UTF-8 (invalid bytes become U+FFFD rather than an exception).</summary>
    public static SourceText Load(string path) => new(path, File.ReadAllText(path));
}

/// <summary>A range of source text: start offset and length.</summary>
public readonly record struct TextSpan(int Start, int Length)
{
    /// <summary>One past the last character.</summary>
    public int End => Start + Length;

    /// <summary>The span from the start of <paramref name="a"/> to the end of <paramref name="b"/>.</summary>
    public static TextSpan Cover(TextSpan a, TextSpan b) =>
        new(Math.Min(a.Start, b.Start), Math.Max(a.End, b.End) - Math.Min(a.Start, b.Start));
}
