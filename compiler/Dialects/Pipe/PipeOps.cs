using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Pipe;

/// <summary><c>pipe.boundary</c>: an explicit pipeline stage boundary from a <c>stage;</c> statement.</summary>
public sealed class BoundaryOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.boundary";

    /// <inheritdoc/>
    public override string Summary =>
        "a user-given pipeline stage boundary (operations before it belong to earlier stages)";

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) => [];
}

/// <summary>
/// <c>pipe.transfer %v {from, to}</c>: the value computed by pipeline stage <c>from</c>, as stage <c>to</c> sees
/// it. One op in the single program; the per-device runtime makes it a send on the devices of stage <c>from</c>
/// and a receive on those of stage <c>to</c>. In training its gradient is a transfer the other way.
/// </summary>
public sealed class TransferOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.transfer";

    /// <inheritdoc/>
    public override string Summary => "send a value from one pipeline stage to another";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        long from = sig.Int("from"),
            to = sig.Int("to");
        if (from < 0 || to < 0 || from == to)
            throw sig.Error($"stages must be distinct and non-negative, got from = " + $"{from}, to = {to}");
        return [sig.Operands[0]];
    }

    /// <summary>The same tensor on another stage: every factor passes through.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        Tensor.ShardingRules.Pointwise(results[0].Shape);
}

/// <summary>Checks the attributes every point-to-point pipeline op carries: distinct stages and a channel.</summary>
public abstract class PipeTransferOpDef : OpDef
{
    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <summary>Checks <c>from</c>, <c>to</c> and <c>channel</c>.</summary>
    protected static void CheckEnds(OpSignature sig)
    {
        long from = sig.Int("from"),
            to = sig.Int("to");
        if (from < 0 || to < 0 || from == to)
            throw sig.Error($"stages must be distinct and non-negative, got from = " + $"{from}, to = {to}");
        if (sig.Int("channel") < 0)
            throw sig.Error("channel must be non-negative");
    }

    /// <summary>True for the ops that send on a channel: <c>pipe.send</c> and <c>pipe.send_start</c>.</summary>
    public static bool Sends(Operation op) => op.Name is "pipe.send" or "pipe.send_start";

    /// <summary>True for the ops that receive on a channel: <c>pipe.recv</c> and <c>pipe.recv_start</c>.</summary>
    public static bool Receives(Operation op) => op.Name is "pipe.recv" or "pipe.recv_start";

    /// <summary>Every receive of <paramref name="ops"/> has exactly one send on its channel in <paramref
    /// name="block"/>, between the same stages, of the same type.</summary>
    protected static (Operation Op, string Message)? VerifyChannels(Block block, IReadOnlyList<Operation> ops)
    {
        var sends = block.Operations.Where(Sends).ToLookup(o => o.IntAttr("channel"));
        foreach (var op in ops)
        {
            long channel = op.IntAttr("channel");
            var mine = sends[channel].ToList();
            if (mine.Count != 1)
                return (op, $"recv: channel {channel} needs exactly one pipe.send, found {mine.Count}");
            var s = mine[0];
            if (s.IntAttr("from") != op.IntAttr("from") || s.IntAttr("to") != op.IntAttr("to"))
                return (
                    op,
                    $"recv: channel {channel} is sent from stage {s.IntAttr("from")} to "
                        + $"{s.IntAttr("to")}, but received as from {op.IntAttr("from")} to {op.IntAttr("to")}"
                );
            if (!s.Operands[0].Type.Equals(op.Result.Type))
                return (op, $"recv: channel {channel} sends {s.Operands[0].Type} but receives {op.Result.Type}");
        }
        return null;
    }

    /// <summary>Checks that the handle a start returns is read by exactly one <c>pipe.wait</c>, in its block.</summary>
    protected static void VerifyWaited(Operation op, string what)
    {
        var uses = op.Result.Uses;
        if (uses.Count != 1 || uses[0].Op.Name != WaitOpDef.OpName)
            throw new IRException($"{what}: its handle must have exactly one use, a pipe.wait (it has {uses.Count})");
        if (!ReferenceEquals(uses[0].Op.Block, op.Block))
            throw new IRException($"{what}: its pipe.wait must be in the same block");
    }
}

/// <summary>
/// <c>pipe.send %v {channel, from, to}</c>: the devices of stage <c>from</c> send <c>%v</c> to the devices of
/// stage <c>to</c> that share their other mesh coordinates. Its <c>pipe.recv</c> has the same channel.
/// </summary>
public sealed class SendOpDef : PipeTransferOpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.send";

    /// <inheritdoc/>
    public override string Summary => "send a per-device tensor to the next (or previous) pipeline stage";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckEnds(sig);
        return [];
    }
}

