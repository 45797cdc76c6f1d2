using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

public sealed partial class Elaborator
{
    /// <summary>One instance of a model or layer being lowered: its parameter path and call bookkeeping.</summary>
    private sealed class Instance(BlockDecl decl, string path, bool remat, Instance? caller)
    {
        public BlockDecl Decl { get; } = decl;
        public string Path { get; } = path;
        public bool Remat { get; } = remat;
        public Instance? Caller { get; } = caller;
        public Dictionary<string, int> NextIndex { get; } = new(StringComparer.Ordinal);
        public HashSet<string> Params { get; } = new(StringComparer.Ordinal);
        public int Depth => Caller == null ? 0 : Caller.Depth + 1;
    }

    /// <summary>Names visible at a point: locals and loop variables, chained to the enclosing scope.</summary>
    private sealed class Scope(Scope? parent, Instance? instance)
    {
        public static readonly Scope Global = new(null, null);
        public Scope? Parent { get; } = parent;
        public Instance? Instance { get; } = instance ?? parent?.Instance;
        public Dictionary<string, EValue> Vars { get; } = new(StringComparer.Ordinal);
        public HashSet<string> LoopVars { get; } = new(StringComparer.Ordinal);

        public Scope? Find(string name)
        {
            for (var s = this; s != null; s = s.Parent)
                if (s.Vars.ContainsKey(name))
                    return s;
            return null;
        }
    }

    private readonly Dictionary<BlockDecl, Dictionary<string, (int Count, bool InLoop)>> _callSites = new();

    /// <summary>Per instance group (the caller's path and the layer, e.g. <c>gpt.block</c>), the k of the layer's
    /// <c>@remat(first = k)</c>: the module's <c>remat_first</c> attribute.</summary>
    private readonly Dictionary<string, long> _rematFirst = new(StringComparer.Ordinal);

    private void LowerModel(Operation module, BlockDecl model)
    {
        CheckAttributes(model);
        var args = model.Args.Select(a => (a.Name, (MplType)LowerType(a.Type, Scope.Global))).ToList();
        var result = LowerType(model.Result, Scope.Global);
        _b.Location = Loc(model.NameSpan);
        var func = module.AddFunction(model.Name, args, [result.WithSharding(null)], Loc(model.NameSpan));
        if (PipelineAttr(model) is { } p)
            func.SetAttr("pipeline", p);
        var entry = func.Regions[0].Entry;
        _b.SetInsertionPointToEnd(entry);
        var instance = new Instance(model, model.Name, model.Attributes.Any(a => a.Name == "remat"), null);
        var scope = new Scope(Scope.Global, instance);
        for (int i = 0; i < model.Args.Count; i++)
            scope.Vars[model.Args[i].Name] = new TensorVal(entry.Arguments[i]);
        var ret = LowerBody(model, scope, result);
        _b.Location = Loc(model.EndSpan);
        _b.Create("func.return", [ret]);
    }

    private Location Loc(TextSpan span)
    {
        var (line, col) = _src.LineColumn(span.Start);
        return new Location(_src.Path, line, col);
    }

    /// <summary>Runs the statements of a model or layer body and returns its result, checked against the declared
    /// type.</summary>
    private Value LowerBody(BlockDecl decl, Scope scope, TensorType declared)
    {
        Value? ret = RunStatements(decl.Body, scope, topLevel: true);
        if (ret == null)
            throw Error(decl.EndSpan, $"'{decl.Name}' ends without a return statement");
        var got = ret.TensorType;
        if (!got.SameShapeAndType(declared))
        {
            var stmt = decl.Body.OfType<ReturnStmt>().Last();
            throw Error(
                stmt.Value.Span,
                $"'{decl.Name}' returns {got.ToSourceString()} but is declared to return "
                    + $"{declared.ToSourceString()}"
            );
        }
        return declared.Sharding != null ? Reshard(ret, declared) : ret;
    }

