namespace ParallelCompiler.IR;

/// <summary>
/// One operation: a dialect-prefixed name, SSA operands and results, a sorted attribute dictionary and nested
/// regions. Create operations through <see cref="Builder"/>, which infers result types and verifies them.
/// </summary>
public sealed class Operation
{
    private readonly List<Value> _operands = new();
    private readonly List<OpResult> _results = new();
    private readonly SortedDictionary<string, Attr> _attrs = new(StringComparer.Ordinal);
    private readonly List<Region> _regions = new();

    /// <summary>Full name, e.g. <c>tensor.matmul</c>.</summary>
    public string Name { get; }

    /// <summary>Where the operation came from.</summary>
    public Location Location { get; set; }

    /// <summary>The block holding this operation, or null when detached.</summary>
    public Block? Block { get; internal set; }

    /// <summary>Next operation in the block.</summary>
    public Operation? Next { get; internal set; }

    /// <summary>Previous operation in the block.</summary>
    public Operation? Prev { get; internal set; }

    /// <summary>Operands in order.</summary>
    public IReadOnlyList<Value> Operands => _operands;

    /// <summary>Results in order.</summary>
    public IReadOnlyList<OpResult> Results => _results;

    /// <summary>Attributes sorted by name.</summary>
    public IReadOnlyDictionary<string, Attr> Attributes => _attrs;

    /// <summary>Nested regions.</summary>
    public IReadOnlyList<Region> Regions => _regions;

    /// <summary>The single result; throws when there is not exactly one.</summary>
    public OpResult Result =>
        _results.Count == 1 ? _results[0] : throw new InvalidOperationException($"{Name} has {_results.Count} results");

    /// <summary>The dialect prefix (before the first dot).</summary>
    public string Dialect => Name.Contains('.') ? Name[..Name.IndexOf('.')] : "";

    /// <summary>The registered definition of this op, or null for an unregistered op.</summary>
    public OpDef? Def => OpRegistry.Lookup(Name);

    internal Operation(
        string name,
        IEnumerable<Value> operands,
        IEnumerable<MplType> resultTypes,
        IEnumerable<KeyValuePair<string, Attr>>? attrs,
        int numRegions,
        Location? loc
    )
    {
        Name = name;
        Location = loc ?? Location.Unknown;
        foreach (var v in operands)
            AddOperand(v);
        int i = 0;
        foreach (var t in resultTypes)
            _results.Add(new OpResult(this, i++, t));
        if (attrs != null)
            foreach (var kv in attrs)
                _attrs[kv.Key] = kv.Value;
        for (int r = 0; r < numRegions; r++)
            _regions.Add(new Region(this));
    }

    /// <summary>Creates a detached operation without inference or verification (the IR parser and builder use
    /// this).</summary>
    public static Operation CreateUnchecked(
        string name,
        IEnumerable<Value> operands,
        IEnumerable<MplType> resultTypes,
        IEnumerable<KeyValuePair<string, Attr>>? attrs = null,
        int numRegions = 0,
        Location? loc = null
    ) => new(name, operands, resultTypes, attrs, numRegions, loc);

    private void AddOperand(Value v)
    {
        _operands.Add(v);
        v.AddUse(this, _operands.Count - 1);
    }

    /// <summary>Replaces operand <paramref name="index"/>.</summary>
    public void SetOperand(int index, Value v)
    {
        _operands[index].RemoveUse(this, index);
        _operands[index] = v;
        v.AddUse(this, index);
    }

    /// <summary>
    /// A deep copy, detached: new operations, regions, blocks and values wired as the originals are; operands
    /// defined outside this op stay shared. Attributes, types and locations are immutable and shared.
    /// </summary>
    public Operation Clone() => Clone(new Dictionary<Value, Value>(ReferenceEqualityComparer.Instance));

