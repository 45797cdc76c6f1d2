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
/// microbatch j + s; with equal F, B and W a third of 1F1B's bubble in the same activation memory) and ZB-H2 (the
/// same paper: more forwards in the warm-up and weight gradients deferred into the cool-down, holding up to 2p - 1
/// microbatches, about twice 1F1B's activation memory, so that each device idles only the pipeline's fill and
/// drain). Forward-only schedules keep only the forwards (1F1B's order is then GPipe's, and ZB-H1's and ZB-H2's).
/// </summary>
public static class Schedule
{
    /// <summary>The schedules by name.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2"];

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
        if (kind == "zb-h2" && training)
            return ZeroBubbleH2(devices, microbatches);
        var r = new List<PipelineTask>[devices];
        for (int s = 0; s < devices; s++)
            r[s] = kind switch
            {
                "gpipe" => GPipe(microbatches, training),
                "1f1b" => training ? OneFOneB(s, devices, microbatches) : GPipe(microbatches, false),
                "interleaved" => Interleaved(s, devices, microbatches, chunks, training),
                "zb-h1" => training ? ZeroBubbleH1(s, devices, microbatches) : GPipe(microbatches, false),
                "zb-h2" => GPipe(microbatches, false),
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

    /// <summary>
    /// ZB-H2: the order a list scheduler gives when F, B and W each take one unit of time and every device may hold
    /// at most 2p - 1 microbatches between F and W (at most m): whenever a device is free it starts, of the tasks
    /// whose inputs are there, the one that can start first, B before F before W at a tie (B is on the critical
    /// path; W, which nothing waits for, fills what is left), a forward only while fewer than the limit are held.
    /// The warm-up so runs up to 2(p - s) - 1 forwards on device s and the weight gradients fill the cool-down:
    /// from m = 2p - 1 microbatches on, the step takes m(F + B + W) + (p - 1)F, each device idle only for the
    /// pipeline's fill and drain (the parallelogram's edges, which the paper hides by running the next step's
    /// warm-up past the optimizer; its bubble is then zero at equal F, B and W).
    /// </summary>
    private static List<PipelineTask>[] ZeroBubbleH2(int p, int m)
    {
        int limit = Math.Min(2 * p - 1, m);
        var order = Enumerable.Range(0, p).Select(_ => new List<PipelineTask>()).ToArray();
        // When each stage's F and B of each microbatch end (-1: not yet), in units.
        var fEnd = new int[p, m];
        var bEnd = new int[p, m];
        for (int s = 0; s < p; s++)
        for (int j = 0; j < m; j++)
            fEnd[s, j] = bEnd[s, j] = -1;
        var free = new int[p];
        var forwards = new int[p];
        var backwards = new int[p];
        var held = new int[p];
        var weights = Enumerable.Range(0, p).Select(_ => new Queue<int>()).ToArray();
        for (int left = 3 * m * p; left > 0; left--)
        {
            (int Start, int Rank, int Device, Phase Phase, int Microbatch)? best = null;
            void Consider(int start, int rank, int s, Phase phase, int j)
            {
                if (best is not { } b || (start, rank, s).CompareTo((b.Start, b.Rank, b.Device)) < 0)
                    best = (start, rank, s, phase, j);
            }
            for (int s = 0; s < p; s++)
            {
                int j = backwards[s];
                if (j < m && fEnd[s, j] >= 0 && (s == p - 1 || bEnd[s + 1, j] >= 0))
                    Consider(
                        Math.Max(free[s], Math.Max(fEnd[s, j], s == p - 1 ? 0 : bEnd[s + 1, j])),
                        0,
                        s,
                        Phase.Backward,
                        j
                    );
                j = forwards[s];
                if (j < m && held[s] < limit && (s == 0 || fEnd[s - 1, j] >= 0))
                    Consider(Math.Max(free[s], s == 0 ? 0 : fEnd[s - 1, j]), 1, s, Phase.Forward, j);
                if (weights[s].Count > 0)
                    Consider(free[s], 2, s, Phase.Weight, weights[s].Peek());
            }
            var (t, _, d, ph, mb) = best ?? throw new InvalidOperationException("zb-h2: no task can run");
            free[d] = t + 1;
            order[d].Add(new PipelineTask(mb, 0, ph));
            switch (ph)
            {
                case Phase.Forward:
                    fEnd[d, mb] = t + 1;
                    forwards[d]++;
                    held[d]++;
                    break;
                case Phase.Backward:
                    bEnd[d, mb] = t + 1;
                    backwards[d]++;
                    weights[d].Enqueue(mb);
                    break;
                default:
                    weights[d].Dequeue();
                    held[d]--;
                    break;
            }
        }
        return order;
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
