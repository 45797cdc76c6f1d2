using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Dist;

/// <summary>
/// The start of a collective that runs while the device goes on computing, as XLA's async collectives: <c>%h0, %h1
/// = dist.all_reduce_start %g0, %g1 {axes, reduction} : (T0, T1) -> (R0, R1)</c>. Each operand is reduced on its
/// own, exactly as its synchronous op would (so a bucket of several gives every member's value bit for bit); the
/// bucket is one collective for the group. The results are handles, typed as the values they will hold, that
/// only one <c>dist.wait</c> may read, all of them in order; the values are the wait's results.
/// </summary>
public abstract class CollectiveStartOpDef : OpDef
{
    /// <summary>The synchronous collective each operand goes through.</summary>
    protected abstract CollectiveOpDef Sync { get; }

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override int MaxOperands => int.MaxValue;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <summary>The synchronous op's name: <c>dist.all_reduce</c> for <c>dist.all_reduce_start</c>.</summary>
    public string SyncName => Sync.Name;

    private string Short => Name[(Name.IndexOf('.') + 1)..];

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        if (sig.Given == null || sig.Given.Count != sig.Operands.Count)
            throw sig.Error($"needs one result type per operand ({sig.Operands.Count})");
        var results = new List<MplType>();
        for (int i = 0; i < sig.Operands.Count; i++)
        {
            var one = new OpSignature(sig.Name, [sig.Operands[i]], sig.Attrs, [sig.Given[i]]);
            try
            {
                results.AddRange(Sync.InferResultTypes(one));
            }
            catch (IRException e) when (sig.Operands.Count > 1)
            {
                throw sig.Error($"operand {i}: {e.Message[(Short.Length + 2)..]}");
            }
        }
        return results;
    }

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        for (int i = 0; i < op.Operands.Count; i++)
            Sync.VerifyShapes(
                op,
                op.OperandType(i),
                op.Results[i].TensorType,
                op.Operands.Count > 1 ? $"{Short}: operand {i}" : Short
            );
        Operation? wait = null;
        for (int i = 0; i < op.Results.Count; i++)
        {
            var uses = op.Results[i].Uses;
            if (uses.Count == 0)
                throw new IRException($"{Short}: result {i} is never waited for (every start needs one dist.wait)");
            if (uses.Count > 1)
                throw new IRException($"{Short}: result {i} has {uses.Count} uses; its only use must be a dist.wait");
            var (user, index) = uses[0];
            if (user.Name != WaitOpDef.OpName)
                throw new IRException($"{Short}: result {i} is read by {user.Name}; only a dist.wait may read it");
            if (index != i || (wait != null && !ReferenceEquals(wait, user)))
                throw new IRException($"{Short}: one dist.wait must wait for all {op.Results.Count} results, in order");
            wait = user;
        }
        if (wait!.Operands.Count != op.Results.Count)
            throw new IRException($"{Short}: one dist.wait must wait for all {op.Results.Count} results, in order");
        if (!ReferenceEquals(wait.Block, op.Block))
            throw new IRException($"{Short}: its dist.wait must be in the same block");
    }
}

/// <summary><c>dist.all_reduce_start %x, ... {axes, reduction = "sum" | "max"}</c>: starts the all_reduce of each
/// operand.</summary>
public sealed class AllReduceStartOpDef : CollectiveStartOpDef
{
    private static readonly AllReduceOpDef AllReduce = new();

    /// <inheritdoc/>
    public override string Name => "dist.all_reduce_start";

    /// <inheritdoc/>
    public override string Summary => "start all_reduces of one or more tensors; dist.wait gives their results";

    /// <inheritdoc/>
    protected override CollectiveOpDef Sync => AllReduce;
}

/// <summary><c>dist.reduce_scatter_start %x, ... {axes, dim}</c>: starts the reduce_scatter of each operand along
/// <c>dim</c>.</summary>
public sealed class ReduceScatterStartOpDef : CollectiveStartOpDef
{
    private static readonly ReduceScatterOpDef ReduceScatter = new();

    /// <inheritdoc/>
    public override string Name => "dist.reduce_scatter_start";

    /// <inheritdoc/>
    public override string Summary => "start reduce_scatters of one or more tensors; dist.wait gives their results";

    /// <inheritdoc/>
    protected override CollectiveOpDef Sync => ReduceScatter;
}

/// <summary><c>dist.all_gather_start %x, ... {axes, dim}</c>: starts the all_gather of each operand along <c>dim</c>
/// (a ZeRO-3 parameter's, ahead of its use).</summary>
public sealed class AllGatherStartOpDef : CollectiveStartOpDef
{
    private static readonly AllGatherOpDef AllGather = new();

    /// <summary>The op's name.</summary>
    public const string OpName = "dist.all_gather_start";

    /// <inheritdoc/>
    public override string Name => OpName;

    /// <inheritdoc/>
    public override string Summary => "start all_gathers of one or more tensors; dist.wait gives their results";

    /// <inheritdoc/>
    protected override CollectiveOpDef Sync => AllGather;
}

/// <summary>
/// <c>%r0, %r1 = dist.wait %h0, %h1 : (R0, R1) -> (R0, R1)</c>: blocks until the collective that <c>dist.*_start</c>
/// began has finished on this device and gives its results. Its operands are all the results of one start, in
/// order; until the wait the start's operands stay alive (the collective reads them).
/// </summary>
public sealed class WaitOpDef : OpDef
{
    /// <summary>The op's name.</summary>
    public const string OpName = "dist.wait";

    /// <inheritdoc/>
    public override string Name => OpName;

    /// <inheritdoc/>
    public override string Summary => "wait for a started collective and give its results";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override int MaxOperands => int.MaxValue;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => sig.Operands.ToArray();

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var start = op.Operands[0].DefiningOp;
        if (start?.Def is not CollectiveStartOpDef)
            throw new IRException("wait: operand 0 is not the result of a collective start (dist.*_start)");
        for (int i = 0; i < op.Operands.Count; i++)
            if (op.Operands[i] is not OpResult r || !ReferenceEquals(r.DefiningOp, start) || r.Index != i)
                throw new IRException(
                    $"wait: operand {i} is not result {i} of the {start.Name} it waits for; "
                        + "a wait takes all the results of one start, in order"
                );
    }

    /// <summary>The start <paramref name="wait"/> waits for.</summary>
    public static Operation StartOf(Operation wait) => wait.Operands[0].DefiningOp!;
}
