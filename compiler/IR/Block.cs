namespace ParallelCompiler.IR;

/// <summary>A list of operations with arguments. Operations form an intrusive doubly-linked list so rewrites are
/// O(1).</summary>
public sealed class Block
{
    private readonly List<BlockArgument> _args = new();

    /// <summary>The region holding this block, if any.</summary>
    public Region? Parent { get; internal set; }

    /// <summary>Block arguments (a function's parameters for its entry block).</summary>
    public IReadOnlyList<BlockArgument> Arguments => _args;

    /// <summary>First operation, or null when empty.</summary>
    public Operation? First { get; private set; }

    /// <summary>Last operation, or null when empty.</summary>
    public Operation? Last { get; private set; }

    /// <summary>Appends an argument of the given type.</summary>
    public BlockArgument AddArgument(MplType type, string? name = null)
    {
        var a = new BlockArgument(this, _args.Count, type) { NameHint = name };
        _args.Add(a);
        return a;
    }

    /// <summary>The operations in order. Safe against erasing the current operation while iterating.</summary>
    public IEnumerable<Operation> Operations
    {
        get
        {
            for (var op = First; op != null; )
            {
                var next = op.Next;
                yield return op;
                op = next;
            }
        }
    }

    /// <summary>Appends <paramref name="op"/> (which must not be in a block).</summary>
    public void Append(Operation op) => InsertBefore(op, null);

    /// <summary>Inserts <paramref name="op"/> before <paramref name="before"/> (at the end when null).</summary>
    public void InsertBefore(Operation op, Operation? before)
    {
        if (op.Block != null)
            throw new InvalidOperationException($"{op.Name} is already in a block");
        op.Block = this;
        if (before == null)
        {
            op.Prev = Last;
            op.Next = null;
            if (Last != null)
                Last.Next = op;
            else
                First = op;
            Last = op;
        }
        else
        {
            if (before.Block != this)
                throw new InvalidOperationException("insertion point is in another block");
            op.Next = before;
            op.Prev = before.Prev;
            if (before.Prev != null)
                before.Prev.Next = op;
            else
                First = op;
            before.Prev = op;
        }
    }

    internal void Unlink(Operation op)
    {
        if (op.Prev != null)
            op.Prev.Next = op.Next;
        else
            First = op.Next;
        if (op.Next != null)
            op.Next.Prev = op.Prev;
        else
            Last = op.Prev;
        op.Prev = op.Next = null;
        op.Block = null;
    }
}

/// <summary>A list of blocks owned by an operation (a function body, a module body).</summary>
public sealed class Region
{
    private readonly List<Block> _blocks = new();

    /// <summary>The owning operation.</summary>
    public Operation Owner { get; }

    /// <summary>The blocks, entry first.</summary>
    public IReadOnlyList<Block> Blocks => _blocks;

    internal Region(Operation owner)
    {
        Owner = owner;
    }

    /// <summary>Appends a new empty block.</summary>
    public Block AddBlock()
    {
        var b = new Block { Parent = this };
        _blocks.Add(b);
        return b;
    }

    /// <summary>The entry block (created when missing).</summary>
    public Block Entry => _blocks.Count > 0 ? _blocks[0] : AddBlock();
}