/// <summary><c>%r = pipe.recv {channel, from, to} : () -> T</c>: what stage <c>from</c> sent on <c>channel</c>, on the
/// devices of stage <c>to</c>.</summary>
public sealed class RecvOpDef : PipeTransferOpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.recv";

    /// <inheritdoc/>
    public override string Summary => "receive a per-device tensor from another pipeline stage";

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckEnds(sig);
        return [sig.GivenTensor()];
    }

    /// <inheritdoc/>
    public override bool VerifiesInBlock => true;

    /// <inheritdoc/>
    public override (Operation Op, string Message)? VerifyInBlock(Block block, IReadOnlyList<Operation> ops) =>
        VerifyChannels(block, ops);
}

/// <summary>
/// <c>pipe.schedule {kind, microbatches, chunks, order}</c>: the order of work on each device of the pipeline
/// axis, one list per device of labels <c>F3</c> / <c>B3</c> (forward / backward of microbatch 3; <c>F3.1</c> on
/// chunk 1 with several chunks), and <c>W3</c> (its weight gradient) when the backward is split (zero-bubble
/// schedules: ops of phase <c>weight</c>). Every device runs each of its chunks' tasks exactly once; the order must
/// not deadlock. The runtime follows it as written, so an edited schedule is what runs.
/// </summary>
public sealed class ScheduleOpDef : OpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.schedule";

    /// <inheritdoc/>
    public override string Summary => "the order of forward and backward microbatch work on each pipeline device";

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        sig.Str("kind");
        long m = sig.Int("microbatches"),
            v = sig.Int("chunks");
        if (m < 1 || v < 1)
            throw sig.Error($"microbatches and chunks must be at least 1, got {m} and {v}");
        Order(sig.Attrs.GetValueOrDefault("order"), (int)m, (int)v, sig.Error);
        return [];
    }

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var func = op.ParentOp;
        if (
            func?.Name != "func.func"
            || func.GetAttr("pipeline") is not DictAttr settings
            || settings.Entries.FirstOrDefault(e => e.Key == "axis").Value is not StringAttr axis
        )
            throw new IRException("schedule: must sit in a function with a 'pipeline' attribute naming its axis");
        var mesh = Dist.CollectiveOpDef.MeshOf(op);
        int devices = ((ArrayAttr)op.GetAttr("order")!).Items.Count;
        if (!mesh.AxisNames.Contains(axis.Value))
            throw new IRException(
                $"schedule: the pipeline axis '{axis.Value}' " + $"is not an axis of the mesh ({mesh})"
            );
        if (mesh.Size(axis.Value) != devices)
            throw new IRException(
                $"schedule: {devices} device order(s) for the {mesh.Size(axis.Value)} devices of "
                    + $"pipeline axis '{axis.Value}'"
            );
        bool weightOps = op.Block!.Operations.Any(o => o.GetAttr("phase") is StringAttr { Value: "weight" });
        bool weightTasks = ((ArrayAttr)op.GetAttr("order")!).Items.Any(d =>
            ((ArrayAttr)d).AsStrings().Any(l => l.StartsWith('W'))
        );
        if (weightOps && !weightTasks)
            throw new IRException(
                "schedule: the program splits its backward (ops of phase 'weight') but the order has no W tasks "
                    + "to run them"
            );
    }

    /// <summary>The tasks of each pipeline device, checked: each forward (and, in training, each backward, and each
    /// weight gradient when any is listed) once, and no deadlock.</summary>
    public static List<Runtime.Pipeline.PipelineTask>[] Order(
        Attr? order,
        int microbatches,
        int chunks,
        Func<string, IRException> error
    )
    {
        if (
            order is not ArrayAttr devices
            || devices.Items.Count == 0
            || !devices.Items.All(d => d is ArrayAttr a && a.Items.All(x => x is StringAttr))
        )
            throw error("needs attribute 'order' as a non-empty array of arrays of task labels");
        var tasks = devices
            .Items.Select(
                (d, i) =>
                    ((ArrayAttr)d)
                        .AsStrings()
                        .Select(label =>
                            Runtime.Pipeline.PipelineTask.Parse(label) is { } t
                            && t.Microbatch < microbatches
                            && t.Chunk < chunks
                                ? t
                                : throw error(
                                    $"device {i}: '{label}' is not a task label (F<microbatch>, B<microbatch>, "
                                        + "W<microbatch>, with "
                                        + ".<chunk> for chunk > 0) within "
                                        + $"{microbatches} microbatches and {chunks} chunk(s)"
                                )
                        )
                        .ToList()
            )
            .ToArray();
        var phases = new List<Runtime.Pipeline.Phase> { Runtime.Pipeline.Phase.Forward };
        if (tasks.Any(l => l.Any(t => t.Phase != Runtime.Pipeline.Phase.Forward)))
            phases.Add(Runtime.Pipeline.Phase.Backward);
        if (tasks.Any(l => l.Any(t => t.Phase == Runtime.Pipeline.Phase.Weight)))
            phases.Add(Runtime.Pipeline.Phase.Weight);
        for (int d = 0; d < tasks.Length; d++)
        {
            var expected = Enumerable
                .Range(0, microbatches)
                .SelectMany(j =>
                    Enumerable
                        .Range(0, chunks)
                        .SelectMany(c => phases.Select(ph => new Runtime.Pipeline.PipelineTask(j, c, ph)))
                )
                .ToHashSet();
            if (tasks[d].Count != expected.Count || !tasks[d].ToHashSet().SetEquals(expected))
                throw error(
                    $"device {d} must run each of its {expected.Count} tasks exactly once, got "
                        + $"[{string.Join(", ", tasks[d].Select(t => t.Label(chunks)))}]"
                );
        }
        try
        {
            Runtime.Pipeline.Timeline.Simulate(tasks, (_, phase) => 1);
        }
        catch (InvalidOperationException)
        {
            throw error("the order deadlocks: some device waits for work that is " + "scheduled after its own");
        }
        return tasks;
    }
}

