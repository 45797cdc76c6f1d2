using System.Globalization;
using System.Text;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.IR;

/// <summary>
/// Reads the text form that <see cref="Printer"/> writes. Every operation goes through <see cref="Builder.Build"/>,
/// so parsed IR is checked exactly like built IR. Errors are reported as <c>file:line:col: error: ...</c>.
/// </summary>
public sealed class IRParser
{
    private readonly SourceText _src;
    private readonly string _t;
    private int _pos;
    private Dictionary<string, Value> _scope = new(StringComparer.Ordinal);

    private IRParser(SourceText src)
    {
        _src = src;
        _t = src.Text;
    }

    private sealed class ParseError(int offset, string message) : Exception(message)
    {
        public int Offset { get; } = offset;
    }

    /// <summary>Parses a module; on error reports to <paramref name="diags"/> and returns null.</summary>
    public static Operation? ParseModule(SourceText src, DiagnosticBag diags)
    {
        var p = new IRParser(src);
        try
        {
            var m = p.Module();
            p.Ws();
            if (p._pos < p._t.Length)
                throw p.Err("expected end of input after the module");
            return m;
        }
        catch (ParseError e)
        {
            diags.Error(src, new TextSpan(e.Offset, 1), e.Message);
            return null;
        }
    }

    /// <summary>Parses module text, throwing an <see cref="IRException"/> with the rendered error (for tests and
    /// tools).</summary>
    public static Operation ParseModule(string text, string path = "<ir>")
    {
        var diags = new DiagnosticBag();
        return ParseModule(new SourceText(path, text), diags) ?? throw new IRException(diags.Render().TrimEnd());
    }

    private ParseError Err(string msg, int? at = null) => new(at ?? _pos, msg);

    // ---- lexical helpers ----

    private void Ws()
    {
        while (_pos < _t.Length)
        {
            char c = _t[_pos];
            if (char.IsWhiteSpace(c))
                _pos++;
            else if (c == '/' && _pos + 1 < _t.Length && _t[_pos + 1] == '/')
            {
                while (_pos < _t.Length && _t[_pos] != '\n')
                    _pos++;
            }
            else
                break;
        }
    }

    private bool Peek(string s)
    {
        Ws();
        return string.CompareOrdinal(_t, _pos, s, 0, s.Length) == 0;
    }

    private bool Accept(string s)
    {
        if (!Peek(s))
            return false;
        // A keyword must not run into the next identifier character.
        if (char.IsAsciiLetter(s[^1]) && _pos + s.Length < _t.Length && IsIdChar(_t[_pos + s.Length]))
            return false;
        _pos += s.Length;
        return true;
    }

    private void Expect(string s)
    {
        if (!Accept(s))
            throw Err($"expected '{s}'{Found()}");
    }

    private string Found()
    {
        Ws();
        if (_pos >= _t.Length)
            return " but found the end of input";
        int end = _pos;
        while (end < _t.Length && end - _pos < 20 && !char.IsWhiteSpace(_t[end]))
            end++;
        return $" but found '{_t[_pos..end]}'";
    }

    private static bool IsIdChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_' || c == '.' || c == '$';

    private string Ident()
    {
        Ws();
        int start = _pos;
        if (_pos < _t.Length && (char.IsAsciiLetter(_t[_pos]) || _t[_pos] == '_'))
            while (_pos < _t.Length && IsIdChar(_t[_pos]))
                _pos++;
        if (start == _pos)
            throw Err($"expected an identifier{Found()}");
        return _t[start.._pos];
    }

    private string ValueName(char sigil)
    {
        Ws();
        if (_pos >= _t.Length || _t[_pos] != sigil)
            throw Err($"expected '{sigil}name'{Found()}");
        _pos++;
        int start = _pos;
        while (_pos < _t.Length && IsIdChar(_t[_pos]))
            _pos++;
        if (start == _pos)
            throw Err($"expected a name after '{sigil}'");
        return _t[start.._pos];
    }

