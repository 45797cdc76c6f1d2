using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>The runtime's array helpers, checked against arrays worked out by hand.</summary>
public sealed class ArrayOpsTests
{
    private static NDArray F(long[] shape, params float[] v) => NDArray.FromFloats(shape, v);

    private static NDArray I(long[] shape, params int[] v) => NDArray.FromInts(shape, v);

    private static NDArray Iota(long[] shape, float start = 0) =>
        F(shape, Enumerable.Range(0, (int)NDArray.ShapeSize(shape)).Select(i => start + i).ToArray());

    private static void Same(NDArray expected, NDArray actual)
    {
        Assert.Equal(expected.DType, actual.DType);
        Assert.Equal(expected.Shape, actual.Shape);
        if (expected.F != null)
            Assert.Equal(expected.F, actual.F!);
        else
            Assert.Equal(expected.I!, actual.I!);
    }

    [Fact]
    public void Concat_first_axis_appends_rows()
    {
        var r = ArrayOps.Concat([F([1, 2], 1, 2), F([2, 2], 3, 4, 5, 6)], 0);
        Same(F([3, 2], 1, 2, 3, 4, 5, 6), r);
    }

    [Fact]
    public void Concat_middle_axis_interleaves_blocks()
    {
        var r = ArrayOps.Concat([Iota([2, 1, 2]), Iota([2, 2, 2], 10)], 1);
        Same(F([2, 3, 2], 0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17), r);
    }

    [Fact]
    public void Concat_last_axis_of_ints_and_negative_axis()
    {
        var a = I([2, 2], 1, 2, 3, 4);
        var b = I([2, 1], 5, 6);
        Same(I([2, 3], 1, 2, 5, 3, 4, 6), ArrayOps.Concat([a, b], 1));
        Same(I([2, 3], 1, 2, 5, 3, 4, 6), ArrayOps.Concat([a, b], -1));
    }

    [Fact]
    public void Concat_keeps_dtype_and_copies()
    {
        var a = NDArray.FromFloats(DType.BF16, [2], [1.5f, 2]);
        var r = ArrayOps.Concat([a], 0);
        Same(a, r);
        Assert.NotSame(a.F, r.F);
    }

    [Fact]
    public void Concat_rejects_mismatched_parts()
    {
        Assert.Throws<ArgumentException>(() => ArrayOps.Concat([Iota([2, 2]), Iota([3, 3])], 0));
        Assert.Throws<ArgumentException>(() => ArrayOps.Concat([Iota([2]), I([2], 1, 2)], 0));
        Assert.Throws<ArgumentException>(() => ArrayOps.Concat([Iota([2])], 1));
        Assert.Throws<ArgumentException>(() => ArrayOps.Concat([NDArray.Scalar(1)], 0));
        Assert.Throws<ArgumentException>(() => ArrayOps.Concat([], 0));
    }

    [Fact]
    public void Split_middle_axis_into_equal_chunks()
    {
        var parts = ArrayOps.Split(Iota([2, 4, 1]), 1, 2);
        Assert.Equal(2, parts.Length);
        Same(F([2, 2, 1], 0, 1, 4, 5), parts[0]);
        Same(F([2, 2, 1], 2, 3, 6, 7), parts[1]);
    }

    [Fact]
    public void Split_first_and_last_axis_of_ints()
    {
        var x = I([2, 3], 1, 2, 3, 4, 5, 6);
        var rows = ArrayOps.Split(x, 0, 2);
        Same(I([1, 3], 1, 2, 3), rows[0]);
        Same(I([1, 3], 4, 5, 6), rows[1]);
        var cols = ArrayOps.Split(x, -1, 3);
        Same(I([2, 1], 1, 4), cols[0]);
        Same(I([2, 1], 2, 5), cols[1]);
        Same(I([2, 1], 3, 6), cols[2]);
    }

