using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// The argument checks one device's communicator makes before it meets its peers, so that a bad call fails on the
/// device that made it with the same message whichever back end runs it (in process or across MPI processes).
/// </summary>
internal sealed class CollectiveChecks(DeviceMesh mesh, int rank)
{
    /// <summary>A device as messages name it: <c>device 3 (dp=1, tp=1)</c>, or <c>device 0</c> on a mesh without
    /// axes.</summary>
    public static string Who(DeviceMesh mesh, int rank) =>
        mesh.AxisNames.Count == 0 ? $"device {rank}" : $"device {rank} ({mesh.Describe(rank)})";

    /// <summary>The members of this device's group over <paramref name="axes"/> (group order) and what the group
    /// spans for messages (<c>over [tp]</c>).</summary>
    public (int[] Members, string Span) Group(IReadOnlyList<string> axes, CollectiveSite site)
    {
        ArgumentNullException.ThrowIfNull(axes);
        string span = $"over [{string.Join(", ", axes)}]";
        try
        {
            return (mesh.Group(rank, axes), span);
        }
        catch (ArgumentException e)
        {
            throw Bad(site, span, e.Message, e);
        }
    }

    /// <summary>Throws unless an array was passed.</summary>
    public void Array(IArray x, CollectiveSite site, string span)
    {
        if (x is null)
            throw new ArgumentNullException(
                nameof(x),
                $"{Who(mesh, rank)} passed no array to {InProcessWorld<NDArray>.Describe(site, span)}"
            );
    }

    /// <summary><paramref name="dim"/> of <paramref name="x"/> made non-negative, or an error naming
    /// <paramref name="what"/>.</summary>
    public int Dim(IArray x, int dim, string what, CollectiveSite site, string span)
    {
        Array(x, site, span);
        int n = x.Shape.Length;
        int d = dim < 0 ? dim + n : dim;
        if (d < 0 || d >= n)
            throw Bad(site, span, $"{what} {dim} is out of range for {x.TypeString}");
        return d;
    }

    /// <summary>Throws unless dimension <paramref name="dim"/> splits into <paramref name="n"/> equal
    /// chunks.</summary>
    public void Divisible(IArray x, int dim, int n, CollectiveSite site, string span)
    {
        if (x.Shape[dim] % n != 0)
            throw Bad(
                site,
                span,
                $"dim {dim} of {x.TypeString} does not split into {n} equal chunks for a group of {n}"
            );
    }

    /// <summary>Throws unless <paramref name="peer"/> is a device of the mesh.</summary>
    public void Peer(int peer, CollectiveSite site, string span)
    {
        if (peer < 0 || peer >= mesh.DeviceCount)
            throw Bad(site, span, $"device {peer} is outside mesh {mesh} of {mesh.DeviceCount} devices");
    }

    /// <summary>Throws unless every pair names two devices of the mesh and no device is the source or the target of
    /// two pairs.</summary>
    public void Pairs(IReadOnlyList<(int Source, int Target)> pairs, CollectiveSite site, string span)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        int n = mesh.DeviceCount;
        var isSource = new bool[n];
        var isTarget = new bool[n];
        foreach (var (source, target) in pairs)
        {
            if (source < 0 || source >= n || target < 0 || target >= n)
                throw Bad(site, span, $"pair {source}->{target} names a device outside mesh {mesh} of {n} devices");
            if (isSource[source])
                throw Bad(site, span, $"device {source} is the source of two pairs");
            if (isTarget[target])
                throw Bad(site, span, $"device {target} is the target of two pairs");
            isSource[source] = isTarget[target] = true;
        }
    }

    /// <summary>A wrong call's error: <c>device 1 (tp=1) in dist.all_gather over [tp] at step 3: ...</c>.</summary>
    public CollectiveException Bad(CollectiveSite site, string span, string message, Exception? inner = null)
    {
        string text = $"{Who(mesh, rank)} in {InProcessWorld<NDArray>.Describe(site, span)}: {message}";
        return inner == null ? new CollectiveException(text) : new CollectiveException(text, inner);
    }
}
