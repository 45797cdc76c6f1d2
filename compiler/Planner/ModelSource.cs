using System.Globalization;
using System.Text;
using ParallelCompiler.Lowering;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Planner;

/// <summary>
/// A parallel strategy as the planner writes it into a model: the mesh <c>[pp, dp, tp]</c>, the pipeline's
/// microbatches and schedule, recomputation of the repeated layer, the ZeRO stage, and for every parameter
/// declaration (<c>layer.param</c>) the dimension it splits over <c>tp</c> (-1: replicated).
/// </summary>
public sealed record Plan(
    int Tp,
    int Pp,
    int Dp,
    int Microbatches,
    string Schedule,
    int Chunks,
    bool Remat,
    int Zero,
    IReadOnlyDictionary<string, int> ParamDims
)
{
    /// <summary>A layer the stack calls whose forward is recomputed in the backward (selective recomputation, with
    /// <see cref="Remat"/> false), or null.</summary>
    public string? Selective { get; init; }

    /// <summary>What is recomputed: none, full (the repeated layer) or the layer <see cref="Selective"/>
    /// names.</summary>
    public string Recompute => Remat ? (RematFirst is { } k ? $"first {k}" : "full") : Selective ?? "none";

    /// <summary>With <see cref="Remat"/>: recompute only the first k instances of the repeated layer in each model
    /// stage (<c>@remat(first = k)</c>), or null for all of them.</summary>
    public int? RematFirst { get; init; }

    /// <summary>The devices the plan uses.</summary>
    public int Devices => Tp * Pp * Dp;

    /// <summary>With a two-dimensional tensor-parallel mesh: the size of its second (minor) axis <c>ty</c>, the
    /// first being <c>tx</c> of <see cref="Tx"/> devices; 1 for the one axis <c>tp</c>.</summary>
    public int Ty { get; init; } = 1;

    /// <summary>The size of the first tensor-parallel axis (all of tp with one axis).</summary>
    public int Tx => Tp / Ty;

    /// <summary>With <see cref="Ty"/> &gt; 1: the dimension each parameter declaration splits over <c>ty</c> (-1:
    /// none); <see cref="ParamDims"/> then names the dimensions over <c>tx</c>. A dimension in both is split over
    /// the two axes, tx major.</summary>
    public IReadOnlyDictionary<string, int> ParamDimsY { get; init; } = NoDims;

    /// <summary>An empty sharding table.</summary>
    public static readonly IReadOnlyDictionary<string, int> NoDims = new Dictionary<string, int>();

    /// <summary>The tensor-parallel mesh: <c>8</c>, or <c>2x4</c> (tx by ty).</summary>
    public string TpMesh => Ty > 1 ? $"{Tx}x{Ty}" : $"{Tp}";

    /// <summary>Over how many devices of a tp group parameter declaration <paramref name="decl"/> is
    /// split.</summary>
    public int SplitOf(string decl)
    {
        int x = ParamDims.GetValueOrDefault(decl, -1);
        if (Ty == 1)
            return x >= 0 ? Tp : 1;
        return (x >= 0 ? Tx : 1) * (ParamDimsY.GetValueOrDefault(decl, -1) >= 0 ? Ty : 1);
    }

    /// <summary>The same plan with the intra-operator sharding of <paramref name="layout"/> (its tp mesh and
    /// parameter dimensions).</summary>
    public Plan WithLayout(Plan layout) =>
        this with
        {
            Tp = layout.Tp,
            Ty = layout.Ty,
            ParamDims = layout.ParamDims,
            ParamDimsY = layout.ParamDimsY,
        };

    /// <summary>One line: mesh, pipeline and the rest.</summary>
    public string Summary =>
        $"tp={TpMesh} pp={Pp} dp={Dp}, {Microbatches} microbatch{(Microbatches == 1 ? "" : "es")}"
        + (Pp > 1 ? $", {Schedule}{(Chunks > 1 ? $" x {Chunks} chunks" : "")}" : "")
        + (
            Remat
                ? RematFirst is { } k
                    ? $", recomputing the first {k} layers of each stage"
                    : ", full recomputation"
                : ""
        )
        + (Selective != null ? $", recomputing {Selective}" : "")
        + (Zero > 0 ? $", ZeRO-{Zero}" : "");

    /// <summary>The parameters split over tp, as <c>name/dim</c>, sorted; over a two-dimensional mesh
    /// <c>name/dx,dy</c> (the dimensions over tx and ty, <c>_</c> for none) after the mesh.</summary>
    public string Splits =>
        Ty == 1
            ? string.Join(
                " ",
                ParamDims
                    .Where(p => p.Value >= 0)
                    .OrderBy(p => p.Key, StringComparer.Ordinal)
                    .Select(p => $"{p.Key}/{p.Value}")
            )
            : string.Join(
                " ",
                ParamDims
                    .Keys.Concat(ParamDimsY.Keys)
                    .Distinct()
                    .Where(k => SplitOf(k) > 1)
                    .Order(StringComparer.Ordinal)
                    .Select(k => $"{k}/{Dim(ParamDims, k)},{Dim(ParamDimsY, k)}")
                    .Prepend($"{TpMesh}:")
            );

    private static string Dim(IReadOnlyDictionary<string, int> dims, string key) =>
        dims.GetValueOrDefault(key, -1) is var d and >= 0 ? $"{d}" : "_";
}