    private long Integer()
    {
        Ws();
        int start = _pos;
        if (_pos < _t.Length && _t[_pos] == '-')
            _pos++;
        while (_pos < _t.Length && char.IsAsciiDigit(_t[_pos]))
            _pos++;
        if (
            !long.TryParse(
                _t.AsSpan(start, _pos - start),
                NumberStyles.AllowLeadingSign,
                CultureInfo.InvariantCulture,
                out long v
            )
        )
            throw Err($"expected an integer{Found()}", start);
        return v;
    }

    private string QuotedString()
    {
        Ws();
        int start = _pos;
        if (_pos >= _t.Length || _t[_pos] != '"')
            throw Err($"expected a string{Found()}");
        _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _t.Length || _t[_pos] == '\n')
                throw Err("unterminated string", start);
            char c = _t[_pos++];
            if (c == '"')
                break;
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            if (_pos >= _t.Length)
                throw Err("unterminated string", start);
            char e = _t[_pos++];
            switch (e)
            {
                case 'n':
                    sb.Append('\n');
                    break;
                case 't':
                    sb.Append('\t');
                    break;
                case 'r':
                    sb.Append('\r');
                    break;
                case '"':
                    sb.Append('"');
                    break;
                case '\\':
                    sb.Append('\\');
                    break;
                case 'u':
                    if (
                        _pos + 4 > _t.Length
                        || !int.TryParse(
                            _t.AsSpan(_pos, 4),
                            NumberStyles.HexNumber,
                            CultureInfo.InvariantCulture,
                            out int code
                        )
                    )
                        throw Err("bad \\u escape", _pos - 2);
                    sb.Append((char)code);
                    _pos += 4;
                    break;
                default:
                    throw Err($"unknown escape '\\{e}'", _pos - 2);
            }
        }
        return sb.ToString();
    }

    // ---- types and attributes ----

    private MplType Type()
    {
        Ws();
        int start = _pos;
        if (!Accept("tensor"))
            throw Err($"expected a type{Found()}");
        Expect("<");
        Ws();
        var dims = new List<long>();
        while (_pos < _t.Length && char.IsAsciiDigit(_t[_pos]))
        {
            int s = _pos;
            while (_pos < _t.Length && char.IsAsciiDigit(_t[_pos]))
                _pos++;
            if (!long.TryParse(_t.AsSpan(s, _pos - s), out long d))
                throw Err("dimension too large", s);
            dims.Add(d);
            if (_pos >= _t.Length || _t[_pos] != 'x')
                throw Err("expected 'x' after a dimension", _pos);
            _pos++;
        }
        int dtStart = _pos;
        while (_pos < _t.Length && char.IsAsciiLetterOrDigit(_t[_pos]))
            _pos++;
        string dt = _t[dtStart.._pos];
        if (!DTypes.TryParse(dt, out var dtype))
            throw Err($"unknown element type '{dt}' (expected f32, f16, bf16 or " + $"i32)", dtStart);
        Sharding? sharding = null;
        if (Accept(","))
            sharding = ParseSharding();
        Expect(">");
        try
        {
            return new TensorType(dtype, dims, sharding);
        }
        catch (ArgumentException e)
        {
            throw Err(e.Message, start);
        }
    }

    private Sharding ParseSharding()
    {
        int start = _pos;
        Expect("shard");
        Expect("[");
        var dims = new List<List<string>>();
        if (!Peek("]"))
        {
            do
            {
                if (Accept("("))
                {
                    var g = new List<string>();
                    do g.Add(Ident());
                    while (Accept(","));
                    Expect(")");
                    dims.Add(g);
                }
                else
                {
                    string a = Ident();
                    dims.Add(a == "_" ? [] : [a]);
                }
            } while (Accept(","));
        }
        Expect("]");
        var partial = new List<string>();
        if (Accept("partial"))
        {
            Expect("(");
            do partial.Add(Ident());
            while (Accept(","));
            Expect(")");
        }
        try
        {
            return new Sharding(dims, partial);
        }
        catch (ArgumentException e)
        {
            throw Err(e.Message, start);
        }
    }

    private Attr Attribute()
    {
        Ws();
        if (_pos >= _t.Length)
            throw Err("expected an attribute but found the end of input");
        char c = _t[_pos];
        if (c == '"')
            return new StringAttr(QuotedString());
        if (c == '[')
        {
            _pos++;
            var items = new List<Attr>();
            if (!Accept("]"))
            {
                do items.Add(Attribute());
                while (Accept(","));
                Expect("]");
            }
            return new ArrayAttr(items);
        }
        if (c == '{')
            return new DictAttr(AttrDict());
        if (Accept("true"))
            return new BoolAttr(true);
        if (Accept("false"))
            return new BoolAttr(false);
        if (Accept("inf"))
            return new FloatAttr(double.PositiveInfinity);
        if (Accept("-inf"))
            return new FloatAttr(double.NegativeInfinity);
        if (Accept("nan"))
            return new FloatAttr(double.NaN);
        if (Peek("tensor"))
            return new TypeAttr(Type());
        if (Peek("shard"))
            return new ShardingAttr(ParseSharding());
        if (c == '-' || char.IsAsciiDigit(c))
            return Number();
        throw Err($"expected an attribute{Found()}");
    }

    private Attr Number()
    {
        int start = _pos;
        if (_t[_pos] == '-')
            _pos++;
        bool isFloat = false;
        while (
            _pos < _t.Length
            && (
                char.IsAsciiDigit(_t[_pos])
                || _t[_pos] is '.' or 'e' or 'E'
                || (_t[_pos] is '+' or '-' && (_t[_pos - 1] is 'e' or 'E'))
            )
        )
        {
            if (_t[_pos] is '.' or 'e' or 'E')
                isFloat = true;
            _pos++;
        }
        var span = _t.AsSpan(start, _pos - start);
        if (isFloat && double.TryParse(span, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
            return new FloatAttr(d);
        if (!isFloat && long.TryParse(span, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
            return new IntAttr(l);
        throw Err($"malformed number '{span}'", start);
    }

    private List<KeyValuePair<string, Attr>> AttrDict()
    {
        Expect("{");
        var entries = new List<KeyValuePair<string, Attr>>();
        var seen = new HashSet<string>();
        if (Accept("}"))
            return entries;
        do
        {
            Ws();
            int at = _pos;
            string key = Peek("\"") ? QuotedString() : Ident();
            if (!seen.Add(key))
                throw Err($"duplicate attribute '{key}'", at);
            Expect("=");
            entries.Add(new(key, Attribute()));
        } while (Accept(","));
        Expect("}");
        return entries;
    }

    private Location? OptLocation()
    {
        if (!Accept("loc"))
            return null;
        Expect("(");
        if (Accept("unknown"))
        {
            Expect(")");
            return Location.Unknown;
        }
        string file = QuotedString();
        Expect(":");
        int line = (int)Integer();
        Expect(":");
        int col = (int)Integer();
        Expect(")");
        return new Location(file, line, col);
    }

    private List<MplType> ResultTypes()
    {
        var types = new List<MplType>();
        if (Accept("("))
        {
            if (!Accept(")"))
            {
                do types.Add(Type());
                while (Accept(","));
                Expect(")");
            }
        }
        else
            types.Add(Type());
        return types;
    }

    // ---- operations ----

    private Operation Module()
    {
        Ws();
        int at = _pos;
        Expect("module");
        var attrs = Accept("attributes") ? AttrDict() : [];
        var module = Operation.CreateUnchecked("builtin.module", [], [], attrs, 1);
        var body = module.Regions[0].Entry;
        Expect("{");
        while (!Accept("}"))
        {
            if (_pos >= _t.Length)
                throw Err("expected '}' to close the module", at);
            body.Append(Peek("func.func") ? Func() : GenericOp());
        }
        return module;
    }

    private Operation Func()
    {
        Expect("func.func");
        Ws();
        string name = ValueName('@');
        _scope = new Dictionary<string, Value>(StringComparer.Ordinal);
        Expect("(");
        var args = new List<(string, MplType, int)>();
        if (!Accept(")"))
        {
            do
            {
                Ws();
                int at = _pos;
                string an = ValueName('%');
                Expect(":");
                args.Add((an, Type(), at));
            } while (Accept(","));
            Expect(")");
        }
        Expect("->");
        var results = ResultTypes();
        var attrs = Accept("attributes") ? AttrDict() : [];
        var loc = OptLocation();
        attrs.Add(new("sym_name", new StringAttr(name)));
        attrs.Add(new("result_types", new ArrayAttr(results.Select(t => (Attr)new TypeAttr(t)))));
        var func = Operation.CreateUnchecked("func.func", [], [], attrs, 1, loc);
        var entry = func.Regions[0].Entry;
        foreach (var (an, ty, at) in args)
            Bind(an, entry.AddArgument(ty, an), at);
        Expect("{");
        while (!Accept("}"))
        {
            if (_pos >= _t.Length)
                throw Err($"expected '}}' to close @{name}");
            entry.Append(Peek("func.return") ? Return() : GenericOp());
        }
        return func;
    }

    private void Bind(string name, Value v, int at)
    {
        if (!_scope.TryAdd(name, v))
            throw Err($"redefinition of %{name}", at);
        v.NameHint = name;
    }

    private Value Use()
    {
        Ws();
        int at = _pos;
        string n = ValueName('%');
        return _scope.TryGetValue(n, out var v) ? v : throw Err($"use of undefined value %{n}", at);
    }

    private Operation Return()
    {
        Expect("func.return");
        var vals = new List<Value>();
        if (Peek("%"))
        {
            do vals.Add(Use());
            while (Accept(","));
            Expect(":");
            for (int i = 0; i < vals.Count; i++)
            {
                if (i > 0)
                    Expect(",");
                Ws();
                int at = _pos;
                var ty = Type();
                if (!ty.Equals(vals[i].Type))
                    throw Err($"type {ty} does not match the value's type {vals[i].Type}", at);
            }
        }
        var loc = OptLocation();
        return Operation.CreateUnchecked("func.return", vals, [], null, 0, loc);
    }

    private Operation GenericOp()
    {
        Ws();
        int start = _pos;
        var resultNames = new List<(string, int)>();
        if (Peek("%"))
        {
            do
            {
                Ws();
                resultNames.Add((ValueName('%'), _pos));
            } while (Accept(","));
            Expect("=");
        }
        Ws();
        int nameAt = _pos;
        string name = Ident();
        if (!name.Contains('.'))
            throw Err($"expected an operation name such as tensor.add, found '{name}'", nameAt);
        var operands = new List<Value>();
        if (Peek("%"))
        {
            do operands.Add(Use());
            while (Accept(","));
        }
        var attrs = Peek("{") ? AttrDict() : [];
        Expect(":");
        Expect("(");
        var operandTypes = new List<MplType>();
        if (!Accept(")"))
        {
            do operandTypes.Add(Type());
            while (Accept(","));
            Expect(")");
        }
        Expect("->");
        var results = ResultTypes();
        var loc = OptLocation();
        if (operandTypes.Count != operands.Count)
            throw Err($"{operands.Count} operand(s) but {operandTypes.Count} operand type(s)", nameAt);
        for (int i = 0; i < operands.Count; i++)
            if (!operandTypes[i].Equals(operands[i].Type))
                throw Err($"operand {i} has type {operands[i].Type} but the op says {operandTypes[i]}", nameAt);
        if (resultNames.Count != results.Count)
            throw Err($"{resultNames.Count} result name(s) but {results.Count} result type(s)", start);
        Operation op;
        try
        {
            op = Builder.Build(name, operands, attrs, results, loc);
        }
        catch (IRException e)
        {
            throw Err(e.Message, nameAt);
        }
        for (int i = 0; i < results.Count; i++)
            Bind(resultNames[i].Item1, op.Results[i], resultNames[i].Item2);
        return op;
    }
}
