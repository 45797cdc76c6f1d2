namespace ParallelCompiler.IR;

/// <summary>
/// Creates operations at an insertion point. Every operation made here has a registered definition, the right
/// number of operands, normalised attributes and inferred result types, so an ill-formed op never exists.
/// </summary>
public sealed class Builder
{
    /// <summary>The block new operations go into.</summary>
    public Block? Block { get; private set; }

    /// <summary>New operations go before this one (at the end of <see cref="Block"/> when null).</summary>
    public Operation? Before { get; private set; }

    /// <summary>Location given to new operations.</summary>
    public Location Location { get; set; } = Location.Unknown;

    /// <summary>Inserts at the end of <paramref name="block"/>.</summary>
    public void SetInsertionPointToEnd(Block block)
    {
        Block = block;
        Before = null;
    }

    /// <summary>Inserts before <paramref name="op"/>.</summary>
    public void SetInsertionPointBefore(Operation op)
    {
        Block = op.Block;
        Before = op;
    }

    /// <summary>Creates and inserts an op; result types are inferred (or checked against <paramref
    /// name="resultTypes"/>).</summary>
    public Operation Create(
        string name,
        IReadOnlyList<Value> operands,
        IEnumerable<KeyValuePair<string, Attr>>? attrs = null,
        IReadOnlyList<MplType>? resultTypes = null
    )
    {
        var op = Build(name, operands, attrs, resultTypes, Location);
        Block?.InsertBefore(op, Before);
        return op;
    }

    /// <summary>Creates an op with one result and returns that result.</summary>
    public Value CreateValue(
        string name,
        IReadOnlyList<Value> operands,
        IEnumerable<KeyValuePair<string, Attr>>? attrs = null,
        MplType? resultType = null
    ) => Create(name, operands, attrs, resultType == null ? null : new[] { resultType }).Result;

    /// <summary>Checks and builds a detached op. Throws an <see cref="IRException"/> naming the op on any
    /// error.</summary>
    public static Operation Build(
        string name,
        IReadOnlyList<Value> operands,
        IEnumerable<KeyValuePair<string, Attr>>? attrs,
        IReadOnlyList<MplType>? resultTypes,
        Location? loc
    )
    {
        var def = OpRegistry.Lookup(name) ?? throw new IRException($"unknown operation '{name}'");
        var attrMap = new SortedDictionary<string, Attr>(StringComparer.Ordinal);
        if (attrs != null)
            foreach (var kv in attrs)
                attrMap[kv.Key] = kv.Value;
        var types = CheckOperands(def, operands);
        var normalized = new SortedDictionary<string, Attr>(attrMap, StringComparer.Ordinal);
        foreach (var kv in def.Normalize(types, attrMap))
            normalized[kv.Key] = kv.Value;
        var inferred = def.InferResultTypes(new OpSignature(name, types, normalized, resultTypes));
        var results = MergeResultTypes(def, inferred, resultTypes);
        var op = Operation.CreateUnchecked(name, operands, results, normalized, def.NumRegions, loc);
        return op;
    }

    /// <summary>What the op's shape rule gives for an existing op (its current result types passed as the given
    /// ones).</summary>
    internal static IReadOnlyList<MplType> InferExisting(OpDef def, Operation op)
    {
        var types = CheckOperands(def, op.Operands);
        return def.InferResultTypes(
            new OpSignature(op.Name, types, op.Attributes, op.Results.Select(r => r.Type).ToArray())
        );
    }

    internal static TensorType[] CheckOperands(OpDef def, IReadOnlyList<Value> operands)
    {
        string shortName = def.Name[(def.Name.IndexOf('.') + 1)..];
        if (operands.Count < def.MinOperands || operands.Count > def.MaxOperands)
        {
            string expected =
                def.MinOperands == def.MaxOperands ? $"{def.MinOperands}"
                : def.MaxOperands == int.MaxValue ? $"at least {def.MinOperands}"
                : $"{def.MinOperands} to {def.MaxOperands}";
            throw new IRException($"{shortName}: expects {expected} operand(s), got {operands.Count}");
        }
        return operands
            .Select(v =>
                v.Type as TensorType ?? throw new IRException($"{shortName}: operand of type {v.Type} is not a tensor")
            )
            .ToArray();
    }

    /// <summary>Given result types win when they agree with inference in all but sharding (shardings are assigned by
    /// passes).</summary>
    internal static IReadOnlyList<MplType> MergeResultTypes(
        OpDef def,
        IReadOnlyList<MplType> inferred,
        IReadOnlyList<MplType>? given
    )
    {
        if (given == null)
            return inferred;
        string shortName = def.Name[(def.Name.IndexOf('.') + 1)..];
        if (given.Count != inferred.Count)
            throw new IRException($"{shortName}: expects {inferred.Count} result(s), got {given.Count}");
        for (int i = 0; i < given.Count; i++)
        {
            bool same =
                given[i] is TensorType g && inferred[i] is TensorType t
                    ? g.SameShapeAndType(t)
                    : given[i].Equals(inferred[i]);
            if (!same)
                throw new IRException(
                    $"{shortName}: result {i} has type {given[i]} but the operands give " + $"{inferred[i]}"
                );
        }
        return given;
    }
}