/// <summary>
/// What the planner reads from a model's source: the model, the loop that repeats a layer (its count and the layer),
/// the batch size const, every parameter declaration, and the consts' values; and the source rewritten with a
/// <see cref="Plan"/> (the text <c>mplc plan -o</c> writes).
/// </summary>
public sealed class ModelSource
{
    /// <summary>The text as read.</summary>
    public SourceText Source { get; }

    /// <summary>The syntax tree.</summary>
    public ProgramNode Program { get; }

    /// <summary>The model being planned.</summary>
    public BlockDecl Model { get; }

    /// <summary>The top-level <c>for</c> of the model that calls <see cref="RepeatedLayer"/>, or null.</summary>
    public ForStmt? Loop { get; }

    /// <summary>The layer the loop repeats, or null.</summary>
    public string? RepeatedLayer { get; }

    /// <summary>How many times the loop runs (1 without a loop).</summary>
    public long Layers { get; }

    /// <summary>The const that is the first dimension of the model's first input.</summary>
    public string BatchConst { get; }

    /// <summary>Its value.</summary>
    public long Batch { get; }

    /// <summary>The consts' values (after -D).</summary>
    public IReadOnlyDictionary<string, long> Consts { get; }

    /// <summary>Every parameter declaration by <c>layer.param</c>, with its shape.</summary>
    public IReadOnlyDictionary<string, (ParamStmt Decl, long[] Shape)> Params { get; }

    private ModelSource(
        SourceText source,
        ProgramNode program,
        BlockDecl model,
        ForStmt? loop,
        string? layer,
        long layers,
        string batchConst,
        long batch,
        Dictionary<string, long> consts,
        Dictionary<string, (ParamStmt, long[])> @params,
        IReadOnlyDictionary<string, string> defines
    )
    {
        Source = source;
        Program = program;
        Model = model;
        Loop = loop;
        RepeatedLayer = layer;
        Layers = layers;
        BatchConst = batchConst;
        Batch = batch;
        Consts = consts;
        Params = @params;
        _defines = defines;
    }

    /// <summary>The -D values, as they are written back into a plan.</summary>
    private readonly IReadOnlyDictionary<string, string> _defines;

