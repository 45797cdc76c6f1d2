using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

public sealed partial class Elaborator
{
    private static readonly Dictionary<string, Func<double, double>> ScalarMath = new()
    {
        ["relu"] = x => Math.Max(x, 0),
        ["gelu"] = x => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        ["silu"] = x => x / (1 + Math.Exp(-x)),
        ["sigmoid"] = x => 1 / (1 + Math.Exp(-x)),
        ["tanh"] = Math.Tanh,
        ["exp"] = Math.Exp,
        ["log"] = Math.Log,
        ["sqrt"] = Math.Sqrt,
        ["rsqrt"] = x => 1 / Math.Sqrt(x),
    };

    /// <summary>Parameters of each built-in; a trailing '?' marks an optional one.</summary>
    private static readonly Dictionary<string, string[]> BuiltinParams = new()
    {
        ["sum"] = ["x", "axis?", "keepdims?"],
        ["mean"] = ["x", "axis?", "keepdims?"],
        ["max"] = ["x", "axis?", "keepdims?"],
        ["softmax"] = ["x", "axis?"],
        ["layernorm"] = ["x", "g", "b", "eps?"],
        ["rmsnorm"] = ["x", "g", "eps?"],
        ["reshape"] = ["x", "shape"],
        ["transpose"] = ["x", "perm?"],
        ["concat"] = ["tensors", "axis?"],
        ["embedding"] = ["ids", "table"],
        ["causal_mask"] = ["x"],
        ["cross_entropy"] = ["logits", "labels"],
        ["reshard"] = ["x", "sharding"],
    };

    private EValue CallBuiltin(CallExpr c, Scope scope)
    {
        if (ScalarMath.TryGetValue(c.Callee, out var f))
        {
            var a = BindBuiltin(c, ["x"], scope);
            return a["x"].Value switch
            {
                IntVal or FloatVal => new FloatVal(f(AsDouble(a["x"].Value!))),
                TensorVal t => Op("tensor." + c.Callee, c.Span, t.Value),
                var v => throw Error(a["x"].Span, $"{c.Callee} expects a tensor or a number, got {v!.Describe()}"),
            };
        }
        if (!BuiltinParams.TryGetValue(c.Callee, out var names))
        {
            string hint = c.Callee is "normal" or "zeros" or "ones"
                ? " (initialisers may only follow 'param NAME: TYPE =')"
                : "";
            throw Error(c.CalleeSpan, $"unknown function '{c.Callee}'{hint}");
        }
        var args = BindBuiltin(c, names, scope);
        Value T(string n) => RequireTensor(args[n].Value!, args[n].Span, $"'{n}' of {c.Callee}");
        switch (c.Callee)
        {
            case "sum" or "mean" or "max":
            {
                var x = T("x");
                long[] axes = args["axis"].Value switch
                {
                    null => Enumerable.Range(0, x.TensorType.Rank).Select(i => (long)i).ToArray(),
                    var v => Axes(v, args["axis"].Span),
                };
                bool keep = args["keepdims"].Value is { } k
                    ? (k as BoolVal ?? throw Error(args["keepdims"].Span, "keepdims must be true or false")).Value
                    : false;
                return Op(
                    "tensor." + c.Callee,
                    c.Span,
                    [x],
                    [new("axes", Attr.Ints(axes)), new("keepdims", Attr.Bool(keep))]
                );
            }
            case "softmax":
                return Op(
                    "tensor.softmax",
                    c.Span,
                    [T("x")],
                    [new("axis", Attr.Int(OptInt(args["axis"], -1, "axis")))]
                );
            case "layernorm":
                return Op(
                    "tensor.layernorm",
                    c.Span,
                    [T("x"), T("g"), T("b")],
                    [new("eps", Attr.Float(OptNumber(args["eps"], 1e-5, "eps")))]
                );
            case "rmsnorm":
                return Op(
                    "tensor.rmsnorm",
                    c.Span,
                    [T("x"), T("g")],
                    [new("eps", Attr.Float(OptNumber(args["eps"], 1e-6, "eps")))]
                );
            case "reshape":
            {
                var x = T("x");
                var shape = Axes(args["shape"].Value!, args["shape"].Span, "shape");
                int infer = Array.IndexOf(shape, -1L);
                if (infer >= 0 && Array.LastIndexOf(shape, -1L) == infer)
                {
                    long known = shape.Where(d => d != -1).Aggregate(1L, (p, d) => p * d);
                    if (known > 0 && x.TensorType.NumElements % known == 0)
                        shape[infer] = x.TensorType.NumElements / known;
                }
                return Op("tensor.reshape", c.Span, [x], [new("shape", Attr.Ints(shape))]);
            }
            case "transpose":
            {
                var x = T("x");
                var perm = args["perm"].Value is { } p
                    ? Axes(p, args["perm"].Span, "perm")
                    : Enumerable.Range(0, x.TensorType.Rank).Reverse().Select(i => (long)i).ToArray();
                return Op("tensor.transpose", c.Span, [x], [new("perm", Attr.Ints(perm))]);
            }
            case "concat":
            {
                if (args["tensors"].Value is not ListVal list || list.Items.Count == 0)
                    throw Error(
                        args["tensors"].Span,
                        "concat expects a non-empty list of tensors, e.g. concat([a, b], 0)"
                    );
                var ts = list
                    .Items.Select((v, i) => RequireTensor(v, list.Exprs[i].Span, "an element of concat's list"))
                    .ToArray();
                return Op("tensor.concat", c.Span, ts, [new("axis", Attr.Int(OptInt(args["axis"], 0, "axis")))]);
            }
            case "embedding":
                return Op("tensor.embedding", c.Span, T("ids"), T("table"));
            case "causal_mask":
                return Op("tensor.causal_mask", c.Span, T("x"));
            case "cross_entropy":
                return Op("tensor.cross_entropy", c.Span, T("logits"), T("labels"));
            case "reshard":
            {
                var x = T("x");
                if (args["sharding"].Value is not ShardVal sv)
                    throw Error(args["sharding"].Span, "reshard expects a sharding, e.g. reshard(x, shard[dp, _])");
                var target = x.TensorType.WithSharding(LowerSharding(sv.Spec, x.TensorType.WithSharding(null)));
                return Op("dist.reshard", c.Span, [x], null, target);
            }
        }
        throw Error(c.CalleeSpan, $"unknown function '{c.Callee}'");
    }

