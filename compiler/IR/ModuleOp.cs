using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.IR;

/// <summary>Convenience accessors over a <c>builtin.module</c> operation.</summary>
public static class ModuleOp
{
    /// <summary>The mesh axis the microbatch pass adds: microbatches, run in time on each device.</summary>
    public const string MicrobatchAxis = "mb";

    /// <summary>A new empty module.</summary>
    public static Operation Create()
    {
        var m = Operation.CreateUnchecked("builtin.module", [], [], null, 1);
        _ = m.Regions[0].Entry;
        return m;
    }

    /// <summary>The module's top-level operations.</summary>
    public static IEnumerable<Operation> Body(this Operation module) => module.Regions[0].Entry.Operations;

    /// <summary>The functions of a module.</summary>
    public static IEnumerable<Operation> Functions(this Operation module) =>
        module.Body().Where(o => o.Name == "func.func");

    /// <summary>The function named <paramref name="name"/>, or null.</summary>
    public static Operation? Function(this Operation module, string name)
    {
        // A module of thousands of kernels is asked for one by every launch: the names are indexed, and the index is
        // made again when it answers with a function that has left the module or been renamed, or has no answer.
        var index = SymbolTables.GetOrCreateValue(module);
        lock (index)
        {
            if (
                index.TryGetValue(name, out var f)
                && f.ParentOp == module
                && f.GetAttr("sym_name") is StringAttr s
                && s.Value == name
            )
                return f;
            index.Clear();
            foreach (var g in module.Functions())
                if (g.GetAttr("sym_name") is StringAttr n)
                    index.TryAdd(n.Value, g);
            return index.GetValueOrDefault(name);
        }
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<
        Operation,
        Dictionary<string, Operation>
    > SymbolTables = new();

    /// <summary>The entry function: the one named by the module's <c>entry</c> attribute, else the only one that is not
    /// a kernel.</summary>
    public static Operation? EntryFunction(this Operation module)
    {
        if (module.GetAttr("entry") is StringAttr s)
            return module.Function(s.Value);
        var fs = module.Functions().Where(f => f.GetAttr("kernel") == null).ToList();
        return fs.Count == 1 ? fs[0] : null;
    }

    /// <summary>The mesh op, or null.</summary>
    public static Operation? Mesh(this Operation module) => module.Body().FirstOrDefault(o => o.Name == "dist.mesh");

    /// <summary>The module's mesh as the runtime sees it; a module without one runs on a single device.</summary>
    public static DeviceMesh DeviceMesh(this Operation module)
    {
        if (module.Mesh() is not { } m)
            return Runtime.Distributed.DeviceMesh.Single;
        var axes = ((ArrayAttr)m.GetAttr("axes")!).AsStrings();
        return new DeviceMesh(axes, m.IntsAttr("shape").Select(s => (int)s).ToArray());
    }

    /// <summary>
    /// Gives mesh axes new sizes (axes not named keep theirs), so that one module can be compiled for several
    /// meshes (a copy per candidate, see <see cref="Operation.Clone"/>). Only a global program can be resized: a
    /// per-device one has the sizes in its local shapes. Divisibility is checked where shapes become local.
    /// </summary>
    public static void ResizeMesh(this Operation module, IReadOnlyDictionary<string, int> sizes)
    {
        if (module.IsSpmd())
            throw new IRException("the mesh of a per-device program is fixed in its local shapes");
        var m = module.Mesh() ?? throw new IRException("the module has no mesh to resize");
        var axes = ((ArrayAttr)m.GetAttr("axes")!).AsStrings();
        foreach (var (axis, size) in sizes)
        {
            if (!axes.Contains(axis))
                throw new IRException($"the mesh has no axis '{axis}' (axes: " + $"{string.Join(", ", axes)})");
            if (size < 1)
                throw new IRException($"mesh axis '{axis}' must have at least one device, got {size}");
        }
        var shape = m.IntsAttr("shape");
        m.SetAttr("shape", Attr.Ints(axes.Select((a, i) => sizes.TryGetValue(a, out int n) ? n : shape[i])));
    }

    /// <summary>The devices the program runs on: the mesh without its microbatch axis, which the runtime runs in
    /// time.</summary>
    public static DeviceMesh PhysicalMesh(this Operation module) =>
        module.DeviceMesh().Without(module.GetAttr("microbatch_axis") is StringAttr mb ? mb.Value : null);

    /// <summary>True once spmdize has run: types are per-device and shardings live in attributes.</summary>
    public static bool IsSpmd(this Operation module) => module.GetAttr("spmd") is BoolAttr { Value: true };

    /// <summary>Creates a function with the given parameters and results at the end of the module.</summary>
    public static Operation AddFunction(
        this Operation module,
        string name,
        IEnumerable<(string Name, MplType Type)> args,
        IEnumerable<MplType> results,
        Location? loc = null
    )
    {
        var f = Operation.CreateUnchecked(
            "func.func",
            [],
            [],
            [
                new("sym_name", Attr.Str(name)),
                new("result_types", new ArrayAttr(results.Select(t => (Attr)new TypeAttr(t)))),
            ],
            1,
            loc
        );
        var entry = f.Regions[0].Entry;
        foreach (var (n, t) in args)
            entry.AddArgument(t, n);
        module.Regions[0].Entry.Append(f);
        return f;
    }

    /// <summary>Updates a function's declared result types (after a pass changed what it returns).</summary>
    public static void SetResultTypes(this Operation func, IEnumerable<MplType> results) =>
        func.SetAttr("result_types", new ArrayAttr(results.Select(t => (Attr)new TypeAttr(t))));

    /// <summary>The declared result types.</summary>
    public static IReadOnlyList<MplType> ResultTypes(this Operation func) => FuncOpDef.ResultTypes(func);
}