    /// <summary>Reads <paramref name="src"/>; a model the planner cannot work on is a <see
    /// cref="UserErrorException"/>, a syntax error a <see cref="CompilationFailedException"/>.</summary>
    public static ModelSource Read(SourceText src, CompileOptions options)
    {
        var diags = new DiagnosticBag();
        var program = MplSyntax.Parse(src, diags) ?? throw new CompilationFailedException(diags);
        var models = program.Decls.OfType<BlockDecl>().Where(b => b.IsModel).ToList();
        var model =
            (options.Entry != null ? models.FirstOrDefault(m => m.Name == options.Entry) : models.FirstOrDefault())
            ?? throw new UserErrorException(
                options.Entry != null ? $"no model named '{options.Entry}'" : $"'{src.Path}' declares no model"
            );
        var consts = new Dictionary<string, long>(StringComparer.Ordinal);
        var decls = program.Decls.OfType<ConstDecl>().ToDictionary(c => c.Name, StringComparer.Ordinal);
        var floats = new HashSet<string>(options.FloatDefines.Keys, StringComparer.Ordinal);
        foreach (var c in program.Decls.OfType<ConstDecl>())
        {
            if (floats.Contains(c.Name) || (!options.Defines.ContainsKey(c.Name) && IsFloat(c.Value, floats)))
                floats.Add(c.Name); // a learning rate, say: no shape depends on it
            else
                consts[c.Name] = options.Defines.TryGetValue(c.Name, out long v) ? v : Eval(c.Value, consts);
        }
        if (model.Args.Count == 0 || model.Args[0].Type.Dims.Count == 0)
            throw new UserErrorException($"model '{model.Name}': the planner needs a batched first input");
        if (model.Args[0].Type.Dims[0] is not NameExpr { Name: var batchConst } || !decls.ContainsKey(batchConst))
            throw new UserErrorException(
                $"model '{model.Name}': the first dimension of '{model.Args[0].Name}' must be a const (the batch "
                    + "size), so that the planner can split it into microbatches"
            );
        var layers = program.Decls.OfType<BlockDecl>().Where(b => !b.IsModel).ToDictionary(b => b.Name);
        ForStmt? loop = null;
        string? repeated = null;
        foreach (var f in model.Body.OfType<ForStmt>())
        {
            var call = f
                .Body.Select(s =>
                    s switch
                    {
                        AssignStmt a => a.Value,
                        LetStmt l => l.Value,
                        _ => null,
                    }
                )
                .OfType<CallExpr>()
                .FirstOrDefault(c => layers.ContainsKey(c.Callee));
            if (call != null)
            {
                loop = f;
                repeated = call.Callee;
                break;
            }
        }
        long count = loop == null ? 1 : Eval(loop.Hi, consts) - Eval(loop.Lo, consts);
        var ps = new Dictionary<string, (ParamStmt, long[])>(StringComparer.Ordinal);
        foreach (var b in program.Decls.OfType<BlockDecl>())
        foreach (var p in Walk(b.Body).OfType<ParamStmt>())
            ps[$"{b.Name}.{p.Name}"] = (p, p.Type.Dims.Select(d => Eval(d, consts)).ToArray());
        var defines = options
            .Defines.Select(kv => new KeyValuePair<string, string>(
                kv.Key,
                kv.Value.ToString(CultureInfo.InvariantCulture)
            ))
            .Concat(
                options.FloatDefines.Select(kv => new KeyValuePair<string, string>(
                    kv.Key,
                    kv.Value.ToString("R", CultureInfo.InvariantCulture)
                ))
            )
            .ToDictionary(StringComparer.Ordinal);
        return new ModelSource(
            src,
            program,
            model,
            loop,
            repeated,
            count,
            batchConst,
            consts[batchConst],
            consts,
            ps,
            defines
        );
    }

    private static IEnumerable<Stmt> Walk(IEnumerable<Stmt> body)
    {
        foreach (var s in body)
        {
            yield return s;
            if (s is ForStmt f)
                foreach (var inner in Walk(f.Body))
                    yield return inner;
        }
    }

    /// <summary>True when <paramref name="e"/> holds a float literal or a float const.</summary>
    private static bool IsFloat(Expr e, IReadOnlySet<string> floats) =>
        e switch
        {
            FloatLit => true,
            NameExpr n => floats.Contains(n.Name),
            NegExpr n => IsFloat(n.Operand, floats),
            BinaryExpr b => IsFloat(b.Left, floats) || IsFloat(b.Right, floats),
            _ => false,
        };

