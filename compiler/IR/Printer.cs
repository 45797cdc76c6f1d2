using System.Text;

namespace ParallelCompiler.IR;

/// <summary>
/// Prints IR as text that <see cref="IRParser"/> reads back to the same IR: print, parse, print gives identical
/// text. Values are named after their hints (made unique per function) or numbered.
/// </summary>
public sealed class Printer
{
    private readonly StringBuilder _sb = new();
    private readonly Dictionary<Value, string> _names = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>Print <c>loc(...)</c> after every operation.</summary>
    public bool PrintLocations { get; init; }

    /// <summary>Prints an operation (usually a module) and everything inside it.</summary>
    public static string Print(Operation op, bool locations = false)
    {
        var p = new Printer { PrintLocations = locations };
        p.PrintOp(op, 0);
        return p._sb.ToString();
    }

    /// <summary>True for names that print without quoting: identifiers and plain numbers.</summary>
    public static bool IsIdentifier(string s) =>
        s.Length > 0
        && (char.IsAsciiLetter(s[0]) || s[0] == '_')
        && s.All(c => char.IsAsciiLetterOrDigit(c) || c == '_' || c == '.' || c == '$');

    /// <summary>An attribute key, quoted when it is not an identifier.</summary>
    public static string AttrKey(string k) => IsIdentifier(k) ? k : StringAttr.Quote(k);

    private string Name(Value v)
    {
        // A value not yet defined here (invalid IR being dumped) still prints, so the verifier's message can be read
        // beside it.
        return _names.TryGetValue(v, out var n) ? "%" + n : "%<<undefined>>";
    }

    private string Define(Value v)
    {
        string name;
        if (v.NameHint != null && IsIdentifier(v.NameHint))
        {
            name = v.NameHint;
            for (int i = 1; !_used.Add(name); i++)
                name = $"{v.NameHint}_{i}";
        }
        else
        {
            do name = (_counter++).ToString();
            while (!_used.Add(name));
        }
        _names[v] = name;
        return "%" + name;
    }

    private void Indent(int depth) => _sb.Append(' ', depth * 2);

    private void PrintOp(Operation op, int depth)
    {
        Indent(depth);
        switch (op.Name)
        {
            case "builtin.module":
                PrintModule(op, depth);
                break;
            case "func.func":
                PrintFunc(op, depth);
                break;
            case "func.return":
                _sb.Append("func.return");
                if (op.Operands.Count > 0)
                    _sb.Append(' ')
                        .Append(string.Join(", ", op.Operands.Select(Name)))
                        .Append(" : ")
                        .Append(string.Join(", ", op.Operands.Select(o => o.Type)));
                break;
            default:
                PrintGeneric(op);
                break;
        }
        if (PrintLocations && !op.Location.IsUnknown && op.Name != "builtin.module" && op.Name != "func.func")
            _sb.Append(' ').Append(op.Location);
        _sb.Append('\n');
    }

    private void PrintAttrDict(Operation op, IEnumerable<string>? skip = null, string prefix = " ")
    {
        var keys = op.Attributes.Keys.Where(k => skip == null || !skip.Contains(k)).ToList();
        if (keys.Count == 0)
            return;
        _sb.Append(prefix)
            .Append('{')
            .Append(string.Join(", ", keys.Select(k => $"{AttrKey(k)} = {op.Attributes[k]}")))
            .Append('}');
    }

    private void PrintModule(Operation op, int depth)
    {
        _sb.Append("module");
        PrintAttrDict(op, prefix: " attributes ");
        _sb.Append(" {\n");
        foreach (var inner in op.Regions[0].Entry.Operations)
            PrintOp(inner, depth + 1);
        Indent(depth);
        _sb.Append('}');
    }

    private void PrintFunc(Operation op, int depth)
    {
        _names.Clear();
        _used.Clear();
        _counter = 0; // functions are isolated scopes
        var entry = op.Regions[0].Entry;
        _sb.Append("func.func @").Append(op.StringAttr("sym_name")).Append('(');
        _sb.Append(string.Join(", ", entry.Arguments.Select(a => $"{Define(a)}: {a.Type}")));
        _sb.Append(") -> ");
        var results = FuncOpDef.ResultTypes(op);
        _sb.Append(results.Count == 1 ? results[0].ToString() : "(" + string.Join(", ", results) + ")");
        PrintAttrDict(op, ["sym_name", "result_types"], " attributes ");
        if (PrintLocations && !op.Location.IsUnknown)
            _sb.Append(' ').Append(op.Location);
        _sb.Append(" {\n");
        foreach (var inner in entry.Operations)
            PrintOp(inner, depth + 1);
        Indent(depth);
        _sb.Append('}');
    }

    private void PrintGeneric(Operation op)
    {
        if (op.Regions.Count > 0)
            throw new IRException($"no text form for '{op.Name}' with regions");
        if (op.Results.Count > 0)
            _sb.Append(string.Join(", ", op.Results.Select(Define))).Append(" = ");
        _sb.Append(op.Name);
        if (op.Operands.Count > 0)
            _sb.Append(' ').Append(string.Join(", ", op.Operands.Select(Name)));
        PrintAttrDict(op);
        _sb.Append(" : (").Append(string.Join(", ", op.Operands.Select(o => o.Type))).Append(") -> ");
        _sb.Append(
            op.Results.Count == 1
                ? op.Results[0].Type.ToString()
                : "(" + string.Join(", ", op.Results.Select(r => r.Type)) + ")"
        );
    }
}
