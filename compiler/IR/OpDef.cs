using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.IR;

/// <summary>What an op definition sees when it infers result types: operand types, attributes and, for ops
/// whose result type is written rather than inferred, the given result types.</summary>
public sealed class OpSignature(
    string name,
    IReadOnlyList<TensorType> operands,
    IReadOnlyDictionary<string, Attr> attrs,
    IReadOnlyList<MplType>? given
)
{
    /// <summary>Op name.</summary>
    public string Name { get; } = name;

    /// <summary>Operand types.</summary>
    public IReadOnlyList<TensorType> Operands { get; } = operands;

    /// <summary>Attributes.</summary>
    public IReadOnlyDictionary<string, Attr> Attrs { get; } = attrs;

    /// <summary>Result types written in the IR or passed to the builder, if any.</summary>
    public IReadOnlyList<MplType>? Given { get; } = given;

    /// <summary>The short name used in messages: <c>matmul</c> for <c>tensor.matmul</c>.</summary>
    public string Short => Name[(Name.IndexOf('.') + 1)..];

    /// <summary>An error that names the op.</summary>
    public IRException Error(string message) => new($"{Short}: {message}");

    /// <summary>The result dtype of an op that accumulates in f32 over <paramref name="operand"/>: f32 when the
    /// operand is half precision and the given result type says f32 (its accumulator, unrounded), else the
    /// operand's.</summary>
    public DType Accumulated(DType operand) =>
        operand is DType.F16 or DType.BF16 && Given is [TensorType { DType: DType.F32 }] ? DType.F32 : operand;

    /// <summary>An integer attribute.</summary>
    public long Int(string key) =>
        Attrs.GetValueOrDefault(key) is IntAttr i ? i.Value : throw Error($"needs integer attribute '{key}'");

    /// <summary>An integer array attribute.</summary>
    public long[] Ints(string key) =>
        Attrs.GetValueOrDefault(key) is ArrayAttr a && a.Items.All(x => x is IntAttr)
            ? a.AsInts()
            : throw Error($"needs integer array attribute '{key}'");

    /// <summary>A float attribute (integers accepted).</summary>
    public double Float(string key) =>
        Attrs.GetValueOrDefault(key) switch
        {
            FloatAttr f => f.Value,
            IntAttr i => i.Value,
            _ => throw Error($"needs float attribute '{key}'"),
        };

    /// <summary>A bool attribute or a default.</summary>
    public bool Bool(string key, bool dflt) =>
        Attrs.GetValueOrDefault(key) switch
        {
            null => dflt,
            BoolAttr b => b.Value,
            _ => throw Error($"attribute '{key}' must be a bool"),
        };

    /// <summary>A string attribute.</summary>
    public string Str(string key) =>
        Attrs.GetValueOrDefault(key) is StringAttr s ? s.Value : throw Error($"needs string attribute '{key}'");

    /// <summary>The single given result type, required for ops whose type is written.</summary>
    public TensorType GivenTensor() =>
        Given is { Count: 1 } && Given[0] is TensorType t ? t : throw Error("needs exactly one tensor result type");

    /// <summary>Requires a float element type.</summary>
    public void RequireFloat(TensorType t, string what)
    {
        if (!t.DType.IsFloat())
            throw Error($"{what} must be a float tensor, got {t.ToSourceString()}");
    }

    /// <summary>Requires two operands of the same element type.</summary>
    public void RequireSameDType(TensorType a, TensorType b)
    {
        if (a.DType != b.DType)
            throw Error($"element types differ: {a.ToSourceString()} and {b.ToSourceString()}");
    }
}

/// <summary>
/// The definition of one operation: its name, a one-line summary, how many operands and regions it takes, its
/// result-type (shape) rule and extra verification. Definitions are stateless singletons in <see cref="OpRegistry"/>.
/// </summary>
public abstract class OpDef
{
    /// <summary>Full name, e.g. <c>tensor.matmul</c>.</summary>
    public abstract string Name { get; }

    /// <summary>One line on what the op does.</summary>
    public abstract string Summary { get; }

    /// <summary>Fewest operands.</summary>
    public virtual int MinOperands => 0;

    /// <summary>Most operands (int.MaxValue for variadic).</summary>
    public virtual int MaxOperands => MinOperands;

    /// <summary>Number of regions.</summary>
    public virtual int NumRegions => 0;

    /// <summary>False for ops with effects beyond their results (returns, markers): CSE and DCE keep them.</summary>
    public virtual bool IsPure => true;

    /// <summary>Result types from the signature; throws an <see cref="IRException"/> naming the op and the shapes on
    /// error.</summary>
    public abstract IReadOnlyList<MplType> InferResultTypes(OpSignature sig);

    /// <summary>Checks beyond operand count and result types (e.g. where the op may appear).</summary>
    public virtual void Verify(Operation op) { }

    /// <summary>True when <see cref="VerifyInBlock"/> checks something.</summary>
    public virtual bool VerifiesInBlock => false;

    /// <summary>Checks that relate this kind's ops to the rest of their block, made once a block rather than once an
    /// op (a receive finds its send); <paramref name="ops"/> are the block's ops of this kind, in order. Returns the
    /// first op that fails and why, or null.</summary>
    public virtual (Operation Op, string Message)? VerifyInBlock(Block block, IReadOnlyList<Operation> ops) => null;

    /// <summary>
    /// The op's sharding rule for these operand and result types, or null when the op has none (ops of the
    /// dist dialect, structural ops): such ops are left alone by propagation.
    /// </summary>
    public virtual ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) => null;

    /// <summary>Normalises attributes before inference (e.g. negative axes); returns the attributes to store.</summary>
    public virtual IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    ) => attrs;
}

/// <summary>All op definitions, by name: every concrete <see cref="OpDef"/> of the compiler, found by reflection on
/// first use.</summary>
public static class OpRegistry
{
    private static readonly Dictionary<string, OpDef> Defs = new(StringComparer.Ordinal);

    static OpRegistry()
    {
        foreach (var t in typeof(OpRegistry).Assembly.GetTypes())
            if (t.IsSubclassOf(typeof(OpDef)) && !t.IsAbstract && t.GetConstructor(Type.EmptyTypes) != null)
            {
                var def = (OpDef)Activator.CreateInstance(t)!;
                Defs.Add(def.Name, def);
            }
    }

    /// <summary>The definition named <paramref name="name"/>, or null.</summary>
    public static OpDef? Lookup(string name) => Defs.GetValueOrDefault(name);

    /// <summary>Every registered definition, sorted by name.</summary>
    public static IEnumerable<OpDef> All => Defs.Values.OrderBy(d => d.Name, StringComparer.Ordinal);
}
