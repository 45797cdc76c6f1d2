namespace ParallelCompiler.Runtime.Pipeline;

/// <summary>Forward or backward work of one microbatch on one stage.</summary>
public enum Phase
{
    /// <summary>The forward pass.</summary>
    Forward,

    /// <summary>The backward pass; under a zero-bubble schedule only the gradient with respect to the stage's
    /// inputs (B, on the critical path).</summary>
    Backward,

    /// <summary>The gradient with respect to the stage's weights (W), split from the backward by zero-bubble
    /// schedules so that it can wait.</summary>
    Weight,
}

/// <summary>One unit of pipeline work: a microbatch through one model chunk (a stage), forward, backward or (split
/// from the backward) weight gradient.</summary>
public readonly record struct PipelineTask(int Microbatch, int Chunk, Phase Phase)
{
    /// <summary>F3, B3 or W3, with the chunk when there are several: F3.1.</summary>
    public string Label(int chunks) => $"{Letter(Phase)}{Microbatch}{(chunks > 1 ? $".{Chunk}" : "")}";

    /// <summary>The letter of a phase in labels: F, B or W.</summary>
    public static char Letter(Phase phase) =>
        phase switch
        {
            Phase.Forward => 'F',
            Phase.Backward => 'B',
            _ => 'W',
        };

    /// <summary>The task a label names (F3, B3, W3, F3.1), or null when it is not a label.</summary>
    public static PipelineTask? Parse(string label)
    {
        if (label.Length < 2 || label[0] is not ('F' or 'B' or 'W'))
            return null;
        var parts = label[1..].Split('.');
        if (
            parts.Length > 2
            || !parts.All(x => x.Length > 0 && x.All(char.IsAsciiDigit))
            || !int.TryParse(parts[0], out int mb)
            || !int.TryParse(parts.Length == 2 ? parts[1] : "0", out int chunk)
        )
            return null;
        var phase = label[0] switch
        {
            'F' => Phase.Forward,
            'B' => Phase.Backward,
            _ => Phase.Weight,
        };
        return new PipelineTask(mb, chunk, phase);
    }
}

/// <summary>
/// The order of work on each device of a pipeline of <c>p</c> devices: GPipe (all forwards, then all backwards),
/// 1F1B (PipeDream-Flush: p - s - 1 warm-up forwards, then one forward one backward, then the rest of the
/// backwards) and interleaved 1F1B (Megatron-LM: each device holds <c>v</c> chunks, model stage c * p + s on
/// device s) and zero-bubble ZB-H1 (Qi et al. 2023: 1F1B's forwards and backwards with each backward split into
/// B, the gradient of the stage's inputs, and W, that of its weights, W of microbatch j on device s after B of
/// microbatch j + s; with equal F, B and W a third of 1F1B's bubble in the same activation memory). Forward-only
/// schedules keep only the forwards (1F1B's order is then GPipe's, and ZB-H1's).
/// </summary>
public static class Schedule
{
    /// <summary>The schedules by name.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["gpipe", "1f1b", "interleaved", "zb-h1"];

    /// <summary>True when <paramref name="kind"/> splits each backward into B and W tasks.</summary>
    public static bool SplitsBackward(string kind) => kind.StartsWith("zb-", StringComparison.Ordinal);

    /// <summary>Per device (pipeline rank), its tasks in order.</summary>
    public static List<PipelineTask>[] Build(string kind, int devices, int microbatches, int chunks, bool training)
    {
        if (devices < 1 || microbatches < 1 || chunks < 1)
            throw new ArgumentException("devices, microbatches and chunks must be at least 1");
        if (kind != "interleaved" && chunks != 1)
            throw new ArgumentException($"{kind}: chunks must be 1 (only the " + $"interleaved schedule has several)");
        if (kind == "interleaved" && microbatches % devices != 0)
            throw new ArgumentException(
                $"interleaved: {microbatches} microbatches are not a multiple of the " + $"{devices} pipeline devices"
            );
        var r = new List<PipelineTask>[devices];
        for (int s = 0; s < devices; s++)
            r[s] = kind switch
            {
                "gpipe" => GPipe(microbatches, training),
                "1f1b" => training ? OneFOneB(s, devices, microbatches) : GPipe(microbatches, false),
                "interleaved" => Interleaved(s, devices, microbatches, chunks, training),
                "zb-h1" => training ? ZeroBubbleH1(s, devices, microbatches) : GPipe(microbatches, false),
                _ => throw new ArgumentException($"unknown schedule '{kind}' (known: {string.Join(", ", Kinds)})"),
            };
        return r;
    }

    private static List<PipelineTask> GPipe(int m, bool training)
    {
        var t = Enumerable.Range(0, m).Select(j => new PipelineTask(j, 0, Phase.Forward)).ToList();
        if (training)
            t.AddRange(Enumerable.Range(0, m).Select(j => new PipelineTask(j, 0, Phase.Backward)));
        return t;
    }

    private static List<PipelineTask> OneFOneB(int s, int p, int m)
    {
        int warmup = Math.Min(p - s - 1, m);
        var t = new List<PipelineTask>();
        int f = 0,
            b = 0;
        for (; f < warmup; f++)
            t.Add(new(f, 0, Phase.Forward));
        while (f < m)
        {
            t.Add(new(f++, 0, Phase.Forward));
            t.Add(new(b++, 0, Phase.Backward));
        }
        while (b < m)
            t.Add(new(b++, 0, Phase.Backward));
        return t;
    }

    /// <summary>
    /// ZB-H1: 1F1B's order of forwards and input-gradient backwards, each device s deferring its weight gradients by
    /// s microbatches (W of microbatch j follows B of j + s; the last s come at the end), so that they fill the idle
    /// slots of 1F1B's warm-up and cool-down. Every device holds at most p microbatches between F and W, as 1F1B's
    /// first device does; with equal F, B and W times the step takes 3m + p - 1 of them against 1F1B's 3(m + p - 1).
    /// </summary>
    private static List<PipelineTask> ZeroBubbleH1(int s, int p, int m)
    {
        var t = new List<PipelineTask>();
        foreach (var task in OneFOneB(s, p, m))
        {
            t.Add(task);
            if (task.Phase == Phase.Backward && task.Microbatch - s >= 0)
                t.Add(new(task.Microbatch - s, 0, Phase.Weight));
        }
        for (int j = Math.Max(0, m - s); j < m; j++)
            t.Add(new(j, 0, Phase.Weight));
        return t;
    }

    /// <summary>Megatron's interleaved order: microbatches go through the chunks in groups of p.</summary>
    private static List<PipelineTask> Interleaved(int s, int p, int m, int v, bool training)
    {
        int total = m * v;
        PipelineTask Fwd(int k) => new((k / (p * v)) * p + k % p, (k % (p * v)) / p, Phase.Forward);
        PipelineTask Bwd(int k) => new((k / (p * v)) * p + k % p, v - 1 - (k % (p * v)) / p, Phase.Backward);
        var t = new List<PipelineTask>();
        if (!training)
        {
            for (int k = 0; k < total; k++)
                t.Add(Fwd(k));
            return t;
        }
        int warmup = Math.Min((p - s - 1) * 2 + (v - 1) * p, total);
        int f = 0,
            b = 0;
        for (; f < warmup; f++)
            t.Add(Fwd(f));
        while (f < total)
        {
            t.Add(Fwd(f++));
            t.Add(Bwd(b++));
        }
        while (b < total)
            t.Add(Bwd(b++));
        return t;
    }
}
