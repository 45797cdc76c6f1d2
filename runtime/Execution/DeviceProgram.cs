using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>
/// One step of a device program. Every step names the op it came from and where (for messages); values live in
/// numbered slots that the executor frees after their last use.
/// </summary>
public abstract record Instruction(string Op, string Where)
{
    /// <summary>The pipeline stage that runs it (-1: every device). Stage k runs on pipeline device k mod p.</summary>
    public int Stage { get; init; } = -1;

    /// <summary>True for backward work, which a training schedule runs in its backward slots.</summary>
    public bool Backward { get; init; }

    /// <summary>True for weight-gradient work split from the backward, which a zero-bubble schedule runs in its W
    /// slots.</summary>
    public bool Weight { get; init; }

    /// <summary>True for work that runs once per step after the schedule, on values summed over microbatches.</summary>
    public bool PerStep { get; init; }

    /// <summary>True for forward work on values the same for every microbatch (a parameter gathered or converted),
    /// which runs once before the schedule; its result is kept for every microbatch.</summary>
    public bool Setup { get; init; }
}

/// <summary>Send a slot from pipeline stage <paramref name="From"/> to the devices of stage <paramref name="To"/> on
/// <paramref name="Channel"/>.</summary>
public sealed record PipeSendInstr(string Op, string Where, int From, int To, int Channel, int Input)
    : Instruction(Op, Where);

/// <summary>Receive, on the devices of stage <paramref name="To"/>, what stage <paramref name="From"/> sent on
/// <paramref name="Channel"/>.</summary>
public sealed record PipeRecvInstr(
    string Op,
    string Where,
    int From,
    int To,
    int Channel,
    DType DType,
    long[] Shape,
    int Output
) : Instruction(Op, Where);

/// <summary>Copy argument <paramref name="Index"/> (this device's block) into a slot.</summary>
public sealed record InputInstr(string Op, string Where, int Index, int Output) : Instruction(Op, Where);

/// <summary>Load this device's block of the parameter at <paramref name="Path"/>.</summary>
public sealed record ParamInstr(string Op, string Where, string Path, DType DType, long[] Shape, int Output)
    : Instruction(Op, Where);

/// <summary>Run a kernel on the device.</summary>
public sealed record LaunchInstr(
    string Op,
    string Where,
    IKernel Kernel,
    int[] Inputs,
    DType DType,
    long[] Shape,
    int Output
) : Instruction(Op, Where);

/// <summary>The collectives the communicator provides, plus the local slice that needs none.</summary>
public enum CollectiveKind
{
    /// <summary>Reduce over the group.</summary>
    AllReduce,

    /// <summary>Concatenate the group's blocks.</summary>
    AllGather,

    /// <summary>Sum, then keep the local block.</summary>
    ReduceScatter,

    /// <summary>Split one dimension, concatenate another.</summary>
    AllToAll,

    /// <summary>Keep the local block (no communication).</summary>
    AllSlice,

    /// <summary>Blocks move between device pairs.</summary>
    CollectivePermute,
}

/// <summary>A collective on one slot. <paramref name="Dim"/> is the gathered/sliced/split dimension, <paramref
/// name="Dim2"/> all_to_all's concat dimension.</summary>
public sealed record CollectiveInstr(
    string Op,
    string Where,
    CollectiveKind Kind,
    string[] Axes,
    int Dim,
    int Dim2,
    ReduceKind Reduce,
    (int Source, int Target)[] Pairs,
    int Input,
    int Output
) : Instruction(Op, Where);

/// <summary>Start a collective (<see cref="CollectiveKind.AllReduce"/>, <see cref="CollectiveKind.ReduceScatter"/> or
/// <see cref="CollectiveKind.AllGather"/>) on each of the <paramref name="Inputs"/> without waiting; the <see
/// cref="WaitInstr"/> with the same <paramref name="Handle"/> gives the results.</summary>
public sealed record StartInstr(
    string Op,
    string Where,
    CollectiveKind Kind,
    string[] Axes,
    int Dim,
    ReduceKind Reduce,
    int[] Inputs,
    int Handle
) : Instruction(Op, Where);

/// <summary>Wait for the collective started with <paramref name="Handle"/> and put its results in <paramref
/// name="Outputs"/>; <paramref name="Holds"/> (the start's inputs, which the collective reads) live until
/// here.</summary>
public sealed record WaitInstr(string Op, string Where, int Handle, int[] Holds, int[] Outputs)
    : Instruction(Op, Where);

