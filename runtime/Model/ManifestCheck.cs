using System.Globalization;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// What is wrong with a bundle's manifest, by itself and against its device program: every mesh axis, shape,
/// layout, kernel and file reference, each problem naming the field (<c>inputs[0] 'tokens': layout ...</c>). A
/// manifest the compiler wrote has none; an edited one is refused here, before anything runs.
/// </summary>
public static class ManifestCheck
{
    private static readonly string[] Inits = ["normal", "zeros", "ones"];

    /// <summary>The problems of <paramref name="m"/> by itself.</summary>
    public static List<string> Problems(ProgramManifest m)
    {
        var p = new List<string>();
        var axes = m.Mesh.AxisNames;
        for (int i = 0; i < axes.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(axes[i]))
                p.Add($"mesh.axes[{i}]: an axis needs a name");
            if (axes.Take(i).Contains(axes[i]))
                p.Add($"mesh.axes[{i}]: axis '{axes[i]}' is named twice");
            if (m.Mesh.Size(axes[i]) < 1)
                p.Add($"mesh.sizes[{i}]: axis '{axes[i]}' has size {m.Mesh.Size(axes[i])}; sizes are at least 1");
        }
        if (m.MicrobatchAxis != null && !axes.Contains(m.MicrobatchAxis))
            p.Add($"mesh.microbatch_axis: '{m.MicrobatchAxis}' is not an axis of the mesh ({Axes(m)})");
        for (int i = 0; i < m.Inputs.Count; i++)
        {
            var t = m.Inputs[i];
            Tensor(p, m, $"inputs[{i}] '{t.Name}'", t.Shape, t.Layout);
            if (t.DType == DType.I32 && t.IntBound < 1)
                p.Add($"inputs[{i}] '{t.Name}': int_bound must be at least 1, got {t.IntBound}");
        }
        for (int i = 0; i < m.Results.Count; i++)
            Tensor(p, m, $"results[{i}] '{m.Results[i].Name}'", m.Results[i].Shape, m.Results[i].Layout);
        for (int i = 0; i < m.Params.Count; i++)
        {
            var q = m.Params[i];
            string f = $"params[{i}] '{q.Path}'";
            Tensor(p, m, f, q.Shape, q.Layout);
            if (m.Params.Take(i).Any(o => o.Path == q.Path))
                p.Add($"{f}: the path is listed twice");
            if (!Inits.Contains(q.Init))
                p.Add($"{f}: init must be one of {string.Join(", ", Inits)}, got '{q.Init}'");
            if (!double.IsFinite(q.Std) || q.Std < 0)
                p.Add($"{f}: std must be a finite number of at least 0, got {F(q.Std)}");
        }
        for (int i = 0; i < m.Kernels.Count; i++)
        {
            var k = m.Kernels[i];
            if (m.Kernels.Take(i).Any(o => o.Name == k.Name))
                p.Add($"kernels[{i}] '{k.Name}': the name is listed twice");
            if (k.Grid.Length != 3 || k.Block.Length != 3 || k.Grid.Concat(k.Block).Any(x => x < 1))
                p.Add($"kernels[{i}] '{k.Name}': grid and block must be three sizes of at least 1");
        }
        foreach (var file in m.Files.Keys)
            if (file.Length == 0 || file.Contains('/') || file.Contains('\\') || file is "." or "..")
                p.Add($"files: '{file}' is not a file name inside the bundle");
        if (m.Memory is { } plan)
            for (int i = 0; i < plan.Buffers.Count; i++)
            {
                var b = plan.Buffers[i];
                if (b.Slot < 0 || b.Bytes < 0 || b.Offset < 0 || b.Offset + b.Bytes > plan.ArenaBytes || b.From > b.To)
                    p.Add(
                        $"memory.buffers[{i}]: slot {b.Slot}, {b.Bytes} bytes at offset {b.Offset}, steps {b.From} to "
                            + $"{b.To} does not fit the arena of {plan.ArenaBytes} bytes"
                    );
            }
        if (m.Schedule is { } s)
        {
            if (!axes.Contains(s.Axis))
                p.Add($"schedule.axis: '{s.Axis}' is not an axis of the mesh ({Axes(m)})");
            else if (s.Order.Length != m.Mesh.Size(s.Axis))
                p.Add(
                    $"schedule.order: {s.Order.Length} device list(s), but axis '{s.Axis}' has "
                        + $"{m.Mesh.Size(s.Axis)} device(s)"
                );
            if (s.Microbatches < 1 || s.Chunks < 1)
                p.Add("schedule: microbatches and chunks must be at least 1");
            else if (m.MicrobatchAxis != null && axes.Contains(m.MicrobatchAxis))
                if (m.Mesh.Size(m.MicrobatchAxis) != s.Microbatches)
                    p.Add(
                        $"schedule.microbatches: {s.Microbatches}, but axis '{m.MicrobatchAxis}' has size "
                            + $"{m.Mesh.Size(m.MicrobatchAxis)}"
                    );
        }
        return p;
    }

    /// <summary>The problems of <paramref name="m"/> against the program it was written with.</summary>
    public static List<string> Problems(ProgramManifest m, DeviceProgram program)
    {
        var p = new List<string>();
        var axes = m.Mesh.AxisNames;
        if (program.Results.Length != m.Results.Count)
            p.Add($"results: {m.Results.Count} listed, but the program returns {program.Results.Length}");
        // The plan is a function of the program: anything else would place live values on top of each other.
        if (m.Memory is { } plan)
        {
            var made = MemoryPlan.For(program);
            if (made.ArenaBytes != plan.ArenaBytes || !made.Buffers.SequenceEqual(plan.Buffers))
                p.Add("memory: the buffer plan is not the one the program's values need (it was edited)");
        }
        if (program.PipelineAxis is { } pa && !axes.Contains(pa))
            p.Add($"mesh.axes: the program pipelines over '{pa}', which the mesh lacks ({Axes(m)})");
        foreach (var ins in program.Instructions)
        {
            string at = $"the program's {ins.Op} at {ins.Where}";
            switch (ins)
            {
                case InputInstr i when i.Index >= m.Inputs.Count:
                    p.Add($"inputs: {m.Inputs.Count} listed, but {at} reads input {i.Index}");
                    break;
                case ParamInstr q:
                    if (m.Params.FirstOrDefault(x => x.Path == q.Path) is not { } info)
                        p.Add($"params: '{q.Path}' is missing, but {at} loads it");
                    else if (info.DType != q.DType)
                        p.Add($"params '{q.Path}': dtype {info.DType.Name()}, but {at} loads {q.DType.Name()}");
                    else if (Block(m, info.Shape, info.Layout) is { } block && !block.SequenceEqual(q.Shape))
                        p.Add(
                            $"params '{q.Path}': shape [{string.Join(", ", info.Shape)}] with its layout gives "
                                + $"blocks [{string.Join(", ", block)}], but {at} loads "
                                + $"[{string.Join(", ", q.Shape)}]"
                        );
                    break;
                case LaunchInstr l when m.Kernels.Count > 0 && !m.Kernels.Any(k => k.Name == l.Kernel.Name):
                    p.Add($"kernels: '{l.Kernel.Name}' is missing, but {at} launches it");
                    break;
                case CollectiveInstr c:
                    foreach (var a in c.Axes.Where(a => !axes.Contains(a)))
                        p.Add($"mesh.axes: {at} runs over '{a}', which the mesh lacks ({Axes(m)})");
                    break;
                case SendInstr sd when !axes.Contains(sd.Axis):
                    p.Add($"mesh.axes: {at} sends along '{sd.Axis}', which the mesh lacks ({Axes(m)})");
                    break;
                case RecvInstr r when !axes.Contains(r.Axis):
                    p.Add($"mesh.axes: {at} receives along '{r.Axis}', which the mesh lacks ({Axes(m)})");
                    break;
            }
        }
        return p;
    }

    private static void Tensor(List<string> p, ProgramManifest m, string field, long[] shape, string[][] layout)
    {
        if (shape.Any(d => d < 0))
            p.Add($"{field}: shape [{string.Join(", ", shape)}] has a negative dimension");
        if (layout.Length != shape.Length)
        {
            p.Add($"{field}: layout has {layout.Length} entries for {shape.Length} dimension(s)");
            return;
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int d = 0; d < shape.Length; d++)
        {
            foreach (var a in layout[d])
            {
                if (!m.Mesh.AxisNames.Contains(a))
                {
                    p.Add($"{field}: layout names axis '{a}', which the mesh lacks ({Axes(m)})");
                    return;
                }
                if (!seen.Add(a))
                    p.Add($"{field}: layout uses axis '{a}' twice");
            }
            long n = layout[d].Aggregate(1L, (x, a) => x * m.Mesh.Size(a));
            if (n > 0 && shape[d] % n != 0)
                p.Add(
                    $"{field}: dimension {d} ({shape[d]}) does not split over {string.Join(" x ", layout[d])} "
                        + $"({n} devices)"
                );
        }
    }

    /// <summary>One device's block of a tensor with this layout, or null when the layout is unusable.</summary>
    private static long[]? Block(ProgramManifest m, long[] shape, string[][] layout)
    {
        if (layout.Length != shape.Length || layout.Any(l => l.Any(a => !m.Mesh.AxisNames.Contains(a))))
            return null;
        return shape.Select((d, i) => d / Math.Max(1, layout[i].Aggregate(1L, (x, a) => x * m.Mesh.Size(a)))).ToArray();
    }

    private static string Axes(ProgramManifest m) => string.Join(", ", m.Mesh.AxisNames);

    private static string F(double v) => v.ToString("G", CultureInfo.InvariantCulture);
}