    private Operation Clone(Dictionary<Value, Value> map)
    {
        var op = new Operation(
            Name,
            _operands.Select(v => map.GetValueOrDefault(v, v)),
            _results.Select(r => r.Type),
            _attrs,
            0,
            Location
        );
        for (int i = 0; i < _results.Count; i++)
        {
            op._results[i].NameHint = _results[i].NameHint;
            map[_results[i]] = op._results[i];
        }
        foreach (var region in _regions)
        {
            var r = op.AddRegion();
            foreach (var block in region.Blocks)
            {
                var b = r.AddBlock();
                foreach (var a in block.Arguments)
                    map[a] = b.AddArgument(a.Type, a.NameHint);
                foreach (var inner in block.Operations)
                    b.Append(inner.Clone(map));
            }
        }
        return op;
    }

    /// <summary>Adds a region (used by the IR parser for ops with regions).</summary>
    public Region AddRegion()
    {
        var r = new Region(this);
        _regions.Add(r);
        return r;
    }

    /// <summary>An attribute, or null.</summary>
    public Attr? GetAttr(string name) => _attrs.GetValueOrDefault(name);

    /// <summary>Sets (or with null removes) an attribute.</summary>
    public void SetAttr(string name, Attr? value)
    {
        if (value == null)
            _attrs.Remove(name);
        else
            _attrs[name] = value;
    }

    /// <summary>An integer attribute; throws with the op's name when it is missing or of another kind.</summary>
    public long IntAttr(string name) => GetAttr(name) is IntAttr i ? i.Value : throw Missing(name, "an integer");

    /// <summary>A float attribute (an integer is accepted).</summary>
    public double FloatAttr(string name) =>
        GetAttr(name) switch
        {
            FloatAttr f => f.Value,
            IntAttr i => i.Value,
            _ => throw Missing(name, "a float"),
        };

    /// <summary>A bool attribute, or <paramref name="dflt"/> when absent.</summary>
    public bool BoolAttr(string name, bool dflt = false) =>
        GetAttr(name) switch
        {
            null => dflt,
            BoolAttr b => b.Value,
            _ => throw Missing(name, "a bool"),
        };

    /// <summary>A string attribute.</summary>
    public string StringAttr(string name) => GetAttr(name) is StringAttr s ? s.Value : throw Missing(name, "a string");

    /// <summary>An integer array attribute.</summary>
    public long[] IntsAttr(string name) =>
        GetAttr(name) is ArrayAttr a ? a.AsInts() : throw Missing(name, "an array of integers");

    private IRException Missing(string name, string what) => new($"'{Name}' needs attribute '{name}' as {what}");

    /// <summary>Removes this operation from its block and drops its operand uses. Its results must be unused.</summary>
    public void Erase()
    {
        foreach (var r in _results)
            if (r.HasUses)
                throw new InvalidOperationException($"cannot erase {Name}: result {r.Index} still has uses");
        DropOperands();
        Block?.Unlink(this);
    }

    /// <summary>Moves this operation, with its uses, to just before <paramref name="before"/> in that op's
    /// block.</summary>
    public void MoveBefore(Operation before)
    {
        if (ReferenceEquals(before, this))
            return;
        Block?.Unlink(this);
        before.Block!.InsertBefore(this, before);
    }

    /// <summary>Drops all operand uses, including those of nested operations.</summary>
    private void DropOperands()
    {
        for (int i = 0; i < _operands.Count; i++)
            _operands[i].RemoveUse(this, i);
        foreach (var r in _regions)
        foreach (var b in r.Blocks)
        foreach (var op in b.Operations)
            op.DropOperands();
    }

    /// <summary>Visits this operation and every nested one, outer first.</summary>
    public IEnumerable<Operation> Walk()
    {
        yield return this;
        foreach (var r in _regions)
        foreach (var b in r.Blocks)
        foreach (var op in b.Operations)
        foreach (var inner in op.Walk())
            yield return inner;
    }

    /// <summary>True for an op without effects whose results nobody uses: DCE and the rewrite driver erase
    /// it.</summary>
    public bool IsTriviallyDead => Def is { IsPure: true } && _results.Count > 0 && _results.All(r => !r.HasUses);

    /// <summary>The operand types as tensors.</summary>
    public TensorType OperandType(int i) => (TensorType)_operands[i].Type;

    /// <summary>The innermost enclosing operation (e.g. the function), or null.</summary>
    public Operation? ParentOp => Block?.Parent?.Owner;

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>An ill-formed IR construct, detected by the builder, the verifier or the IR parser.</summary>
public class IRException(string message) : Exception(message);
