using System.Globalization;
using System.Text;

namespace ParallelCompiler.IR;

/// <summary>A compile-time constant attached to an operation. Attributes are immutable and compare by value.</summary>
public abstract class Attr : IEquatable<Attr>
{
    /// <inheritdoc/>
    public abstract bool Equals(Attr? other);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Attr a && Equals(a);

    /// <inheritdoc/>
    public override int GetHashCode() => ToString().GetHashCode();

    /// <summary>The IR spelling; parsing it gives an equal attribute.</summary>
    public abstract override string ToString();

    /// <summary>Shorthand constructors.</summary>
    public static IntAttr Int(long v) => new(v);

    /// <summary>A float attribute.</summary>
    public static FloatAttr Float(double v) => new(v);

    /// <summary>A string attribute.</summary>
    public static StringAttr Str(string v) => new(v);

    /// <summary>A bool attribute.</summary>
    public static BoolAttr Bool(bool v) => new(v);

    /// <summary>An array of integers.</summary>
    public static ArrayAttr Ints(IEnumerable<long> v) => new(v.Select(x => (Attr)new IntAttr(x)));

    /// <summary>An array of strings.</summary>
    public static ArrayAttr Strs(IEnumerable<string> v) => new(v.Select(x => (Attr)new StringAttr(x)));
}

/// <summary>A 64-bit integer: <c>4</c>, <c>-1</c>.</summary>
public sealed class IntAttr(long value) : Attr
{
    /// <summary>The value.</summary>
    public long Value { get; } = value;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is IntAttr i && i.Value == Value;

    /// <inheritdoc/>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A double: always printed with a '.' or an exponent so that it parses back as a float.</summary>
public sealed class FloatAttr(double value) : Attr
{
    /// <summary>The value.</summary>
    public double Value { get; } = value;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is FloatAttr f && f.Value.Equals(Value);

    /// <inheritdoc/>
    public override string ToString() => Format(Value);

    /// <summary>Shortest text that parses back to exactly <paramref name="v"/>.</summary>
    public static string Format(double v)
    {
        if (double.IsPositiveInfinity(v))
            return "inf";
        if (double.IsNegativeInfinity(v))
            return "-inf";
        if (double.IsNaN(v))
            return "nan";
        string s = v.ToString("R", CultureInfo.InvariantCulture).Replace("E", "e");
        if (!s.Contains('.') && !s.Contains('e'))
            s += ".0";
        else if (s.Contains('e') && !s.Contains('.'))
        {
            int e = s.IndexOf('e');
            s = s[..e] + ".0" + s[e..];
        }
        return s;
    }
}

/// <summary><c>true</c> or <c>false</c>.</summary>
public sealed class BoolAttr(bool value) : Attr
{
    /// <summary>The value.</summary>
    public bool Value { get; } = value;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is BoolAttr b && b.Value == Value;

    /// <inheritdoc/>
    public override string ToString() => Value ? "true" : "false";
}

/// <summary>A quoted string with C-style escapes.</summary>
public sealed class StringAttr(string value) : Attr
{
    /// <summary>The value.</summary>
    public string Value { get; } = value;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is StringAttr s && s.Value == Value;

    /// <inheritdoc/>
    public override string ToString() => Quote(Value);

    /// <summary>Quotes and escapes a string.</summary>
    public static string Quote(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s)
        {
            switch (c)
            {
                case '"':
                    sb.Append("\\\"");
                    break;
                case '\\':
                    sb.Append("\\\\");
                    break;
                case '\n':
                    sb.Append("\\n");
                    break;
                case '\t':
                    sb.Append("\\t");
                    break;
                case '\r':
                    sb.Append("\\r");
                    break;
                default:
                    if (c < 0x20 || c == 0x7f)
                        sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else
                        sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}

/// <summary>An ordered list of attributes: <c>[1, 2]</c>.</summary>
public sealed class ArrayAttr(IEnumerable<Attr> items) : Attr
{
    /// <summary>The elements.</summary>
    public IReadOnlyList<Attr> Items { get; } = items.ToArray();

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is ArrayAttr a && a.Items.SequenceEqual(Items);

    /// <inheritdoc/>
    public override string ToString() => "[" + string.Join(", ", Items) + "]";

    /// <summary>The elements as integers; throws when one is not an integer.</summary>
    public long[] AsInts() =>
        Items
            .Select(i => i is IntAttr n ? n.Value : throw new InvalidCastException($"{i} is not an integer"))
            .ToArray();

    /// <summary>The elements as strings; throws when one is not a string.</summary>
    public string[] AsStrings() =>
        Items
            .Select(i => i is StringAttr n ? n.Value : throw new InvalidCastException($"{i} is not a string"))
            .ToArray();
}

/// <summary>A dictionary with keys in sorted order: <c>{a = 1, b = "x"}</c>.</summary>
public sealed class DictAttr : Attr
{
    /// <summary>Entries sorted by key (ordinal), so the text form is canonical.</summary>
    public IReadOnlyList<KeyValuePair<string, Attr>> Entries { get; }

    /// <summary>Creates a dictionary; keys must be distinct.</summary>
    public DictAttr(IEnumerable<KeyValuePair<string, Attr>> entries)
    {
        Entries = entries.OrderBy(e => e.Key, StringComparer.Ordinal).ToArray();
        for (int i = 1; i < Entries.Count; i++)
            if (Entries[i].Key == Entries[i - 1].Key)
                throw new ArgumentException($"duplicate key '{Entries[i].Key}'");
    }

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
    public Attr? Get(string key) => Entries.FirstOrDefault(e => e.Key == key).Value;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is DictAttr d && d.Entries.SequenceEqual(Entries);

    /// <inheritdoc/>
    public override string ToString() =>
        "{" + string.Join(", ", Entries.Select(e => $"{Printer.AttrKey(e.Key)} = {e.Value}")) + "}";
}

/// <summary>A type used as an attribute.</summary>
public sealed class TypeAttr(MplType type) : Attr
{
    /// <summary>The type.</summary>
    public MplType Type { get; } = type;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is TypeAttr t && t.Type.Equals(Type);

    /// <inheritdoc/>
    public override string ToString() => Type.ToString();
}

/// <summary>A sharding used as an attribute (e.g. the target of a reshard).</summary>
public sealed class ShardingAttr(Sharding sharding) : Attr
{
    /// <summary>The sharding.</summary>
    public Sharding Sharding { get; } = sharding;

    /// <inheritdoc/>
    public override bool Equals(Attr? o) => o is ShardingAttr s && s.Sharding.Equals(Sharding);

    /// <inheritdoc/>
    public override string ToString() => Sharding.ToString();
}
