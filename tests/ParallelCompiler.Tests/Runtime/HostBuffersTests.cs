using ParallelCompiler.Runtime.Distributed;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>The pool of host buffers the MPI link's results come from and the CPU device gives back. Each test uses
/// lengths of its own: the pool is one per process.</summary>
public sealed class HostBuffersTests
{
    [Fact]
    public void AGivenBackBufferIsHandedOutAgainForItsLengthOnly()
    {
        var a = HostBuffers.Floats(10_007);
        HostBuffers.Return(NDArray.FromFloats([10_007], a));
        Assert.NotSame(a, HostBuffers.Floats(10_009));
        Assert.Same(a, HostBuffers.Floats(10_007));
        Assert.NotSame(a, HostBuffers.Floats(10_007));
    }

    [Fact]
    public void ABufferHeldByAnArrayIsNeverHandedOutTwice()
    {
        var held = HostBuffers.Floats(10_037);
        var other = HostBuffers.Floats(10_037);
        Assert.NotSame(held, other);
        // Given back twice (two releases of the one array): handed out once.
        var x = NDArray.FromFloats([10_037], other);
        HostBuffers.Return(x);
        HostBuffers.Return(x);
        Assert.Same(other, HostBuffers.Floats(10_037));
        Assert.NotSame(other, HostBuffers.Floats(10_037));
    }

    [Fact]
    public void ABufferThePoolDidNotHandOutIsLeftAlone()
    {
        var mine = new float[10_039];
        HostBuffers.Return(NDArray.FromFloats([10_039], mine));
        Assert.NotSame(mine, HostBuffers.Floats(10_039));
        var ints = HostBuffers.Ints(10_039);
        HostBuffers.Return(NDArray.FromInts([10_039], ints));
        Assert.NotSame(ints, HostBuffers.Ints(10_051));
        Assert.Same(ints, HostBuffers.Ints(10_039));
    }

    [Fact]
    public void TheCpuDeviceGivesAReleasedArrayBack()
    {
        var device = new SimulatedCpuDevice(0);
        var a = HostBuffers.Floats(10_061);
        device.Release(NDArray.FromFloats([10_061], a));
        Assert.Same(a, HostBuffers.Floats(10_061));
    }

    [Fact]
    public void AtMostAFewBuffersOfALengthAreKept()
    {
        var bufs = Enumerable.Range(0, HostBuffers.KeptPerLength + 2).Select(_ => HostBuffers.Floats(10_067)).ToList();
        foreach (var b in bufs)
            HostBuffers.Return(NDArray.FromFloats([10_067], b));
        var again = Enumerable.Range(0, HostBuffers.KeptPerLength + 2).Select(_ => HostBuffers.Floats(10_067)).ToList();
        Assert.Equal(HostBuffers.KeptPerLength, again.Count(b => bufs.Contains(b)));
    }
}
