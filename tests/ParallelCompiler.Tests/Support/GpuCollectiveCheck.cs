using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Gpu;
using Xunit;

namespace ParallelCompiler.Tests.Support;

/// <summary>The runtime's collective self-test (<see cref="CollectiveSelfTest"/>) as an assertion, for emulated and
/// real GPUs.</summary>
public static class GpuCollectiveCheck
{
    /// <summary>The mesh the check runs on.</summary>
    public static DeviceMesh Mesh => CollectiveSelfTest.Mesh;

    /// <summary>Fails with every case where <paramref name="world"/> differs from the host.</summary>
    public static void Run(IDeviceWorld<GpuArray> world)
    {
        var (cases, failures) = CollectiveSelfTest.Run(world);
        Assert.Equal(4 * 46, cases); // 4 dtypes x (4 groups x 11 + permute + ring)
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