    private Dictionary<string, (EValue? Value, TextSpan Span)> BindBuiltin(CallExpr c, string[] spec, Scope scope)
    {
        var names = spec.Select(s => s.TrimEnd('?')).ToArray();
        var result = names.ToDictionary(n => n, _ => ((EValue?)null, c.Span));
        int pos = 0;
        foreach (var a in c.Args)
        {
            string name;
            if (a.Name == null)
            {
                if (pos >= names.Length)
                    throw Error(a.Span, $"{c.Callee} takes at most {names.Length} argument(s), got {c.Args.Count}");
                name = names[pos++];
            }
            else if (!result.ContainsKey(a.Name))
                throw Error(
                    a.Span,
                    $"{c.Callee} has no parameter named '{a.Name}' (parameters: " + $"{string.Join(", ", names)})"
                );
            else
                name = a.Name;
            if (result[name].Item1 != null)
                throw Error(a.Span, $"argument '{name}' of {c.Callee} is given twice");
            result[name] = (Eval(a.Value, scope), a.Value.Span);
        }
        for (int i = 0; i < spec.Length; i++)
            if (!spec[i].EndsWith('?') && result[names[i]].Item1 == null)
                throw Error(c.Span, $"{c.Callee} is missing argument '{names[i]}'");
        return result;
    }

    private long[] Axes(EValue v, TextSpan span, string what = "axis") =>
        v switch
        {
            IntVal i => [i.Value],
            ListVal l => l.Items.Select((x, k) => RequireInt(x, l.Exprs[k].Span, $"an entry of {what}")).ToArray(),
            _ => throw Error(span, $"{what} must be an integer or a list of integers, got {v.Describe()}"),
        };

    private long OptInt((EValue? Value, TextSpan Span) a, long dflt, string what) =>
        a.Value == null ? dflt : RequireInt(a.Value, a.Span, what);

    private double OptNumber((EValue? Value, TextSpan Span) a, double dflt, string what) =>
        a.Value == null ? dflt : RequireNumber(a.Value, a.Span, what);
}
