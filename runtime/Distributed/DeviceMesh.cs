namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// A logical mesh of devices with named axes, e.g. <c>dp=2,tp=4</c>. Ranks number the devices row-major: the first
/// axis is the most significant. A group over some axes is the set of devices that agree with one device on every
/// other axis; it is what a collective over those axes spans. Immutable.
/// </summary>
public sealed class DeviceMesh
{
    private readonly string[] _names;
    private readonly int[] _sizes;

    /// <summary>Axis names, in order.</summary>
    public IReadOnlyList<string> AxisNames { get; }

    /// <summary>Axis sizes, in order.</summary>
    public IReadOnlyList<int> Sizes { get; }

    /// <summary>Number of devices: the product of the sizes (1 for a mesh without axes).</summary>
    public int DeviceCount { get; }

    /// <summary>A mesh; the names must be distinct and non-empty and every size at least 1.</summary>
    public DeviceMesh(IReadOnlyList<string> axisNames, IReadOnlyList<int> sizes)
    {
        ArgumentNullException.ThrowIfNull(axisNames);
        ArgumentNullException.ThrowIfNull(sizes);
        if (axisNames.Count != sizes.Count)
            throw new ArgumentException(
                $"a mesh needs one size per axis: {axisNames.Count} names but {sizes.Count} " + $"sizes"
            );
        _names = [.. axisNames];
        _sizes = [.. sizes];
        long n = 1;
        for (int i = 0; i < _names.Length; i++)
        {
            if (string.IsNullOrEmpty(_names[i]))
                throw new ArgumentException($"mesh axis {i} has no name");
            if (Array.IndexOf(_names, _names[i]) != i)
                throw new ArgumentException($"mesh axis '{_names[i]}' appears " + $"twice");
            if (_sizes[i] < 1)
                throw new ArgumentException(
                    $"mesh axis '{_names[i]}' has size {_sizes[i]}; sizes must " + $"be at least 1"
                );
            n *= _sizes[i];
            if (n > int.MaxValue)
                throw new ArgumentException($"a mesh of more than {int.MaxValue} devices is not " + $"supported");
        }
        AxisNames = Array.AsReadOnly(_names);
        Sizes = Array.AsReadOnly(_sizes);
        DeviceCount = (int)n;
    }

    /// <summary>One device and no axes.</summary>
    public static DeviceMesh Single { get; } = new([], []);

    /// <summary>The size of <paramref name="axis"/>; throws <see cref="ArgumentException"/> for an unknown
    /// axis.</summary>
    public int Size(string axis) => _sizes[IndexOf(axis)];

    /// <summary>The product of the sizes of <paramref name="axes"/> (1 for none).</summary>
    public long Product(IReadOnlyList<string> axes)
    {
        // Repeats are not rejected here: the IR verifier sizes a collective with this before it checks its axes.
        ArgumentNullException.ThrowIfNull(axes);
        long p = 1;
        foreach (string a in axes)
            p *= Size(a);
        return p;
    }

    /// <summary>The coordinates of <paramref name="rank"/>, one per axis.</summary>
    public int[] Coords(int rank)
    {
        CheckRank(rank);
        var c = new int[_sizes.Length];
        for (int i = _sizes.Length - 1; i >= 0; i--)
        {
            c[i] = rank % _sizes[i];
            rank /= _sizes[i];
        }
        return c;
    }

    /// <summary>The rank of the device at <paramref name="coords"/>.</summary>
    public int RankOf(int[] coords)
    {
        ArgumentNullException.ThrowIfNull(coords);
        if (coords.Length != _sizes.Length)
            throw new ArgumentException(
                $"mesh {this} needs {_sizes.Length} coordinates, got {coords.Length}",
                nameof(coords)
            );
        int r = 0;
        for (int i = 0; i < _sizes.Length; i++)
        {
            if (coords[i] < 0 || coords[i] >= _sizes[i])
                throw new ArgumentOutOfRangeException(
                    nameof(coords),
                    $"coordinate {coords[i]} is outside axis '{_names[i]}' of size {_sizes[i]}"
                );
            r = r * _sizes[i] + coords[i];
        }
        return r;
    }

