namespace ParallelCompiler.IR;

/// <summary>
/// Checks the invariants every pass must keep: registered ops, operand counts, result types equal to what the
/// op's shape rule infers, per-op checks, values defined before use (SSA), and module-level rules.
/// </summary>
public static class Verifier
{
    /// <summary>The first problem found, or null when the IR is well formed.</summary>
    public static string? Check(Operation root)
    {
        try
        {
            Verify(root);
            return null;
        }
        catch (IRException e)
        {
            return e.Message;
        }
    }

    /// <summary>Throws an <see cref="IRException"/> describing the first problem.</summary>
    public static void Verify(Operation root)
    {
        var defined = new HashSet<Value>(ReferenceEqualityComparer.Instance);
        VerifyOp(root, defined);
        if (root.Name == "builtin.module")
            VerifyModule(root);
    }

    private static void VerifyModule(Operation module)
    {
        var names = new HashSet<string>();
        int meshes = 0;
        foreach (var op in module.Regions[0].Entry.Operations)
        {
            if (op.Name == "dist.mesh" && ++meshes > 1)
                throw Fail(op, "a module may declare at most one mesh");
            if (op.Name == "func.func" && !names.Add(op.StringAttr("sym_name")))
                throw Fail(op, $"function @{op.StringAttr("sym_name")} is defined twice");
            if (op.Name != "dist.mesh" && op.Name != "func.func")
                throw Fail(op, "only dist.mesh and func.func may appear at the top of a module");
        }
    }

    private static void VerifyOp(Operation op, HashSet<Value> defined)
    {
        var def = op.Def ?? throw Fail(op, $"unknown operation '{op.Name}'");
        for (int i = 0; i < op.Operands.Count; i++)
            if (!defined.Contains(op.Operands[i]))
                throw Fail(op, $"operand {i} is used before it is defined (or is defined in another function)");
        try
        {
            Builder.MergeResultTypes(def, Builder.InferExisting(def, op), op.Results.Select(r => r.Type).ToArray());
            if (op.Regions.Count != def.NumRegions)
                throw new IRException($"expects {def.NumRegions} region(s), has " + $"{op.Regions.Count}");
            def.Verify(op);
        }
        catch (IRException e)
        {
            throw Fail(op, e.Message);
        }
        foreach (var region in op.Regions)
        foreach (var block in region.Blocks)
        {
            foreach (var a in block.Arguments)
                defined.Add(a);
            Dictionary<OpDef, List<Operation>>? inBlock = null;
            foreach (var inner in block.Operations)
            {
                if (inner.Def is { VerifiesInBlock: true } d)
                {
                    inBlock ??= new(ReferenceEqualityComparer.Instance);
                    if (!inBlock.TryGetValue(d, out var same))
                        inBlock[d] = same = [];
                    same.Add(inner);
                }
                if (inner.Block != block)
                    throw Fail(inner, "operation's parent link is broken");
                // Functions are isolated from above: they see only their own values.
                VerifyOp(
                    inner,
                    inner.Name == "func.func" ? new HashSet<Value>(ReferenceEqualityComparer.Instance) : defined
                );
                foreach (var r in inner.Results)
                    defined.Add(r);
            }
            foreach (var (d, same) in inBlock ?? [])
                if (d.VerifyInBlock(block, same) is var (bad, message))
                    throw Fail(bad, message);
        }
    }

    private static IRException Fail(Operation op, string message)
    {
        string where = op.Location.IsUnknown ? "" : $" at {op.Location.File}:{op.Location.Line}:{op.Location.Column}";
        return new IRException($"'{op.Name}'{where}: {message}");
    }
}