    /// <summary>
    /// Runs statements; a statement that fails is reported and the names it would bind are marked failed, and the
    /// rest run on, so independent mistakes are reported together (<see cref="ReportedException"/> afterwards: the
    /// body has no result).
    /// </summary>
    private Value? RunStatements(IReadOnlyList<Stmt> stmts, Scope scope, bool topLevel)
    {
        bool failed = false;
        Value? result = null;
        for (int i = 0; i < stmts.Count; i++)
        {
            try
            {
                result = RunStatement(stmts, i, scope, topLevel);
            }
            catch (Exception e) when (e is ElabException or ReportedException)
            {
                if (e is ElabException ee)
                    Report(ee);
                failed = true;
                foreach (var name in Binds(stmts[i]))
                    (scope.Find(name) ?? scope).Vars[name] = new ErrorVal();
                if (stmts[i] is ReturnStmt)
                    break;
            }
        }
        return failed ? throw new ReportedException() : result;
    }

    /// <summary>The names a statement binds (failed together with it).</summary>
    private static IEnumerable<string> Binds(Stmt s) =>
        s switch
        {
            LetStmt l => [l.Name],
            AssignStmt a => [a.Name],
            ParamStmt p => [p.Name],
            ForStmt f => f.Body.SelectMany(Binds).Where(n => n != f.Var),
            _ => [],
        };

    /// <summary>Reports an elaboration error once, however many layer instances repeat it.</summary>
    private void Report(ElabException e)
    {
        if (_reported.Add((e.Span.Start, e.Span.End, e.Message)))
            _diags.Error(_src, e.Span, e.Message);
    }

    private readonly HashSet<(int, int, string)> _reported = [];

    private Value? RunStatement(IReadOnlyList<Stmt> stmts, int i, Scope scope, bool topLevel)
    {
        var s = stmts[i];
        _b.Location = Loc(s.Span);
        switch (s)
        {
            case ReturnStmt r:
                if (!topLevel)
                    throw Error(r.Span, "return is not allowed inside a loop");
                if (i != stmts.Count - 1)
                    throw Error(stmts[i + 1].Span, "unreachable statement after return");
                return RequireTensor(Eval(r.Value, scope), r.Value.Span, "the returned value");
            case LetStmt l:
                if (scope.Vars.ContainsKey(l.Name))
                    throw Error(
                        l.NameSpan,
                        $"'{l.Name}' is already defined in this scope; to rebind it write '{l.Name} = ...'"
                    );
                if (_consts.ContainsKey(l.Name))
                    throw Error(l.NameSpan, $"'{l.Name}' is a const and cannot be rebound");
                scope.Vars[l.Name] = Named(Eval(l.Value, scope), l.Name);
                break;
            case AssignStmt a:
                var owner = scope.Find(a.Name);
                if (owner == null)
                    throw Error(
                        a.NameSpan,
                        _consts.ContainsKey(a.Name)
                            ? $"'{a.Name}' is a const and cannot be assigned"
                            : $"'{a.Name}' is not defined; use 'let {a.Name} = ...' to bind a new name"
                    );
                if (owner.LoopVars.Contains(a.Name))
                    throw Error(a.NameSpan, $"loop variable '{a.Name}' cannot be assigned");
                owner.Vars[a.Name] = Named(Eval(a.Value, scope), a.Name);
                break;
            case ParamStmt p:
                LowerParam(p, scope);
                break;
            case ForStmt f:
                LowerFor(f, scope);
                break;
            case StageStmt st:
                _b.Create("pipe.boundary", []);
                break;
        }
        return null;
    }

    private static EValue Named(EValue v, string name)
    {
        if (v is TensorVal t && t.Value.NameHint == null && t.Value is OpResult)
            t.Value.NameHint = name;
        return v;
    }

    private void LowerFor(ForStmt f, Scope scope)
    {
        long lo = RequireInt(Eval(f.Lo, scope), f.Lo.Span, "a loop bound");
        long hi = RequireInt(Eval(f.Hi, scope), f.Hi.Span, "a loop bound");
        long n = Math.Max(0, hi - lo);
        if (n > MaxUnrolledIterations || _unrolled + n > MaxUnrolledIterations)
            throw Error(
                f.Span,
                $"this loop unrolls {n} iterations; a program may unroll at most " + $"{MaxUnrolledIterations} in all"
            );
        _unrolled += n;
        for (long i = lo; i < hi; i++)
        {
            var inner = new Scope(scope, null);
            inner.Vars[f.Var] = new IntVal(i);
            inner.LoopVars.Add(f.Var);
            RunStatements(f.Body, inner, topLevel: false);
        }
    }