/// <summary>Send a slot to the device <paramref name="Shift"/> steps along <paramref name="Axis"/> (nothing beyond the
/// edge).</summary>
public sealed record SendInstr(string Op, string Where, string Axis, int Shift, int Input) : Instruction(Op, Where);

/// <summary>Receive from the device <paramref name="Shift"/> steps back along <paramref name="Axis"/> (zeros beyond the
/// edge).</summary>
public sealed record RecvInstr(string Op, string Where, string Axis, int Shift, DType DType, long[] Shape, int Output)
    : Instruction(Op, Where);

/// <summary>Hand this device's block of a slot to the host as the next value of the parameter (or optimizer state) at
/// <paramref name="Path"/>.</summary>
public sealed record UpdateInstr(string Op, string Where, string Path, int Input) : Instruction(Op, Where);

/// <summary>
/// The program one device runs: straight-line instructions over slots, with the slots that hold the results.
/// Every device of an SPMD program runs the same instance; what differs (its rank, its blocks) comes from the
/// device and the communicator.
/// </summary>
public sealed class DeviceProgram(
    string name,
    int numSlots,
    IReadOnlyList<Instruction> instructions,
    int[] results,
    string? pipelineAxis = null
)
{
    /// <summary>The mesh axis pipeline stages are spread over, or null when the program is not pipelined.</summary>
    public string? PipelineAxis { get; } = pipelineAxis;

    /// <summary>The mesh axis that stands for microbatches (run in time, not on devices), or null.</summary>
    public string? MicrobatchAxis { get; init; }

    /// <summary>Number of microbatches (1 without microbatching).</summary>
    public int Microbatches { get; init; } = 1;

    /// <summary>Per device of the pipeline axis, its tasks in order (null when the program is not pipelined).</summary>
    public IReadOnlyList<IReadOnlyList<Pipeline.PipelineTask>>? Schedule { get; init; }

    /// <summary>The function it was made from.</summary>
    public string Name { get; } = name;

    /// <summary>Number of value slots.</summary>
    public int NumSlots { get; } = numSlots;

    /// <summary>The steps, in order.</summary>
    public IReadOnlyList<Instruction> Instructions { get; } = instructions;

    /// <summary>Slots returned, in order.</summary>
    public int[] Results { get; } = results;

    /// <summary>For each step, the slots whose last use it is (freed after it).</summary>
    public int[][] LastUses { get; } = ComputeLastUses(numSlots, instructions, results);

    /// <summary>The slots an instruction reads.</summary>
    public static IEnumerable<int> Reads(Instruction i) =>
        i switch
        {
            LaunchInstr l => l.Inputs,
            CollectiveInstr c => [c.Input],
            SendInstr s => [s.Input],
            UpdateInstr u => [u.Input],
            PipeSendInstr t => [t.Input],
            StartInstr t => t.Inputs,
            WaitInstr w => w.Holds,
            _ => [],
        };

    /// <summary>Every slot an instruction writes (a wait writes one per started array).</summary>
    public static IEnumerable<int> Outputs(Instruction i) =>
        i is WaitInstr w ? w.Outputs
        : Writes(i) is int o ? [o]
        : [];

    /// <summary>The slot an instruction writes, or null.</summary>
    public static int? Writes(Instruction i) =>
        i switch
        {
            InputInstr x => x.Output,
            ParamInstr x => x.Output,
            LaunchInstr x => x.Output,
            CollectiveInstr x => x.Output,
            RecvInstr x => x.Output,
            PipeRecvInstr x => x.Output,
            _ => null,
        };

    private static int[][] ComputeLastUses(int numSlots, IReadOnlyList<Instruction> instructions, int[] results)
    {
        var last = new int[numSlots];
        Array.Fill(last, -1);
        for (int k = 0; k < instructions.Count; k++)
            foreach (int s in Reads(instructions[k]))
                last[s] = k;
        foreach (int s in results)
            last[s] = int.MaxValue;
        var byStep = instructions.Select(_ => new List<int>()).ToArray();
        for (int s = 0; s < numSlots; s++)
            if (last[s] >= 0 && last[s] != int.MaxValue)
                byStep[last[s]].Add(s);
        return byStep.Select(l => l.ToArray()).ToArray();
    }
}
