namespace ParallelCompiler.IR;

/// <summary>An SSA value: an operation's result or a block's argument. Tracks its uses so rewrites can replace
/// it.</summary>
public abstract class Value
{
    private readonly List<(Operation Op, int Index)> _uses = new();

    /// <summary>The value's type.</summary>
    public MplType Type { get; set; }

    /// <summary>A readable name for the printer (from the source or the parsed text); not semantic.</summary>
    public string? NameHint { get; set; }

    /// <summary>Creates a value of the given type.</summary>
    protected Value(MplType type)
    {
        Type = type;
    }

    /// <summary>The type as a tensor type (every value is one today).</summary>
    public TensorType TensorType => (TensorType)Type;

    /// <summary>Operations that use this value, with the operand index (one entry per use).</summary>
    public IReadOnlyList<(Operation Op, int Index)> Uses => _uses;

    /// <summary>True when some operation uses this value.</summary>
    public bool HasUses => _uses.Count > 0;

    internal void AddUse(Operation op, int index) => _uses.Add((op, index));

    internal void RemoveUse(Operation op, int index)
    {
        int i = _uses.FindIndex(u => ReferenceEquals(u.Op, op) && u.Index == index);
        if (i >= 0)
            _uses.RemoveAt(i);
    }

    /// <summary>Makes every user of this value use <paramref name="other"/> instead.</summary>
    public void ReplaceAllUsesWith(Value other)
    {
        if (ReferenceEquals(other, this))
            return;
        foreach (var (op, index) in _uses.ToArray())
            op.SetOperand(index, other);
    }

    /// <summary>The operation that defines this value, or null for a block argument.</summary>
    public abstract Operation? DefiningOp { get; }
}

/// <summary>Result number <see cref="Index"/> of <see cref="Owner"/>.</summary>
public sealed class OpResult : Value
{
    /// <summary>The defining operation.</summary>
    public Operation Owner { get; }

    /// <summary>Result index.</summary>
    public int Index { get; }

    internal OpResult(Operation owner, int index, MplType type)
        : base(type)
    {
        Owner = owner;
        Index = index;
    }

    /// <inheritdoc/>
    public override Operation? DefiningOp => Owner;
}

/// <summary>Argument number <see cref="Index"/> of <see cref="Owner"/>.</summary>
public sealed class BlockArgument : Value
{
    /// <summary>The block.</summary>
    public Block Owner { get; }

    /// <summary>Argument index.</summary>
    public int Index { get; }

    internal BlockArgument(Block owner, int index, MplType type)
        : base(type)
    {
        Owner = owner;
        Index = index;
    }

    /// <inheritdoc/>
    public override Operation? DefiningOp => null;
}