    private void LowerParam(ParamStmt p, Scope scope)
    {
        var inst = scope.Instance!;
        var type = LowerType(p.Type, scope);
        if (scope.Find(p.Name) != null || !inst.Params.Add(p.Name))
            throw Error(p.NameSpan, $"'{p.Name}' is already defined in '{inst.Decl.Name}'");
        var attrs = new List<KeyValuePair<string, Attr>> { new("path", Attr.Str($"{inst.Path}.{p.Name}")) };
        attrs.AddRange(Initializer(p.Init, scope));
        if (inst.Remat)
            attrs.Add(new("remat", Attr.Str(inst.Path)));
        var v = _b.CreateValue("tensor.param", [], attrs, type);
        v.NameHint = $"{inst.Path}.{p.Name}";
        scope.Vars[p.Name] = new TensorVal(v);
    }

    private IEnumerable<KeyValuePair<string, Attr>> Initializer(Expr? init, Scope scope)
    {
        switch (init)
        {
            case null:
                return [new("init", Attr.Str("normal")), new("std", Attr.Float(0.02))];
            case NameExpr { Name: "zeros" or "ones" } n:
                return [new("init", Attr.Str(n.Name))];
            case CallExpr { Callee: "normal" } c:
                if (c.Args.Count > 1 || c.Args.Any(a => a.Name != null && a.Name != "std"))
                    throw Error(c.Span, "normal takes one argument: the standard deviation, e.g. normal(0.02)");
                double std =
                    c.Args.Count == 0
                        ? 0.02
                        : RequireNumber(Eval(c.Args[0].Value, scope), c.Args[0].Span, "the standard deviation");
                if (std < 0 || double.IsNaN(std))
                    throw Error(c.Args[0].Span, $"the standard deviation must be non-negative, got {std}");
                return [new("init", Attr.Str("normal")), new("std", Attr.Float(std))];
            default:
                throw Error(init.Span, "unknown initialiser: expected normal(STD), zeros or ones");
        }
    }

    private static double RequireNumber(EValue v, TextSpan span, string what) =>
        v switch
        {
            IntVal i => i.Value,
            FloatVal f => f.Value,
            _ => throw new ElabException(span, $"{what} must be a number, but this is {v.Describe()}"),
        };

    private static Value RequireTensor(EValue v, TextSpan span, string what) =>
        v is TensorVal t
            ? t.Value
            : throw new ElabException(span, $"{what} must be a tensor, but this is {v.Describe()}");

    // ---- layer calls ----

    private Dictionary<string, (int Count, bool InLoop)> CallSites(BlockDecl decl)
    {
        if (_callSites.TryGetValue(decl, out var sites))
            return sites;
        sites = new Dictionary<string, (int, bool)>(StringComparer.Ordinal);
        void VisitExpr(Expr e, bool inLoop)
        {
            var stack = new Stack<Expr>();
            stack.Push(e);
            while (stack.Count > 0)
            {
                switch (stack.Pop())
                {
                    case CallExpr c:
                        if (_blocks.ContainsKey(c.Callee))
                        {
                            var (n, l) = sites.GetValueOrDefault(c.Callee);
                            sites[c.Callee] = (n + 1, l || inLoop);
                        }
                        foreach (var a in c.Args)
                            stack.Push(a.Value);
                        break;
                    case BinaryExpr b:
                        stack.Push(b.Left);
                        stack.Push(b.Right);
                        break;
                    case NegExpr n:
                        stack.Push(n.Operand);
                        break;
                    case ListExpr l:
                        foreach (var i in l.Items)
                            stack.Push(i);
                        break;
                }
            }
        }
        void VisitStmts(IEnumerable<Stmt> stmts, bool inLoop)
        {
            foreach (var s in stmts)
                switch (s)
                {
                    case LetStmt l:
                        VisitExpr(l.Value, inLoop);
                        break;
                    case AssignStmt a:
                        VisitExpr(a.Value, inLoop);
                        break;
                    case ReturnStmt r:
                        VisitExpr(r.Value, inLoop);
                        break;
                    case ForStmt f:
                        VisitStmts(f.Body, true);
                        break;
                }
        }
        VisitStmts(decl.Body, false);
        return _callSites[decl] = sites;
    }

