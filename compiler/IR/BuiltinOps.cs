namespace ParallelCompiler.IR;

/// <summary><c>module { ... }</c>: the top level; holds the mesh and the functions.</summary>
public sealed class ModuleOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "builtin.module";

    /// <inheritdoc/>
    public override string Summary => "top-level container of a program";

    /// <inheritdoc/>
    public override int NumRegions => 1;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => [];
}

/// <summary>
/// <c>func.func @name(%arg: type, ...) -> (types) { ... }</c>: a function whose entry block arguments are its
/// parameters; attribute <c>sym_name</c> names it and <c>result_types</c> lists what it returns.
/// </summary>
public sealed class FuncOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "func.func";

    /// <inheritdoc/>
    public override string Summary => "a function with one body region";

    /// <inheritdoc/>
    public override int NumRegions => 1;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        sig.Str("sym_name");
        if (sig.Attrs.GetValueOrDefault("result_types") is not ArrayAttr a || !a.Items.All(i => i is TypeAttr))
            throw sig.Error("needs attribute 'result_types' as an array of types");
        return [];
    }

    /// <summary>The declared result types of a function.</summary>
    public static IReadOnlyList<MplType> ResultTypes(Operation func) =>
        ((ArrayAttr)func.GetAttr("result_types")!).Items.Select(i => ((TypeAttr)i).Type).ToArray();

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var body = op.Regions[0];
        if (body.Blocks.Count != 1)
            throw new IRException($"func: @{op.StringAttr("sym_name")} must have exactly one " + $"block");
        var last = body.Blocks[0].Last;
        if (last == null || last.Name != "func.return")
            throw new IRException($"func: @{op.StringAttr("sym_name")} must end with func.return");
    }
}

/// <summary><c>func.return %v : type</c>: ends a function; operand types match the function's result types.</summary>
public sealed class ReturnOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "func.return";

    /// <inheritdoc/>
    public override string Summary => "return values from the enclosing function";

    /// <inheritdoc/>
    public override int MaxOperands => int.MaxValue;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => [];

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var func = op.ParentOp;
        if (func?.Name != "func.func")
            throw new IRException("return: must be directly inside a func.func");
        if (op.Next != null)
            throw new IRException("return: must be the last operation of its block");
        var expected = FuncOpDef.ResultTypes(func);
        if (expected.Count != op.Operands.Count)
            throw new IRException(
                $"return: returns {op.Operands.Count} value(s) but @{func.StringAttr("sym_name")} "
                    + $"declares {expected.Count}"
            );
        for (int i = 0; i < expected.Count; i++)
        {
            bool same =
                expected[i] is TensorType e && op.Operands[i].Type is TensorType g
                    ? e.SameShapeAndType(g)
                    : expected[i].Equals(op.Operands[i].Type);
            if (!same)
                throw new IRException(
                    $"return: value {i} has type {op.Operands[i].Type} but the function " + $"returns {expected[i]}"
                );
        }
    }
}
