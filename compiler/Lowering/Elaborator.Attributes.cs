using System.Globalization;
using ParallelCompiler.IR;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

public sealed partial class Elaborator
{
    private static readonly string[] Schedules = ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2"];

    private static readonly Dictionary<string, (string Name, double? Default)[]> Optimizers = new()
    {
        ["sgd"] = [("lr", null), ("momentum", 0), ("weight_decay", 0)],
        ["adam"] = [("lr", null), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8)],
    };

    /// <summary>
    /// The values an optimizer setting may take (docs/language.md): a learning rate and an epsilon above 0 and
    /// finite, a weight decay at least 0, a momentum or beta in [0, 1): outside, training diverges or never moves.
    /// </summary>
    private static (Func<double, bool> Ok, string Range)? HyperparameterRange(string name) =>
        name switch
        {
            "lr" or "eps" => (v => v > 0 && double.IsFinite(v), "a finite number above 0"),
            "weight_decay" => (v => v >= 0 && double.IsFinite(v), "a finite number of at least 0"),
            "momentum" or "beta1" or "beta2" => (v => v >= 0 && v < 1, "at least 0 and below 1"),
            _ => null,
        };

    private void CheckAttributes(BlockDecl decl)
    {
        foreach (var a in decl.Attributes)
        {
            switch (a.Name)
            {
                case "pipeline" when !decl.IsModel:
                    throw Error(a.Span, "@pipeline applies to a model, not a layer");
                case "pipeline":
                    break;
                case "remat":
                    RematFirst(decl);
                    break;
                default:
                    throw Error(a.Span, $"unknown attribute '@{a.Name}' (known: @pipeline, @remat)");
            }
        }
    }

    /// <summary>
    /// The k of <c>@remat(first = k)</c> (recompute only the first k instances of the layer in each pipeline stage,
    /// or in the model without one), or null for a plain <c>@remat</c> or none.
    /// </summary>
    private long? RematFirst(BlockDecl decl)
    {
        var a = decl.Attributes.FirstOrDefault(x => x.Name == "remat");
        if (a == null || a.Args.Count == 0)
            return null;
        if (decl.IsModel)
            throw Error(a.Span, "@remat(first = ...) applies to a layer (the model has one instance)");
        if (a.Args.Count > 1 || a.Args[0].Name != "first")
            throw Error(
                a.Args[a.Args[0].Name != "first" ? 0 : 1].Span,
                "@remat takes no arguments, or first = k: recompute the first k instances of the layer in each "
                    + "pipeline stage"
            );
        long k = ConstInt(a.Args[0].Value, "first");
        if (k < 1)
            throw Error(a.Args[0].Value.Span, $"first must be at least 1, got {k}");
        return k;
    }

    /// <summary>The <c>@pipeline(...)</c> settings as a dictionary attribute, checked against the mesh.</summary>
    private DictAttr? PipelineAttr(BlockDecl model)
    {
        var a = model.Attributes.FirstOrDefault(x => x.Name == "pipeline");
        if (a == null)
            return null;
        var entries = new Dictionary<string, Attr>();
        string schedule = "gpipe";
        long? chunks = null;
        foreach (var arg in a.Args)
        {
            if (arg.Name == null)
                throw Error(
                    arg.Span,
                    "@pipeline arguments are named: axis = ..., microbatches = ..., schedule = \"...\""
                );
            if (entries.ContainsKey(arg.Name) || (arg.Name == "chunks" && chunks != null))
                throw Error(arg.Span, $"'{arg.Name}' is given twice");
            switch (arg.Name)
            {
                case "axis":
                    if (arg.Value is not NameExpr n)
                        throw Error(arg.Value.Span, "axis must name a mesh axis, e.g. axis = pp");
                    if (!_meshAxes.Any(m => m.Name == n.Name))
                        throw Error(
                            arg.Value.Span,
                            _meshName == null
                                ? "@pipeline needs a mesh declaration"
                                : $"mesh '{_meshName}' has no axis '{n.Name}' (its axes: "
                                    + $"{string.Join(", ", _meshAxes.Select(m => m.Name))})"
                        );
                    entries["axis"] = Attr.Str(n.Name);
                    break;
                case "microbatches":
                    long m = ConstInt(arg.Value, "microbatches");
                    if (m < 1)
                        throw Error(arg.Value.Span, $"microbatches must be at least 1, got {m}");
                    entries["microbatches"] = Attr.Int(m);
                    break;
                case "schedule":
                    if (Eval(arg.Value, Scope.Global) is not StringVal s || !Schedules.Contains(s.Value))
                        throw Error(
                            arg.Value.Span,
                            "schedule must be \"gpipe\", \"1f1b\", \"interleaved\", \"zb-h1\" or \"zb-h2\""
                        );
                    schedule = s.Value;
                    break;
                case "chunks":
                    chunks = ConstInt(arg.Value, "chunks");
                    if (chunks < 1)
                        throw Error(arg.Value.Span, $"chunks must be at least 1, got {chunks}");
                    break;
                default:
                    throw Error(
                        arg.Span,
                        $"@pipeline has no setting '{arg.Name}' (settings: axis, microbatches, " + $"schedule, chunks)"
                    );
            }
        }
        if (!entries.ContainsKey("axis"))
            throw Error(a.Span, "@pipeline needs axis = MESH_AXIS");
        if (chunks != null && schedule != "interleaved")
            throw Error(a.Span, "chunks applies only to schedule = \"interleaved\"");
        entries.TryAdd("microbatches", Attr.Int(1));
        entries["schedule"] = Attr.Str(schedule);
        entries["chunks"] = Attr.Int(chunks ?? (schedule == "interleaved" ? 2 : 1));
        return new DictAttr(entries);
    }

    /// <summary>The <c>train</c> declaration as a dictionary attribute, with the optimizer's defaults filled
    /// in. <paramref name="module"/> is null when the model had errors (its loss is not checked then).</summary>
    private DictAttr TrainAttr(TrainDecl t, BlockDecl entry, Operation? module)
    {
        if (!_blocks.TryGetValue(t.Name, out var target) || !target.IsModel)
            throw Error(t.NameSpan, $"train: '{t.Name}' is not a model");
        if (target != entry)
            throw Error(t.NameSpan, $"train: '{t.Name}' is not the model being compiled ('{entry.Name}')");
        var ret = module?.EntryFunction()!.ResultTypes()[0] as TensorType;
        if (module != null && (ret == null || ret.Rank != 0 || !ret.DType.IsFloat()))
            throw Error(
                t.NameSpan,
                $"train: '{t.Name}' must return a scalar float loss, but returns " + $"{ret?.ToSourceString()}"
            );
        if (!Optimizers.TryGetValue(t.Optimizer, out var spec))
            throw Error(
                t.OptimizerSpan,
                $"unknown optimizer '{t.Optimizer}' (known: " + $"{string.Join(", ", Optimizers.Keys)})"
            );
        var values = new Dictionary<string, Attr>
        {
            ["model"] = Attr.Str(t.Name),
            ["optimizer"] = Attr.Str(t.Optimizer),
        };
        foreach (var a in t.Args)
        {
            if (!spec.Any(s => s.Name == a.Name))
                throw Error(
                    a.Span,
                    $"{t.Optimizer} has no setting '{a.Name}' (settings: {string.Join(", ", spec.Select(s => s.Name))})"
                );
            if (values.ContainsKey(a.Name!))
                throw Error(a.Span, $"'{a.Name}' is given twice");
            double v = RequireNumber(Eval(a.Value, Scope.Global), a.Value.Span, a.Name!);
            values[a.Name!] = Attr.Float(v);
            // Every setting out of range is reported, not only the first.
            if (HyperparameterRange(a.Name!) is var (ok, range) && !ok(v))
                Report(
                    Error(
                        a.Value.Span,
                        $"{t.Optimizer}: {a.Name} must be {range}, got {v.ToString("G", CultureInfo.InvariantCulture)}"
                    )
                );
        }
        foreach (var (name, dflt) in spec)
        {
            if (values.ContainsKey(name))
                continue;
            if (dflt == null)
                throw Error(t.Span, $"{t.Optimizer} needs {name} = ...");
            values[name] = Attr.Float(dflt.Value);
        }
        if (t.Precision is { } precision)
        {
            if (precision is not ("bf16" or "fp16" or "f32"))
                throw Error(t.PrecisionSpan, $"unknown precision '{precision}' (known: bf16, fp16, f32)");
            values["precision"] = Attr.Str(precision);
        }
        return new DictAttr(values);
    }
}
