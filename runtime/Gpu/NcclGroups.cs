namespace ParallelCompiler.Runtime.Gpu;

/// <summary>
/// NCCL communicators by group of devices (global ranks in group order), made when the group first communicates and
/// kept from run to run, since making them is slow. In one process device r runs on GPU r and a group's communicators
/// come from one <see cref="INccl.Group"/>; a process of an MPI job gives its own way of making them (this process's
/// members only, joined with the other processes'). Different groups are made at the same time by different threads:
/// one group waiting for another process must not hold up another group that process is making first.
/// </summary>
public sealed class NcclGroups : IDisposable
{
    private readonly INccl _nccl;
    private readonly Func<int[], IReadOnlyList<INcclComm?>> _make;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<
        string,
        Lazy<IReadOnlyList<INcclComm?>>
    > _groups = new();

    /// <summary>The groups of one process's devices, device r on GPU r of <paramref name="nccl"/>.</summary>
    public NcclGroups(INccl nccl)
        : this(nccl, null) { }

    /// <summary>Groups made by <paramref name="make"/>: for a group's members, each member's communicator (null for
    /// members of other processes).</summary>
    public NcclGroups(INccl nccl, Func<int[], IReadOnlyList<INcclComm?>>? make)
    {
        ArgumentNullException.ThrowIfNull(nccl);
        _nccl = nccl;
        _make = make ?? (members => nccl.Group(members));
    }

    /// <summary>The NCCL the communicators come from.</summary>
    public INccl Nccl => _nccl;

    /// <summary>Groups whose communicators were made.</summary>
    public int Count => _groups.Count(g => g.Value.IsValueCreated);

    /// <summary>The communicator of <paramref name="rank"/> in the group <paramref name="members"/>.</summary>
    public INcclComm Of(int[] members, int rank)
    {
        var comms = _groups.GetOrAdd(string.Join(",", members), _ => new(() => _make(members))).Value;
        return comms[Array.IndexOf(members, rank)]
            ?? throw new InvalidOperationException($"device {rank} is not a member of this process");
    }

    /// <summary>Destroys the communicators.</summary>
    public void Dispose() => _nccl.Dispose();
}
