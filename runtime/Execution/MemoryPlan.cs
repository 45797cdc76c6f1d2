using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>One value's place in a device's memory: its slot, size, offset in the arena and the steps it lives
/// over.</summary>
public sealed record BufferPlacement(int Slot, long Bytes, long Offset, int From, int To);

/// <summary>
/// Where each value of a device program lives: buffers live from the step that writes them to their last use
/// (results to the end); buffers whose lifetimes do not overlap share memory. Offsets are assigned first-fit in
/// program order (64-byte aligned), which gives the arena a device needs for one run of the program's
/// instructions. Planned: parameters, kernel results and received values (sizes at their element type's width).
/// </summary>
public sealed class MemoryPlan
{
    /// <summary>Every buffer with its offset.</summary>
    public IReadOnlyList<BufferPlacement> Buffers { get; }

    /// <summary>Bytes of the arena: the highest end of any buffer.</summary>
    public long ArenaBytes { get; }

    /// <summary>The most bytes live at one step (a lower bound of the arena).</summary>
    public long PeakLiveBytes { get; }

    /// <summary>A plan as recorded (read back from a manifest).</summary>
    public MemoryPlan(IReadOnlyList<BufferPlacement> buffers, long arena, long peak)
    {
        Buffers = buffers;
        ArenaBytes = arena;
        PeakLiveBytes = peak;
    }

    /// <summary>Plans the buffers of <paramref name="program"/>.</summary>
    public static MemoryPlan For(DeviceProgram program)
    {
        int n = program.Instructions.Count;
        var from = new int[program.NumSlots];
        var bytes = new long[program.NumSlots];
        Array.Fill(from, -1);
        for (int i = 0; i < n; i++)
            if (Written(program.Instructions[i]) is { } w && from[w.Slot] < 0)
            {
                from[w.Slot] = i;
                bytes[w.Slot] = w.Bytes;
            }
        var to = new int[program.NumSlots];
        for (int s = 0; s < to.Length; s++)
            to[s] = from[s];
        for (int i = 0; i < n; i++)
            foreach (int s in DeviceProgram.Reads(program.Instructions[i]))
                to[s] = Math.Max(to[s], i);
        foreach (int s in program.Results)
            to[s] = n;
        var placed = new List<BufferPlacement>();
        foreach (int s in Enumerable.Range(0, program.NumSlots).Where(s => from[s] >= 0).OrderBy(s => from[s]))
        {
            long size = (bytes[s] + 63) / 64 * 64;
            // First fit among the buffers alive at the same time.
            var busy = placed.Where(p => p.From <= to[s] && from[s] <= p.To).OrderBy(p => p.Offset).ToList();
            long offset = 0;
            foreach (var p in busy)
            {
                if (offset + size <= p.Offset)
                    break;
                offset = Math.Max(offset, p.Offset + (p.Bytes + 63) / 64 * 64);
            }
            placed.Add(new BufferPlacement(s, bytes[s], offset, from[s], to[s]));
        }
        long arena = placed.Select(p => p.Offset + p.Bytes).DefaultIfEmpty(0).Max();
        long peak = Enumerable
            .Range(0, n + 1)
            .Select(i => placed.Where(p => p.From <= i && i <= p.To).Sum(p => p.Bytes))
            .DefaultIfEmpty(0)
            .Max();
        return new MemoryPlan(placed, arena, peak);
    }

    private static (int Slot, long Bytes)? Written(Instruction i) =>
        i switch
        {
            ParamInstr x => (x.Output, Size(x.DType, x.Shape)),
            LaunchInstr x => (x.Output, Size(x.DType, x.Shape)),
            RecvInstr x => (x.Output, Size(x.DType, x.Shape)),
            PipeRecvInstr x => (x.Output, Size(x.DType, x.Shape)),
            _ => null,
        };

    private static long Size(DType t, long[] shape) => NDArray.ShapeSize(shape) * t.Size();
}
