using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// The default pass pipeline, one pass a line with why it sits there. The driver edits a copy of it as data
/// (<see cref="PipelineBuilder"/>); its text form can be printed and run again with <c>--pass-pipeline</c>.
/// </summary>
public static class Pipelines
{
    /// <summary>What <c>mplc compile</c> and <c>mplc run</c> apply after lowering, in order.</summary>
    public static readonly IReadOnlyList<string> Default =
    [
        "shape-inference", // types first: every later pass may rely on exact shapes
        "canonicalize", // fold constants and cancel reshapes/transposes before anything counts ops
        "cse", // merge duplicates that canonicalization exposed (e.g. repeated scalar constants)
        "dce", // drop what the rewrites left unused
        "mixed-precision", // train ... precision bf16: the forward in the half type, f32 master weights, before stages
        "pipeline-stages", // @pipeline models only: stages of the forward program, which the backward ops then inherit
        "autodiff", // training modules only: backward of the simplified forward, so no dead op is differentiated
        "optimizer", // the update of every parameter and its state, still in global shapes
        "canonicalize", // the backward program repeats patterns (reshape chains, x * 1) the rules do not avoid
        "cse", // and recomputes the same softmax or transpose for several operands
        "dce",
        "pipeline-transfers", // after the last rewrite, so every value crossing stages is seen once
        "microbatch", // microbatches as a time axis of the mesh: shapes and accumulation come from sharding
        "sharding-propagation", // on the simplified graph: fewer ops to reach a fixpoint over, no dead votes
        "insert-reshards", // every layout change explicit and printable before anything is per-device
        "pipeline-scatter-gather", // replicated activations cross stages in slices, gathered after (explicit too)
        "spmdize", // everything after it sees one device's program with explicit collectives
        "pipeline-schedule", // on the per-device program: stage and phase of every op, sends/receives, task order
        "schedule-collectives", // training: gradient syncs start when the gradient exists, waited for by the update
    ];

    /// <summary>What the back end appends to the default pipeline before generating code.</summary>
    public const string Backend = "form-kernels"; // last: kernels are formed from the final per-device program

    /// <summary>The default pipeline as one string.</summary>
    public static string DefaultString => Create().ToString();

    /// <summary>A new, editable copy of the default pipeline.</summary>
    public static PipelineBuilder Create() => new(Default);
}
