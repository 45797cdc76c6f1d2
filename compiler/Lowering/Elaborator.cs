using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

/// <summary>
/// Lowers a parsed .mpl program to tensor IR: folds consts, builds the mesh, unrolls loops, instantiates
/// layers (each call a new instance with its own parameters, named by dotted path), infers every shape, and
/// records the training and pipeline declarations as attributes. Errors carry source spans.
/// </summary>
public sealed partial class Elaborator
{
    /// <summary>Most loop iterations unrolled in one program; beyond it compilation stops with an error.</summary>
    public const long MaxUnrolledIterations = 1_000_000;

    /// <summary>Deepest chain of layer calls.</summary>
    public const int MaxCallDepth = 64;

    private readonly ProgramNode _program;
    private readonly SourceText _src;
    private readonly DiagnosticBag _diags;
    private readonly CompileOptions _options;
    private readonly Dictionary<string, ConstDecl> _consts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _constValues = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _floatConstValues = new(StringComparer.Ordinal);
    private readonly HashSet<string> _constsInProgress = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BlockDecl> _blocks = new(StringComparer.Ordinal);
    private readonly List<(string Name, long Size)> _meshAxes = new();
    private string? _meshName;
    private long _unrolled;
    private readonly Builder _b = new();

    private Elaborator(ProgramNode program, DiagnosticBag diags, CompileOptions options)
    {
        _program = program;
        _src = program.Source;
        _diags = diags;
        _options = options;
    }

    /// <summary>Lowers <paramref name="program"/>; returns null after reporting errors.</summary>
    public static Operation? Lower(ProgramNode program, DiagnosticBag diags, CompileOptions options)
    {
        var e = new Elaborator(program, diags, options);
        try
        {
            return e.Run();
        }
        catch (ElabException ex)
        {
            e.Report(ex);
            return null;
        }
        catch (ReportedException)
        {
            return null;
        }
    }

    private ElabException Error(TextSpan span, string message) => new(span, message);

    private Operation? Run()
    {
        CollectDecls();
        foreach (var name in _consts.Keys)
            TryConst(name);
        foreach (var name in _options.Defines.Keys.Concat(_options.FloatDefines.Keys))
            if (!_consts.ContainsKey(name))
                _diags.Error(null, default, $"-D {name}: the program has no const named '{name}'");
        BuildMesh();
        if (_diags.HasErrors)
            return null;

        var model = PickEntry();
        var module = ModuleOp.Create();
        if (_meshName != null)
        {
            var mesh = Operation.CreateUnchecked(
                "dist.mesh",
                [],
                [],
                [
                    new("sym_name", Attr.Str(_meshName)),
                    new("axes", Attr.Strs(_meshAxes.Select(a => a.Name))),
                    new("shape", Attr.Ints(_meshAxes.Select(a => a.Size))),
                ]
            );
            module.Regions[0].Entry.Append(mesh);
        }
        module.SetAttr("entry", Attr.Str(model.Name));
        // The model's errors and the train declaration's are independent: both are reported.
        bool lowered = false;
        try
        {
            LowerModel(module, model);
            lowered = !_diags.HasErrors;
            if (_rematFirst.Count > 0)
                module.SetAttr(
                    "remat_first",
                    new DictAttr(_rematFirst.Select(kv => new KeyValuePair<string, Attr>(kv.Key, Attr.Int(kv.Value))))
                );
        }
        catch (ElabException e)
        {
            Report(e);
        }
        catch (ReportedException) { }
        foreach (var t in _program.Decls.OfType<TrainDecl>())
            try
            {
                module.SetAttr("train", TrainAttr(t, model, lowered ? module : null));
            }
            catch (ElabException e)
            {
                Report(e);
            }
        return _diags.HasErrors ? null : module;
    }

