namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A logical mesh of devices with named axes. Ranks number the devices row-major: the first axis is the most
/// significant. A group over some axes is the devices that agree on every other axis.
/// </summary>
public sealed class DeviceMesh
{
    /// <summary>Axis names, in order.</summary>
    public IReadOnlyList<string> AxisNames { get; }
    /// <summary>Axis sizes, in order.</summary>
    public IReadOnlyList<int> Sizes { get; }
    /// <summary>Number of devices (1 for a mesh without axes).</summary>
    public int DeviceCount { get; }

    /// <summary>Creates a mesh; names must be distinct and sizes at least 1.</summary>
    public DeviceMesh(IReadOnlyList<string> axisNames, IReadOnlyList<int> sizes)
    {
        if (axisNames.Count != sizes.Count) throw new ArgumentException($"{axisNames.Count} axis names but {sizes.Count} sizes");
        if (axisNames.Distinct().Count() != axisNames.Count) throw new ArgumentException("mesh axis names must be distinct");
        if (sizes.Any(s => s < 1)) throw new ArgumentException("mesh axis sizes must be at least 1");
        AxisNames = axisNames.ToArray();
        Sizes = sizes.ToArray();
        long n = 1;
        foreach (int s in sizes) n = checked(n * s);
        DeviceCount = checked((int)n);
    }

    /// <summary>A single device, no axes.</summary>
    public static DeviceMesh Single { get; } = new([], []);

    private int IndexOf(string axis)
    {
        for (int i = 0; i < AxisNames.Count; i++) if (AxisNames[i] == axis) return i;
        throw new ArgumentException($"'{axis}' is not an axis of the mesh ({(AxisNames.Count == 0 ? "a single device" : ToString())})");
    }

    /// <summary>The size of <paramref name="axis"/>.</summary>
    public int Size(string axis) => Sizes[IndexOf(axis)];

    /// <summary>The product of the sizes of <paramref name="axes"/> (1 for none).</summary>
    public long Product(IReadOnlyList<string> axes)
    {
        long p = 1;
        foreach (var a in axes) p *= Size(a);
        return p;
    }

    /// <summary>The coordinates of a rank, one per axis.</summary>
    public int[] Coords(int rank)
    {
        if (rank < 0 || rank >= DeviceCount) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is outside a mesh of {DeviceCount} devices");
        var c = new int[Sizes.Count];
        for (int i = Sizes.Count - 1; i >= 0; i--) { c[i] = rank % Sizes[i]; rank /= Sizes[i]; }
        return c;
    }

    /// <summary>The rank at the given coordinates.</summary>
    public int RankOf(int[] coords)
    {
        int r = 0;
        for (int i = 0; i < Sizes.Count; i++)
        {
            if (coords[i] < 0 || coords[i] >= Sizes[i]) throw new ArgumentOutOfRangeException(nameof(coords), $"coordinate {coords[i]} is outside axis '{AxisNames[i]}' of size {Sizes[i]}");
            r = r * Sizes[i] + coords[i];
        }
        return r;
    }

    /// <summary>The devices that share <paramref name="rank"/>'s coordinates off <paramref name="axes"/>, row-major over <paramref name="axes"/> as given.</summary>
    public int[] Group(int rank, IReadOnlyList<string> axes)
    {
        var idx = axes.Select(IndexOf).ToArray();
        if (idx.Distinct().Count() != idx.Length) throw new ArgumentException($"axis repeated in [{string.Join(", ", axes)}]");
        var coords = Coords(rank);
        int n = (int)Product(axes);
        var group = new int[n];
        for (int g = 0; g < n; g++)
        {
            int rem = g;
            for (int k = idx.Length - 1; k >= 0; k--) { coords[idx[k]] = rem % Sizes[idx[k]]; rem /= Sizes[idx[k]]; }
            group[g] = RankOf(coords);
        }
        return group;
    }

    /// <summary>The position of <paramref name="rank"/> in its group over <paramref name="axes"/>.</summary>
    public int IndexInGroup(int rank, IReadOnlyList<string> axes)
    {
        var coords = Coords(rank);
        int i = 0;
        foreach (var a in axes) { int k = IndexOf(a); i = i * Sizes[k] + coords[k]; }
        return i;
    }

    /// <summary>The coordinates of a rank as text: <c>dp=1, tp=0</c>.</summary>
    public string Describe(int rank)
    {
        var c = Coords(rank);
        return string.Join(", ", AxisNames.Select((a, i) => $"{a}={c[i]}"));
    }

    /// <inheritdoc/>
    public override string ToString() => AxisNames.Count == 0 ? "single device" : string.Join(",", AxisNames.Select((a, i) => $"{a}={Sizes[i]}"));
}