    /// <summary>The value of an integer const expression.</summary>
    public static long Eval(Expr e, IReadOnlyDictionary<string, long> consts) =>
        e switch
        {
            IntLit i => i.Value,
            NameExpr n when consts.TryGetValue(n.Name, out long v) => v,
            NegExpr n => -Eval(n.Operand, consts),
            BinaryExpr b => b.Op switch
            {
                "+" => Eval(b.Left, consts) + Eval(b.Right, consts),
                "-" => Eval(b.Left, consts) - Eval(b.Right, consts),
                "*" => Eval(b.Left, consts) * Eval(b.Right, consts),
                "/" when Eval(b.Right, consts) != 0 => Math.DivRem(
                    Eval(b.Left, consts),
                    Eval(b.Right, consts)
                ).Quotient,
                "%" when Eval(b.Right, consts) != 0 => Eval(b.Left, consts) % Eval(b.Right, consts),
                _ => throw new UserErrorException($"the planner cannot evaluate '{b.Op}' in a const expression"),
            },
            _ => throw new UserErrorException("the planner needs integer consts for shapes and loop counts"),
        };

    /// <summary>The element size in bytes of a type written <paramref name="dtype"/> (f32, bf16, ...).</summary>
    public static int DTypeBytes(string dtype) =>
        dtype switch
        {
            "f16" or "bf16" => 2,
            "f64" or "i64" => 8,
            "i8" or "bool" => 1,
            _ => 4,
        };

    /// <summary>The bytes of the tensor the repeated layer takes (what a pipeline stage sends), or 0.</summary>
    public double LayerInputBytes(long batch)
    {
        if (RepeatedLayer == null)
            return 0;
        var layer = Program.Decls.OfType<BlockDecl>().First(b => b.Name == RepeatedLayer);
        if (layer.Args.Count == 0)
            return 0;
        var consts = new Dictionary<string, long>(Consts, StringComparer.Ordinal) { [BatchConst] = batch };
        var t = layer.Args[0].Type;
        return t.Dims.Aggregate(1.0, (a, d) => a * Eval(d, consts)) * DTypeBytes(t.DType);
    }