    private Value CallLayer(CallExpr call, BlockDecl layer, Scope scope)
    {
        var caller = scope.Instance!;
        if (layer.IsModel)
            throw Error(call.CalleeSpan, $"'{layer.Name}' is a model; only layers can be called");
        for (var i = caller; i != null; i = i.Caller)
            if (i.Decl == layer)
            {
                var chain = new List<string>();
                for (var j = caller; j != null; j = j.Caller)
                    chain.Insert(0, j.Decl.Name);
                throw Error(
                    call.CalleeSpan,
                    $"recursive layer call: {string.Join(" -> ", chain)} -> {layer.Name} "
                        + $"(layers are instantiated at compile time and cannot recurse)"
                );
            }
        if (caller.Depth + 1 > MaxCallDepth)
            throw Error(call.CalleeSpan, $"layer calls nested more than {MaxCallDepth} deep");
        CheckAttributes(layer);

        var (count, inLoop) = CallSites(caller.Decl).GetValueOrDefault(layer.Name, (1, false));
        string path = $"{caller.Path}.{layer.Name}";
        if (count > 1 || inLoop)
        {
            int idx = caller.NextIndex.GetValueOrDefault(layer.Name);
            caller.NextIndex[layer.Name] = idx + 1;
            path += $".{idx}";
        }
        var args = BindArgs(call, layer.Name, layer.Args.Select(a => a.Name).ToList(), scope);
        var instance = new Instance(layer, path, caller.Remat || layer.Attributes.Any(a => a.Name == "remat"), caller);
        // @remat(first = k): the instances of this call site's layer share a group that autodiff selects from.
        if (!caller.Remat && RematFirst(layer) is { } first)
            _rematFirst[$"{caller.Path}.{layer.Name}"] = first;
        var inner = new Scope(Scope.Global, instance);
        for (int i = 0; i < layer.Args.Count; i++)
        {
            var declared = LowerType(layer.Args[i].Type, Scope.Global);
            var v = RequireTensor(args[i].Value, args[i].Span, $"argument '{layer.Args[i].Name}' of '{layer.Name}'");
            if (!v.TensorType.SameShapeAndType(declared))
                throw Error(
                    args[i].Span,
                    $"argument '{layer.Args[i].Name}' of '{layer.Name}' must be "
                        + $"{declared.ToSourceString()}, got {v.TensorType.ToSourceString()}"
                );
            inner.Vars[layer.Args[i].Name] = new TensorVal(declared.Sharding != null ? Reshard(v, declared) : v);
        }
        var result = LowerType(layer.Result, Scope.Global);
        var saved = _b.Location;
        var last = _b.Block!.Last;
        var ret = LowerBody(layer, inner, result);
        _b.Location = saved;
        // Every op of a @remat instance says so: autodiff recomputes them in the backward program.
        if (instance.Remat && !caller.Remat)
            for (var op = last?.Next ?? _b.Block.First; op != null; op = op.Next)
                if (op.GetAttr("remat") is null)
                    op.SetAttr("remat", Attr.Str(path));
        return ret;
    }

    private Value Reshard(Value v, TensorType target) =>
        _b.CreateValue("dist.reshard", [v], null, v.TensorType.WithSharding(target.Sharding));

    /// <summary>Matches positional and keyword arguments to parameter names; returns them in parameter order.</summary>
    private List<(EValue Value, TextSpan Span)> BindArgs(
        CallExpr call,
        string callee,
        IReadOnlyList<string> names,
        Scope scope
    )
    {
        var bound = new (EValue, TextSpan)?[names.Count];
        int pos = 0;
        foreach (var a in call.Args)
        {
            int i;
            if (a.Name == null)
            {
                if (pos >= names.Count)
                    throw Error(a.Span, $"'{callee}' takes {names.Count} argument(s), got {call.Args.Count}");
                i = pos++;
            }
            else
            {
                i = names.ToList().IndexOf(a.Name);
                if (i < 0)
                    throw Error(
                        a.Span,
                        $"'{callee}' has no parameter named '{a.Name}' (parameters: " + $"{string.Join(", ", names)})"
                    );
            }
            if (bound[i] != null)
                throw Error(a.Span, $"argument '{names[i]}' of '{callee}' is given twice");
            bound[i] = (Eval(a.Value, scope), a.Value.Span);
        }
        for (int i = 0; i < names.Count; i++)
            if (bound[i] == null)
                throw Error(call.Span, $"'{callee}' is missing argument '{names[i]}'");
        return bound.Select(b => b!.Value).ToList();
    }
}
