namespace ParallelCompiler.Runtime.Pipeline;

/// <summary>Forward or backward work of one microbatch on one stage.</summary>
public enum Phase
{
    /// <summary>The forward pass.</summary>
    Forward,

    /// <summary>The backward pass.</summary>
    Backward,
}

/// <summary>One unit of pipeline work: a microbatch through one model chunk (a stage), forward or backward.</summary>
public readonly record struct PipelineTask(int Microbatch, int Chunk, Phase Phase)
{
    /// <summary>F3 or B3, with the chunk when there are several: F3.1.</summary>
    public string Label(int chunks) =>
        $"{(Phase == Phase.Forward ? 'F' : 'B')}{Microbatch}{(chunks > 1 ? $".{Chunk}" : "")}";

    /// <summary>The task a label names (F3, B3, F3.1), or null when it is not a label.</summary>
    public static PipelineTask? Parse(string label)
    {
        if (label.Length < 2 || label[0] is not ('F' or 'B'))
            return null;
        var parts = label[1..].Split('.');
        if (
            parts.Length > 2
            || !parts.All(x => x.Length > 0 && x.All(char.IsAsciiDigit))
            || !int.TryParse(parts[0], out int mb)
            || !int.TryParse(parts.Length == 2 ? parts[1] : "0", out int chunk)
        )
            return null;
        return new PipelineTask(mb, chunk, label[0] == 'F' ? Phase.Forward : Phase.Backward);
    }
}

/// <summary>
/// The order of work on each device of a pipeline of <c>p</c> devices: GPipe (all forwards, then all backwards),
/// 1F1B (PipeDream-Flush: p - s - 1 warm-up forwards, then one forward one backward, then the rest of the
/// backwards) and interleaved 1F1B (Megatron-LM: each device holds <c>v</c> chunks, model stage c * p + s on
/// device s). Forward-only schedules keep only the forwards (1F1B's order is then GPipe's).
/// </summary>
public static class Schedule
{
    /// <summary>The schedules by name.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["gpipe", "1f1b", "interleaved"];

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
