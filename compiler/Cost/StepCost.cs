using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Cost;

/// <summary>When the gradient synchronisation runs: under the backward compute after it (PyTorch DDP's and today's
/// Megatron-LM's buckets), or after the whole backward of the step (Megatron-LM as of SC'21, whose local DDP reduced
/// the gradients once every microbatch's backward was done).</summary>
public enum GradientSync
{
    Overlapped,
    AfterBackward,
}

/// <summary>One kind of collective of a step: how many, the bytes one device sends, its time, and the share not hidden
/// under compute.</summary>
public sealed record CollectiveCost(string Kind, int Count, double BytesSent, double Seconds, double ExposedSeconds);

/// <summary>One kind of kernel of a step (matmul, elementwise, row, reduction, gather): how many launches, their FLOPs
/// and HBM bytes, their time, and how many of them are limited by memory rather than arithmetic.</summary>
public sealed record KernelCost(string Kind, int Count, double Flops, double Bytes, double Seconds, int MemoryBound);

/// <summary>A pipeline device's share of a step: its compute and communication, and how long it stands idle.</summary>
public sealed record StageCost(
    int Device,
    double ComputeSeconds,
    double CommSeconds,
    double IdleSeconds,
    double PeakBytes
)
{
    /// <summary>Of the peak: the parameters (the optimizer's state included).</summary>
    public double ParamBytes { get; init; }

    /// <summary>Of those: the optimizer's state.</summary>
    public double StateBytes { get; init; }
}

/// <summary>The predicted step of a compiled program on a cluster (docs/cost-model.md defines every term).</summary>
public sealed record StepCost(
    double StepSeconds,
    double ComputeSeconds,
    double BubbleSeconds,
    IReadOnlyList<CollectiveCost> Collectives,
    IReadOnlyList<KernelCost> Kernels,
    IReadOnlyList<StageCost> Stages,
    double FlopsPerDevice,
    double ModelFlopsPerDevice,
    double PeakFlops,
    double PeakBytes,
    double HbmBytes,
    int Devices
)
{
    /// <summary>Per model stage, the seconds of one microbatch's forward (with its critical-path communication); one
    /// entry, the whole step, without a pipeline.</summary>
    public IReadOnlyList<double> StageForwardSeconds { get; init; } = [];

    /// <summary>Per model stage, the seconds of one microbatch's backward (recomputation included); under a
    /// zero-bubble schedule its input-gradient part (B) only.</summary>
    public IReadOnlyList<double> StageBackwardSeconds { get; init; } = [];

    /// <summary>Per model stage, the seconds of one microbatch's weight gradient (W) when a zero-bubble schedule
    /// splits it from the backward, else 0.</summary>
    public IReadOnlyList<double> StageWeightSeconds { get; init; } = [];

    /// <summary>What runs once a step outside the pipeline's tasks (the optimizer), gradient synchronisation
    /// excepted.</summary>
    public double StepPhaseSeconds { get; init; }

    /// <summary>The gradient synchronisation's collectives, all of them (<see cref="GradientSync"/> decides how much
    /// is exposed).</summary>
    public double SyncSeconds { get; init; }

    /// <summary>Communication on the critical path.</summary>
    public double ExposedCommSeconds => Collectives.Sum(c => c.ExposedSeconds);

    /// <summary>FLOP/s a GPU achieves, counting every FLOP the program does (recomputed forwards included, as
    /// Megatron-LM counts).</summary>
    public double FlopsPerSecondPerGpu => FlopsPerDevice / StepSeconds;

    /// <summary>Model FLOP utilisation: the FLOPs of the model without recomputation, over the peak.</summary>
    public double Mfu => ModelFlopsPerDevice / StepSeconds / PeakFlops;

    /// <summary>True when the peak memory of every device fits its GPU.</summary>
    public bool Fits => PeakBytes <= HbmBytes;
}
