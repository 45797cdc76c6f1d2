using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>
/// An array read from a file, converted to the nearest runtime type (float64 → f32, int64 → i32, ...), together
/// with the file's own name for the stored type ("float64" for numpy, "F64" for safetensors), so that callers can
/// decide whether a conversion is acceptable.
/// </summary>
public sealed record NpyArray(NDArray Array, string SourceDtype);

/// <summary>Reads and writes numpy's .npy format (versions 1.0, 2.0 and 3.0).</summary>
public static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    // numpy itself refuses headers over 10 000 bytes; allow more, but not enough to be a memory hazard.
    private const long MaxHeaderBytes = 1 << 24;
    private const int Align = 64;

    // numpy leaves room after the growing axis so that appending can rewrite the header in place.
    private const int GrowthAxisMaxDigits = 21;

    private static readonly string Supported =
        "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float16, float32, float64";

    /// <summary>Reads the .npy file at <paramref name="path"/>.</summary>
    public static NpyArray Read(string path)
    {
        using var fs = ArrayFile.OpenRead(path);
        return Read(fs, path);
    }

    /// <summary>Reads one array from <paramref name="s"/>; <paramref name="what"/> names the source in error
    /// messages.</summary>
    public static NpyArray Read(Stream s, string what)
    {
        long available;
        try
        {
            available = s.CanSeek ? s.Length - s.Position : -1;
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            available = -1;
        }
        return Read(s, what, available);
    }

    /// <summary>Like <see cref="Read(Stream, string)"/>, with the number of bytes left in the source, or -1 if
    /// unknown.</summary>
    internal static NpyArray Read(Stream s, string what, long available)
    {
        try
        {
            return ReadCore(s, what, available);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(what, "reading the array", e);
        }
    }

    private static NpyArray ReadCore(Stream s, string what, long available)
    {
        var (t, fortran, shape, dataOffset) = ReadHeader(s, what);
        long left = available >= 0 ? available - dataOffset : -1;
        return new NpyArray(ElementCodec.Read(s, t, shape, fortran, what, left), t.Name);
    }

    /// <summary>The header of the .npy data in <paramref name="s"/> (read from its position, left just after the
    /// header): the stored element type, whether the data is in Fortran order, the shape, and the header's length in
    /// bytes (where the data starts).</summary>
    internal static (ElementType Type, bool Fortran, long[] Shape, long DataOffset) ReadHeader(Stream s, string what)
    {
        Span<byte> pre = stackalloc byte[12];
        int got = ElementCodec.ReadUpTo(s, pre[..10]);
        if (got < Magic.Length || !pre[..Magic.Length].SequenceEqual(Magic))
        {
            string hint =
                got >= 2 && pre[0] == 'P' && pre[1] == 'K' ? " (it looks like a zip archive, i.e. an .npz file)" : "";
            throw new ArrayFileException(
                $"{what}: not a .npy file: expected the magic bytes \\x93NUMPY, found "
                    + $"{Describe(pre[..got])}{hint}"
            );
        }
        if (got < 10)
            throw new ArrayFileException($"{what}: truncated header: expected at least 10 bytes, found {got}");
        int major = pre[6],
            minor = pre[7];
        if (major is < 1 or > 3 || minor != 0)
            throw new ArrayFileException(
                $"{what}: unsupported .npy format version {major}.{minor}: expected 1.0, 2.0 " + $"or 3.0"
            );

        long hlen;
        int prefix;
        if (major == 1)
        {
            hlen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]);
            prefix = 10;
        }
        else
        {
            got = ElementCodec.ReadUpTo(s, pre[10..12]);
            if (got < 2)
                throw new ArrayFileException(
                    $"{what}: truncated header: expected at least 12 bytes, found " + $"{10 + got}"
                );
            hlen = BinaryPrimitives.ReadUInt32LittleEndian(pre[8..]);
            prefix = 12;
        }
        if (hlen > MaxHeaderBytes)
            throw new ArrayFileException(
                $"{what}: bad header: its length field says {hlen} bytes, expected at most " + $"{MaxHeaderBytes}"
            );
        var hb = new byte[hlen];
        got = ElementCodec.ReadUpTo(s, hb);
        if (got < hlen)
            throw new ArrayFileException($"{what}: truncated header: expected {hlen} bytes, found {got}");

        string text =
            major == 3
                ? new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(hb)
                : Encoding.Latin1.GetString(hb);
        var (descr, fortran, shape) = ParseHeader(text, what);
        return (ParseDescr(descr, what), fortran, shape, prefix + hlen);
    }

    private static string Describe(ReadOnlySpan<byte> b)
    {
        if (b.IsEmpty)
            return "an empty file";
        var sb = new StringBuilder("'");
        foreach (byte c in b)
            sb.Append(c is >= 0x20 and < 0x7F and not 0x5C ? ((char)c).ToString() : $"\\x{c:x2}");
        return sb.Append('\'').ToString();
    }

    private static (object? Descr, bool Fortran, long[] Shape) ParseHeader(string text, string what)
    {
        var p = new HeaderParser(text, what);
        var dict = p.ParseTop();
        foreach (string key in (ReadOnlySpan<string>)["descr", "fortran_order", "shape"])
            if (!dict.ContainsKey(key))
                throw p.Bad($"missing key '{key}' (expected keys 'descr', 'fortran_order' and 'shape')");
        if (dict["fortran_order"] is not bool fortran)
            throw p.Bad($"'fortran_order' must be True or False, found {HeaderParser.Show(dict["fortran_order"])}");
        if (dict["shape"] is not PySeq seq || seq.Items.Any(x => x is not long))
            throw p.Bad($"'shape' must be a tuple of integers, found {HeaderParser.Show(dict["shape"])}");
        var shape = seq.Items.Select(x => (long)x!).ToArray();
        if (shape.Any(d => d < 0))
            throw p.Bad($"'shape' has a negative dimension: {HeaderParser.Show(seq)}");
        return (dict["descr"], fortran, shape);
    }

    private static ElementType ParseDescr(object? descr, string what)
    {
        if (descr is PySeq)
            throw new ArrayFileException(
                $"{what}: unsupported dtype: a structured array "
                    + $"({HeaderParser.Show(descr)}); expected one of {Supported}"
            );
        if (descr is not string d)
            throw new ArrayFileException(
                $"{what}: bad header: 'descr' must be a string, found " + $"{HeaderParser.Show(descr)}"
            );
        bool be = !BitConverter.IsLittleEndian;
        string body = d;
        if (d.Length > 0 && d[0] is '<' or '>' or '|' or '=')
        {
            if (d[0] == '<')
                be = false;
            else if (d[0] == '>')
                be = true;
            body = d[1..];
        }
        char kind = body.Length > 0 ? body[0] : '?';
        int size = int.TryParse(
            body.AsSpan(Math.Min(1, body.Length)),
            NumberStyles.None,
            CultureInfo.InvariantCulture,
            out int n
        )
            ? n
            : -1;
        ElementKind? k = (kind, size) switch
        {
            ('b', 1) => ElementKind.Bool,
            ('i', 1) => ElementKind.I8,
            ('i', 2) => ElementKind.I16,
            ('i', 4) => ElementKind.I32,
            ('i', 8) => ElementKind.I64,
            ('u', 1) => ElementKind.U8,
            ('u', 2) => ElementKind.U16,
            ('u', 4) => ElementKind.U32,
            ('u', 8) => ElementKind.U64,
            ('f', 2) => ElementKind.F16,
            ('f', 4) => ElementKind.F32,
            ('f', 8) => ElementKind.F64,
            _ => null,
        };
        string name = NumpyName(kind, size);
        if (k == null)
            throw new ArrayFileException(
                $"{what}: unsupported dtype '{d}'{(name == "" ? "" : $" ({name})")}: " + $"expected one of {Supported}"
            );
        return new ElementType(k.Value, be, name);
    }

    private static string NumpyName(char kind, int size) =>
        kind switch
        {
            'b' when size == 1 => "bool",
            'i' when size > 0 => $"int{8 * size}",
            'u' when size > 0 => $"uint{8 * size}",
            'f' when size > 0 => $"float{8 * size}",
            'c' when size > 0 => $"complex{8 * size}",
            'U' => "str",
            'S' => "bytes",
            'O' => "object",
            'V' => "void",
            'M' => "datetime64",
            'm' => "timedelta64",
            _ => "",
        };

    /// <summary>Writes <paramref name="a"/> to the file <paramref name="path"/>, replacing it if it exists.</summary>
    public static void Write(string path, NDArray a) => ArrayFile.WriteAtomically(path, fs => Write(fs, a));

    /// <summary>
    /// Writes <paramref name="a"/> byte for byte as numpy's np.save would: format 1.0, data aligned to 64 bytes,
    /// f32 and bf16 as little-endian float32, f16 as float16, i32 as int32.
    /// </summary>
    public static void Write(Stream s, NDArray a)
    {
        (string descr, ElementKind kind) = a.DType switch
        {
            DType.F16 => ("<f2", ElementKind.F16),
            DType.I32 => ("<i4", ElementKind.I32),
            _ => ("<f4", ElementKind.F32),
        };
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {ElementCodec.ShapeText(a.Shape)}, }}";
        if (a.Shape.Length > 0)
            dict += new string(
                ' ',
                Math.Max(0, GrowthAxisMaxDigits - a.Shape[0].ToString(CultureInfo.InvariantCulture).Length)
            );
        byte[] header = Encoding.ASCII.GetBytes(dict);

        // Like numpy, fall back to version 2.0 only when the header outgrows 1.0's 16-bit length field.
        int major = 1,
            prefix = 10;
        int hlen = header.Length + 1;
        int pad = Align - (prefix + hlen) % Align;
        if (hlen + pad > ushort.MaxValue)
        {
            major = 2;
            prefix = 12;
            pad = Align - (prefix + hlen) % Align;
        }
        Span<byte> pre = stackalloc byte[12];
        Magic.CopyTo(pre);
        pre[6] = (byte)major;
        pre[7] = 0;
        if (major == 1)
            BinaryPrimitives.WriteUInt16LittleEndian(pre[8..], (ushort)(hlen + pad));
        else
            BinaryPrimitives.WriteUInt32LittleEndian(pre[8..], (uint)(hlen + pad));
        s.Write(pre[..prefix]);
        s.Write(header);
        var tail = new byte[pad + 1];
        tail.AsSpan(0, pad).Fill((byte)' ');
        tail[pad] = (byte)'\n';
        s.Write(tail);
        ElementCodec.Write(s, a, kind);
    }

    /// <summary>A tuple or list in a header; the header's other values are string, bool, long or null (None).</summary>
    private sealed record PySeq(List<object?> Items, bool IsList);

    /// <summary>Parses the Python literal dict of a .npy header, tolerating any spacing and trailing commas.</summary>
    private sealed class HeaderParser(string text, string what)
    {
        private int pos;

        public ArrayFileException Bad(string problem) => new($"{what}: bad header: {problem}; header was {Clip(text)}");

        public Dictionary<string, object?> ParseTop()
        {
            SkipWs();
            if (pos >= text.Length || text[pos] != '{')
                throw Expected("'{'");
            var d = Dict();
            SkipWs();
            if (pos < text.Length)
                throw Expected("the end of the header after '}'");
            return d;
        }

        private Dictionary<string, object?> Dict()
        {
            pos++; // '{'
            var d = new Dictionary<string, object?>();
            while (true)
            {
                SkipWs();
                if (Eat('}'))
                    return d;
                int at = pos;
                if (Value() is not string key)
                {
                    pos = at;
                    throw Expected("a string key");
                }
                if (d.ContainsKey(key))
                    throw Bad($"duplicate key '{key}'");
                SkipWs();
                if (!Eat(':'))
                    throw Expected($"':' after key '{key}'");
                d[key] = Value();
                SkipWs();
                if (Eat('}'))
                    return d;
                if (!Eat(','))
                    throw Expected("',' or '}'");
            }
        }

        private object? Value()
        {
            SkipWs();
            if (pos >= text.Length)
                throw Expected("a value");
            char c = text[pos];
            if (c is '\'' or '"')
                return Str(c);
            if (c is '(' or '[')
                return Seq(c == '[' ? ']' : ')');
            if (c == '{')
                return Dict();
            if (c is '-' or '+' || char.IsAsciiDigit(c))
                return Int();
            if (Word("True"))
                return true;
            if (Word("False"))
                return false;
            if (Word("None"))
                return null;
            throw Expected("a value");
        }

        private string Str(char quote)
        {
            pos++;
            var sb = new StringBuilder();
            while (pos < text.Length && text[pos] != quote)
            {
                // Escapes do not occur in numpy's descr strings; keeping the escaped character is enough.
                if (text[pos] == '\\' && pos + 1 < text.Length)
                    pos++;
                sb.Append(text[pos++]);
            }
            if (!Eat(quote))
                throw Expected($"a closing {quote}");
            return sb.ToString();
        }

        private PySeq Seq(char close)
        {
            pos++;
            var items = new List<object?>();
            while (true)
            {
                SkipWs();
                if (Eat(close))
                    return new PySeq(items, close == ']');
                items.Add(Value());
                SkipWs();
                if (Eat(close))
                    return new PySeq(items, close == ']');
                if (!Eat(','))
                    throw Expected($"',' or '{close}'");
            }
        }

        private long Int()
        {
            int start = pos;
            if (text[pos] is '-' or '+')
                pos++;
            while (pos < text.Length && char.IsAsciiDigit(text[pos]))
                pos++;
            string digits = text[start..pos];
            if (pos < text.Length && text[pos] is 'L' or 'l')
                pos++; // Python 2 long literals in old files
            if (!long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
            {
                pos = start;
                throw Expected("an integer that fits in 64 bits");
            }
            return v;
        }

        private bool Word(string w)
        {
            if (string.CompareOrdinal(text, pos, w, 0, w.Length) != 0)
                return false;
            int end = pos + w.Length;
            if (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] == '_'))
                return false;
            pos = end;
            return true;
        }

        private bool Eat(char c)
        {
            if (pos < text.Length && text[pos] == c)
            {
                pos++;
                return true;
            }
            return false;
        }

        private void SkipWs()
        {
            while (pos < text.Length && char.IsWhiteSpace(text[pos]))
                pos++;
        }

        private ArrayFileException Expected(string expected)
        {
            string found = pos >= text.Length ? "the end of the header" : $"'{text[pos]}'";
            return Bad($"expected {expected} at offset {pos}, found {found}");
        }

        public static string Show(object? v) =>
            v switch
            {
                null => "None",
                bool b => b ? "True" : "False",
                string s => $"'{s}'",
                long l => l.ToString(CultureInfo.InvariantCulture),
                PySeq q => (q.IsList ? "[" : "(")
                    + string.Join(", ", q.Items.Select(Show))
                    + (
                        q.IsList ? "]"
                        : q.Items.Count == 1 ? ",)"
                        : ")"
                    ),
                Dictionary<string, object?> d => "{"
                    + string.Join(", ", d.Select(kv => $"'{kv.Key}': {Show(kv.Value)}"))
                    + "}",
                _ => v.ToString() ?? "",
            };

        private static string Clip(string s)
        {
            s = s.TrimEnd();
            return s.Length <= 200 ? s : s[..200] + "...";
        }
    }
}