    private void CollectDecls()
    {
        MeshDecl? mesh = null;
        foreach (var d in _program.Decls)
        {
            switch (d)
            {
                case ConstDecl c:
                    if (!_consts.TryAdd(c.Name, c))
                        _diags.Error(_src, c.NameSpan, $"const '{c.Name}' is already defined");
                    break;
                case MeshDecl m:
                    if (mesh != null)
                        _diags.Error(_src, m.NameSpan, $"only one mesh per program: '{mesh.Name}' is already declared");
                    else
                        mesh = m;
                    break;
                case BlockDecl b:
                    if (!_blocks.TryAdd(b.Name, b))
                        _diags.Error(_src, b.NameSpan, $"'{b.Name}' is already defined");
                    break;
            }
        }
        foreach (var c in _consts.Values)
            if (_blocks.ContainsKey(c.Name))
                _diags.Error(_src, c.NameSpan, $"'{c.Name}' is both a const and a layer or model");
        if (mesh != null)
        {
            _meshName = mesh.Name;
            var seen = new HashSet<string>();
            foreach (var a in mesh.Axes)
            {
                if (!seen.Add(a.Name))
                {
                    _diags.Error(_src, a.Span, $"mesh axis '{a.Name}' is declared twice");
                    continue;
                }
                try
                {
                    long size = ConstInt(a.Size, "a mesh axis size");
                    if (size < 1)
                        _diags.Error(
                            _src,
                            a.Size.Span,
                            $"mesh axis '{a.Name}' has size {size}; sizes must be at least 1"
                        );
                    _meshAxes.Add((a.Name, size));
                }
                catch (ElabException e)
                {
                    _diags.Error(_src, e.Span, e.Message);
                }
            }
        }
    }

    private void BuildMesh()
    {
        if (_options.Mesh.Count == 0)
            return;
        if (_meshName == null)
        {
            _meshName = "mesh";
            foreach (var (n, s) in _options.Mesh)
                _meshAxes.Add((n, s));
        }
        else
        {
            foreach (var (n, s) in _options.Mesh)
            {
                int i = _meshAxes.FindIndex(a => a.Name == n);
                if (i < 0)
                    _diags.Error(
                        null,
                        default,
                        $"--mesh: mesh '{_meshName}' has no axis '{n}' (its axes: "
                            + $"{string.Join(", ", _meshAxes.Select(a => a.Name))})"
                    );
                else
                    _meshAxes[i] = (n, s);
            }
        }
        foreach (var (n, s) in _options.Mesh)
            if (s < 1)
                _diags.Error(null, default, $"--mesh: axis '{n}' has size {s}; sizes must be at least 1");
    }

    private BlockDecl PickEntry()
    {
        var models = _blocks.Values.Where(b => b.IsModel).ToList();
        if (_options.Entry != null)
        {
            if (_blocks.TryGetValue(_options.Entry, out var e) && e.IsModel)
                return e;
            throw Error(
                new TextSpan(0, 0),
                $"--entry {_options.Entry}: no model named '{_options.Entry}' (models: "
                    + $"{string.Join(", ", models.Select(m => m.Name))})"
            );
        }
        if (models.Count == 1)
            return models[0];
        if (models.Count == 0)
            throw Error(
                new TextSpan(0, 0),
                "the program has no model: declare one with 'model NAME(args) -> type { ... }'"
            );
        throw Error(
            models[1].NameSpan,
            $"the program has several models ({string.Join(", ", models.Select(m => m.Name))}): choose one with --entry"
        );
    }

    // ---- consts ----

    private void TryConst(string name)
    {
        try
        {
            ConstEValue(name, _consts[name].NameSpan);
        }
        catch (ElabException e)
        {
            _diags.Error(_src, e.Span, e.Message);
            _constValues[name] = 0;
        }
    }

    /// <summary>An integer const's value (an error at <paramref name="useSpan"/> for a float one).</summary>
    private long ConstValue(string name, TextSpan useSpan) =>
        RequireInt(ConstEValue(name, useSpan), useSpan, $"const '{name}' here");