    [Fact]
    public void Split_throws_when_not_divisible()
    {
        var e = Assert.Throws<ArgumentException>(() => ArrayOps.Split(Iota([2, 3]), 1, 2));
        Assert.Contains("not divisible", e.Message);
        Assert.Throws<ArgumentException>(() => ArrayOps.Split(Iota([2, 4]), 1, 0));
    }

    [Fact]
    public void Slice_each_axis()
    {
        var x = Iota([2, 3, 2]);
        Same(F([1, 3, 2], 6, 7, 8, 9, 10, 11), ArrayOps.Slice(x, 0, 1, 1));
        Same(F([2, 2, 2], 2, 3, 4, 5, 8, 9, 10, 11), ArrayOps.Slice(x, 1, 1, 2));
        Same(F([2, 3, 1], 1, 3, 5, 7, 9, 11), ArrayOps.Slice(x, 2, 1, 1));
        Same(F([2, 0, 2]), ArrayOps.Slice(x, 1, 3, 0));
    }

    [Fact]
    public void Slice_rejects_out_of_range()
    {
        var x = Iota([2, 3]);
        Assert.Throws<ArgumentException>(() => ArrayOps.Slice(x, 1, 2, 2));
        Assert.Throws<ArgumentException>(() => ArrayOps.Slice(x, 1, -1, 1));
        Assert.Throws<ArgumentException>(() => ArrayOps.Slice(x, 2, 0, 1));
    }

    [Fact]
    public void Sum_of_f32_adds_elementwise()
    {
        // 19 elements: more than one SIMD vector plus a scalar tail.
        var a = Iota([19]);
        var b = Iota([19], 100);
        var r = ArrayOps.Sum([a, b, a]);
        Same(F([19], Enumerable.Range(0, 19).Select(i => 100f + 3 * i).ToArray()), r);
        Assert.NotSame(a.F, ArrayOps.Sum([a]).F);
    }

    [Fact]
    public void Sum_of_i32_wraps()
    {
        var r = ArrayOps.Sum([I([3], int.MaxValue, -5, 7), I([3], 1, -6, int.MinValue)]);
        Same(I([3], int.MinValue, -11, int.MinValue + 7), r);
    }

    [Theory]
    // 257 rounds to 256 (spacing 2), twice; the exact sum 258 would be representable
    [InlineData(DType.BF16, 256f, 256f)]
    [InlineData(DType.F16, 2048f, 2048f)] // same at f16's spacing of 2 above 2048
    [InlineData(DType.F32, 256f, 258f)]
    public void Sum_rounds_after_each_addition(DType dtype, float start, float expected)
    {
        var one = NDArray.FromFloats(dtype, [1], [1]);
        var r = ArrayOps.Sum([NDArray.FromFloats(dtype, [1], [start]), one, one]);
        Assert.Equal(dtype, r.DType);
        Assert.Equal(expected, r.F![0]);
    }

    [Fact]
    public void Sum_rejects_mismatched_arrays()
    {
        Assert.Throws<ArgumentException>(() => ArrayOps.Sum([Iota([2]), Iota([3])]));
        Assert.Throws<ArgumentException>(() => ArrayOps.Sum([Iota([2]), NDArray.FromFloats(DType.F16, [2], [0, 0])]));
        Assert.Throws<ArgumentException>(() => ArrayOps.Sum([]));
    }

    [Fact]
    public void Max_is_elementwise_and_nan_wins()
    {
        Same(F([3], 4, float.NaN, 0), ArrayOps.Max([F([3], 1, float.NaN, -1), F([3], 4, 2, 0), F([3], 3, 9, -7)]));
        Same(I([2], 5, -1), ArrayOps.Max([I([2], 5, -3), I([2], -2, -1)]));
    }

    [Fact]
    public void Copy_is_deep()
    {
        var x = I([2], 1, 2);
        var c = ArrayOps.Copy(x);
        Same(x, c);
        Assert.NotSame(x.I, c.I);
        Assert.NotSame(x.Shape, c.Shape);
    }
}