/// <summary>
/// <c>%h = pipe.send_start %v {channel, from, to} : (T) -> T</c>: starts the send of <c>pipe.send</c> and returns at
/// once (the device goes on computing); the handle's one <c>pipe.wait</c> marks where the send must be done with
/// <c>%v</c>, which stays alive until then.
/// </summary>
public sealed class SendStartOpDef : PipeTransferOpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.send_start";

    /// <inheritdoc/>
    public override string Summary => "start sending a per-device tensor to another pipeline stage";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckEnds(sig);
        return [sig.Operands[0]];
    }

    /// <inheritdoc/>
    public override void Verify(Operation op) => VerifyWaited(op, "send_start");
}

/// <summary>
/// <c>%h = pipe.recv_start {channel, from, to} : () -> T</c>: posts the receive of <c>pipe.recv</c>; the value is
/// the result of the handle's one <c>pipe.wait</c>, which blocks only until it has arrived.
/// </summary>
public sealed class RecvStartOpDef : PipeTransferOpDef
{
    /// <inheritdoc/>
    public override string Name => "pipe.recv_start";

    /// <inheritdoc/>
    public override string Summary => "post the receive of a per-device tensor from another pipeline stage";

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckEnds(sig);
        return [sig.GivenTensor()];
    }

    /// <inheritdoc/>
    public override void Verify(Operation op) => VerifyWaited(op, "recv_start");

    /// <inheritdoc/>
    public override bool VerifiesInBlock => true;

    /// <inheritdoc/>
    public override (Operation Op, string Message)? VerifyInBlock(Block block, IReadOnlyList<Operation> ops) =>
        VerifyChannels(block, ops);
}

/// <summary>
/// <c>pipe.wait %h : (T) -> ()</c> after a <c>pipe.send_start</c> (the send is done with its value), <c>%v =
/// pipe.wait %h : (T) -> T</c> after a <c>pipe.recv_start</c> (the received value).
/// </summary>
public sealed class WaitOpDef : OpDef
{
    /// <summary>The op's name.</summary>
    public const string OpName = "pipe.wait";

    /// <inheritdoc/>
    public override string Name => OpName;

    /// <inheritdoc/>
    public override string Summary => "wait for a started pipeline send or receive";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig) =>
        sig.Given is { Count: 0 } ? [] : [sig.Operands[0]];

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var start = op.Operands[0].DefiningOp;
        if (start == null || start.Name is not ("pipe.send_start" or "pipe.recv_start"))
            throw new IRException("wait: its operand is not the handle of a pipe.send_start or pipe.recv_start");
        int want = start.Name == "pipe.send_start" ? 0 : 1;
        if (op.Results.Count != want)
            throw new IRException($"wait: the wait of a {start.Name} has {want} result(s), found {op.Results.Count}");
    }

    /// <summary>The start <paramref name="wait"/> waits for.</summary>
    public static Operation StartOf(Operation wait) => wait.Operands[0].DefiningOp!;
}