    /// <summary>
    /// The source with <paramref name="plan"/> written into it: the mesh <c>[pp, dp, tp]</c>, every parameter's
    /// sharding, the model's inputs split over dp, <c>@pipeline</c> on the model and <c>@remat</c> on the repeated
    /// layer; <paramref name="layers"/> replaces the loop's count and <paramref name="batch"/> the batch const when
    /// given; <paramref name="pipeline"/> writes <c>@pipeline</c> even for one stage of one microbatch (so that the
    /// cost model sees the forward and backward phases); <paramref name="stageBeforeLoop"/> writes a <c>stage;</c>
    /// boundary before the loop (the planner's weight-gradient profiles: the stack's backward then sends its input's
    /// gradient to the stage before it, as a stage of a zero-bubble pipeline does).
    /// </summary>
    public string Write(
        Plan plan,
        long? layers = null,
        long? batch = null,
        string? header = null,
        bool pipeline = false,
        bool stageBeforeLoop = false
    )
    {
        var edits = new List<(int Start, int Length, string Text)>();
        string text = Source.Text;
        // The mesh: replaced, or declared before the first declaration.
        string meshText =
            plan.Ty > 1
                ? $"mesh grid[pp = {plan.Pp}, dp = {plan.Dp}, tx = {plan.Tx}, ty = {plan.Ty}];"
                : $"mesh grid[pp = {plan.Pp}, dp = {plan.Dp}, tp = {plan.Tp}];";
        if (Program.Decls.OfType<MeshDecl>().FirstOrDefault() is { } mesh)
            edits.Add((mesh.Span.Start, mesh.Span.Length, meshText.Replace("grid", mesh.Name)));
        else
            edits.Add((Program.Decls.Count > 0 ? DeclStart(Program.Decls[0]) : 0, 0, meshText + "\n"));
        if (batch is { } b && Program.Decls.OfType<ConstDecl>().First(c => c.Name == BatchConst) is { } bc)
            edits.Add((bc.Value.Span.Start, bc.Value.Span.Length, b.ToString(CultureInfo.InvariantCulture)));
        // The consts -D set are written with their values, so the plan compiles as it was planned without them.
        foreach (var c in Program.Decls.OfType<ConstDecl>())
            if (_defines.TryGetValue(c.Name, out string? v) && !(batch != null && c.Name == BatchConst))
                edits.Add((c.Value.Span.Start, c.Value.Span.Length, v));
        if (layers is { } l && Loop != null)
            edits.Add((Loop.Hi.Span.Start, Loop.Hi.Span.Length, $"{Eval(Loop.Lo, Consts) + l}"));
        if (stageBeforeLoop && Loop != null)
            edits.Add((Loop.Span.Start, 0, "stage; "));
        foreach (var (key, (decl, shape)) in Params)
        {
            int dim = plan.ParamDims.GetValueOrDefault(key, -1);
            string shard =
                plan.Ty > 1 ? Shard(shape.Length, dim, plan.ParamDimsY.GetValueOrDefault(key, -1))
                : dim < 0 || plan.Tp == 1 ? ""
                : Shard(shape.Length, dim, "tp");
            Reshard(edits, decl.Type, shard);
        }
        foreach (var arg in Model.Args)
            Reshard(edits, arg.Type, plan.Dp > 1 && arg.Type.Dims.Count > 0 ? Shard(arg.Type.Dims.Count, 0, "dp") : "");
        // Attributes: the planner's replace the model's @pipeline and every layer's @remat.
        foreach (var block in Program.Decls.OfType<BlockDecl>())
        {
            bool isModel = block == Model,
                isLayer = block.Name == RepeatedLayer || RepeatedLayer == null && isModel;
            foreach (var a in block.Attributes)
                if (isModel && a.Name == "pipeline" || a.Name == "remat")
                    edits.Add((a.Span.Start, LineEnd(text, a.Span.End) - a.Span.Start, ""));
            var lines = new StringBuilder();
            if (isLayer && plan.Remat && plan.RematFirst is { } first)
                lines.Append($"@remat(first = {first})\n");
            else if (isLayer && plan.Remat || block.Name == plan.Selective)
                lines.Append("@remat\n");
            if (isModel && (plan.Pp > 1 || plan.Microbatches > 1 || pipeline))
            {
                string schedule =
                    plan.Chunks > 1
                        ? $"schedule = \"interleaved\", chunks = {plan.Chunks}"
                        : $"schedule = \"{plan.Schedule}\"";
                lines.Append($"@pipeline(axis = pp, microbatches = {plan.Microbatches}, {schedule})\n");
            }
            if (lines.Length > 0)
                edits.Add((DeclStart(block), 0, lines.ToString()));
        }
        var sb = new StringBuilder(text);
        foreach (var (start, length, t) in edits.OrderByDescending(e => e.Start).ThenByDescending(e => e.Length))
            sb.Remove(start, length).Insert(start, t);
        return header == null ? sb.ToString() : header + sb;
    }

    private static int DeclStart(Decl d) =>
        d is BlockDecl { Attributes.Count: > 0 } b ? Math.Min(b.Span.Start, b.Attributes[0].Span.Start) : d.Span.Start;

    private static int LineEnd(string text, int at)
    {
        int nl = text.IndexOf('\n', at);
        return nl < 0 ? text.Length : nl + 1;
    }

    private static string Shard(int rank, int dim, string axis) =>
        "shard[" + string.Join(", ", Enumerable.Range(0, rank).Select(d => d == dim ? axis : "_")) + "]";

    /// <summary>A sharding over the two tensor-parallel axes: dimension <paramref name="x"/> over tx, <paramref
    /// name="y"/> over ty (the same: over both, tx major), -1 for none; "" when neither splits.</summary>
    private static string Shard(int rank, int x, int y) =>
        x < 0 && y < 0
            ? ""
            : "shard["
                + string.Join(
                    ", ",
                    Enumerable
                        .Range(0, rank)
                        .Select(d =>
                            d == x && d == y ? "(tx, ty)"
                            : d == x ? "tx"
                            : d == y ? "ty"
                            : "_"
                        )
                )
                + "]";

    private static void Reshard(List<(int, int, string)> edits, TypeNode type, string shard)
    {
        if (type.Shard is { } old)
        {
            // Also the space before the old annotation when it goes.
            edits.Add(
                shard == "" ? (old.Span.Start - 1, old.Span.Length + 1, "") : (old.Span.Start, old.Span.Length, shard)
            );
        }
        else if (shard != "")
            edits.Add((type.Span.End, 0, " " + shard));
    }
}