    /// <summary>A const's value: an integer, or a float (a learning rate, say), which only numbers may use.</summary>
    private EValue ConstEValue(string name, TextSpan useSpan)
    {
        if (_constValues.TryGetValue(name, out long v))
            return new IntVal(v);
        if (_floatConstValues.TryGetValue(name, out double fv))
            return new FloatVal(fv);
        if (_options.Defines.TryGetValue(name, out long d))
            return new IntVal(_constValues[name] = d);
        if (_options.FloatDefines.TryGetValue(name, out double fd))
            return new FloatVal(_floatConstValues[name] = fd);
        var decl = _consts[name];
        if (!_constsInProgress.Add(name))
            throw Error(useSpan, $"const '{name}' depends on itself");
        try
        {
            switch (Eval(decl.Value, Scope.Global))
            {
                case FloatVal f when double.IsFinite(f.Value):
                    return new FloatVal(_floatConstValues[name] = f.Value);
                case var other:
                    return new IntVal(_constValues[name] = RequireInt(other, decl.Value.Span, $"const '{name}'"));
            }
        }
        finally
        {
            _constsInProgress.Remove(name);
        }
    }

    /// <summary>Evaluates an integer expression that may use consts only.</summary>
    private long ConstInt(Expr e, string what) => RequireInt(Eval(e, Scope.Global), e.Span, what);

    private static long RequireInt(EValue v, TextSpan span, string what) =>
        v is IntVal i
            ? i.Value
            : throw new ElabException(span, $"{what} must be a compile-time integer, but this is {v.Describe()}");

    // ---- types ----

    private TensorType LowerType(TypeNode t, Scope scope)
    {
        if (!DTypes.TryParse(t.DType, out var dtype))
            throw Error(t.DTypeSpan, $"unknown element type '{t.DType}' (expected f32, f16, bf16 or i32)");
        var dims = new long[t.Dims.Count];
        for (int i = 0; i < dims.Length; i++)
        {
            dims[i] = RequireInt(Eval(t.Dims[i], scope), t.Dims[i].Span, "a dimension");
            if (dims[i] < 0)
                throw Error(t.Dims[i].Span, $"dimension {i} is {dims[i]}; dimensions must be non-negative");
        }
        var shape = new TensorType(dtype, dims);
        try
        {
            _ = shape.NumElements;
        }
        catch (OverflowException)
        {
            throw Error(t.Span, $"{shape.ToSourceString()} has more than 2^63 elements");
        }
        return t.Shard == null ? shape : shape.WithSharding(LowerSharding(t.Shard, shape));
    }

    private Sharding LowerSharding(ShardSpec spec, TensorType type)
    {
        if (_meshName == null)
            throw Error(spec.Span, "shard[...] needs a mesh: declare one with 'mesh NAME[axis = size, ...];'");
        if (spec.Dims.Count != type.Rank)
            throw Error(
                spec.Span,
                $"shard[...] has {spec.Dims.Count} entries but {type.ToSourceString()} has "
                    + $"{type.Rank} dimension(s)"
            );
        var seen = new HashSet<string>();
        for (int i = 0; i < spec.Dims.Count; i++)
        {
            long product = 1;
            foreach (var axis in spec.Dims[i].Axes)
            {
                int idx = _meshAxes.FindIndex(a => a.Name == axis);
                if (idx < 0)
                    throw Error(
                        spec.Dims[i].Span,
                        $"mesh '{_meshName}' has no axis '{axis}' (its axes: "
                            + $"{string.Join(", ", _meshAxes.Select(a => a.Name))})"
                    );
                if (!seen.Add(axis))
                    throw Error(spec.Dims[i].Span, $"mesh axis '{axis}' appears more than once in this sharding");
                product *= _meshAxes[idx].Size;
            }
            if (product > 1 && type.Shape[i] % product != 0)
                throw Error(
                    spec.Dims[i].Span,
                    $"dimension {i} of {type.ToSourceString()} (size {type.Shape[i]}) is not divisible by mesh axes "
                        + $"({string.Join(", ", spec.Dims[i].Axes)}) of total size {product}"
                );
        }
        return new Sharding(spec.Dims.Select(d => d.Axes));
    }
}