    /// <summary>
    /// The ranks of the devices that share <paramref name="rank"/>'s coordinates on every axis not in
    /// <paramref name="axes"/>, ordered row-major over <paramref name="axes"/> as given (the first most significant).
    /// </summary>
    public int[] Group(int rank, IReadOnlyList<string> axes)
    {
        int[] idx = AxisIndices(axes);
        int[] coords = Coords(rank);
        long n = 1;
        foreach (int k in idx)
            n *= _sizes[k];
        var group = new int[n];
        for (int g = 0; g < group.Length; g++)
        {
            int rem = g;
            for (int j = idx.Length - 1; j >= 0; j--)
            {
                coords[idx[j]] = rem % _sizes[idx[j]];
                rem /= _sizes[idx[j]];
            }
            group[g] = RankOf(coords);
        }
        return group;
    }

    /// <summary>The position of <paramref name="rank"/> in its <see cref="Group"/> over <paramref
    /// name="axes"/>.</summary>
    public int IndexInGroup(int rank, IReadOnlyList<string> axes)
    {
        int[] idx = AxisIndices(axes);
        int[] coords = Coords(rank);
        int i = 0;
        foreach (int k in idx)
            i = i * _sizes[k] + coords[k];
        return i;
    }

    /// <summary>The coordinates of <paramref name="rank"/> as text, e.g. <c>dp=1, tp=0</c> (empty without
    /// axes).</summary>
    public string Describe(int rank)
    {
        int[] c = Coords(rank);
        return string.Join(", ", _names.Select((a, i) => $"{a}={c[i]}"));
    }

    /// <summary>The axes and sizes, e.g. <c>dp=2,tp=2</c>; <c>single device</c> for a mesh without axes.</summary>
    public override string ToString() =>
        _names.Length == 0 ? "single device" : string.Join(",", _names.Select((a, i) => $"{a}={_sizes[i]}"));

    private int IndexOf(string axis)
    {
        ArgumentNullException.ThrowIfNull(axis);
        int i = Array.IndexOf(_names, axis);
        if (i < 0)
            throw new ArgumentException(
                _names.Length == 0
                    ? $"unknown mesh axis '{axis}': the mesh has no axes"
                    : $"unknown mesh axis '{axis}': the mesh has axes [{string.Join(", ", _names)}]"
            );
        return i;
    }

    private int[] AxisIndices(IReadOnlyList<string> axes)
    {
        ArgumentNullException.ThrowIfNull(axes);
        var idx = new int[axes.Count];
        for (int j = 0; j < idx.Length; j++)
        {
            idx[j] = IndexOf(axes[j]);
            if (Array.IndexOf(idx, idx[j], 0, j) >= 0)
                throw new ArgumentException(
                    $"mesh axis '{axes[j]}' appears twice in " + $"[{string.Join(", ", axes)}]"
                );
        }
        return idx;
    }

    private void CheckRank(int rank)
    {
        if (rank < 0 || rank >= DeviceCount)
            throw new ArgumentOutOfRangeException(
                nameof(rank),
                $"rank {rank} is outside mesh {this} of {DeviceCount} devices"
            );
    }

    /// <summary>This mesh without axis <paramref name="axis"/> (itself when null or absent): a microbatch axis runs in
    /// time, not on devices.</summary>
    public DeviceMesh Without(string? axis)
    {
        if (axis == null || !AxisNames.Contains(axis))
            return this;
        var keep = AxisNames.Select((a, i) => (a, i)).Where(x => x.a != axis).ToArray();
        return new DeviceMesh(keep.Select(x => x.a).ToArray(), keep.Select(x => Sizes[x.i]).ToArray());
    }
}
