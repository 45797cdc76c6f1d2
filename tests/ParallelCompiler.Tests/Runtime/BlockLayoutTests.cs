using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>Slicing global arrays into device blocks and back, and the array helpers under them.</summary>
public class BlockLayoutTests
{
    [Fact]
    public void BlocksAndAssemblyAreInverse()
    {
        var mesh = new DeviceMesh(["a", "b"], [2, 3]);
        var global = NDArray.FromInts([4, 6, 5], Enumerable.Range(0, 120).ToArray());
        IReadOnlyList<string>[] dims =
        [
            ["a"],
            ["b"],
            [],
        ];
        var blocks = Enumerable.Range(0, 6).Select(r => BlockLayout.Block(global, dims, mesh, r)).ToArray();
        Assert.Equal([2L, 2, 5], blocks[4].Shape);
        // device 4 is (a=1, b=1): rows 2..3, columns 2..3
        Assert.Equal(2 * 30 + 2 * 5, blocks[4].I![0]);
        Assert.Equal(global.I, BlockLayout.Assemble(blocks, dims, mesh, [4, 6, 5]).I);
    }

    [Fact]
    public void SliceConcatAndSplitAgree()
    {
        var x = NDArray.FromFloats([3, 4], Enumerable.Range(0, 12).Select(i => (float)i).ToArray());
        Assert.Equal([1f, 2f, 5f, 6f, 9f, 10f], ArrayOps.Slice(x, 1, 1, 2).F!);
        var parts = ArrayOps.Split(x, 1, 2);
        Assert.Equal(x.F, ArrayOps.Concat(parts, 1).F);
        Assert.Equal([4f, 5f, 6f, 7f], ArrayOps.Slice(x, 0, 1, 1).F!);
        Assert.Throws<ArgumentException>(() => ArrayOps.Split(x, 0, 2));
    }
}
