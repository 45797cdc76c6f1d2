namespace ParallelCompiler.Runtime.Arrays;

/// <summary>Element types of the language and the IR.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float.</summary>
    F32,

    /// <summary>16-bit IEEE float (stored widened to f32, rounded after every op).</summary>
    F16,

    /// <summary>bfloat16 (stored widened to f32, rounded after every op).</summary>
    BF16,

    /// <summary>32-bit signed integer.</summary>
    I32,
}

/// <summary>Names, sizes and rounding of element types.</summary>
public static class DTypes
{
    /// <summary>The IR/language spelling: f32, f16, bf16, i32.</summary>
    public static string Name(this DType t) =>
        t switch
        {
            DType.F32 => "f32",
            DType.F16 => "f16",
            DType.BF16 => "bf16",
            DType.I32 => "i32",
            _ => throw new ArgumentOutOfRangeException(nameof(t)),
        };

    /// <summary>Parses a spelling of <see cref="Name"/>; false for anything else.</summary>
    public static bool TryParse(string s, out DType t)
    {
        switch (s)
        {
            case "f32":
                t = DType.F32;
                return true;
            case "f16":
                t = DType.F16;
                return true;
            case "bf16":
                t = DType.BF16;
                return true;
            case "i32":
                t = DType.I32;
                return true;
            default:
                t = default;
                return false;
        }
    }

    /// <summary>Bytes per element on a device.</summary>
    public static int Size(this DType t) =>
        t switch
        {
            DType.F16 or DType.BF16 => 2,
            _ => 4,
        };

    /// <summary>True for the floating-point types.</summary>
    public static bool IsFloat(this DType t) => t != DType.I32;

    /// <summary>Rounds an f32 value to the precision of <paramref name="t"/> (identity for f32).</summary>
    public static float Round(this DType t, float v) =>
        t switch
        {
            DType.F16 => (float)(Half)v,
            DType.BF16 => RoundBf16(v),
            _ => v,
        };

    private static float RoundBf16(float v)
    {
        if (float.IsNaN(v))
            return v;
        uint bits = BitConverter.SingleToUInt32Bits(v);
        uint lsb = (bits >> 16) & 1;
        bits += 0x7FFF + lsb; // round to nearest, ties to even
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }
}

/// <summary>
/// A dense row-major array on the host: the values the reference interpreter computes with and the arrays read
/// from and written to .npy/.npz/.safetensors files. Float types keep their values in <see cref="F"/> (f16 and
/// bf16 widened), i32 in <see cref="I"/>.
/// </summary>
public sealed class NDArray : IArray
{
    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Dimensions; empty for a scalar.</summary>
    public long[] Shape { get; }

    /// <summary>Float values (f32, f16, bf16), or null for i32.</summary>
    public float[]? F { get; }

    /// <summary>Integer values (i32), or null for float types.</summary>
    public int[]? I { get; }

    /// <summary>Number of elements.</summary>
    public long Size => F?.LongLength ?? I!.LongLength;

    private NDArray(DType dtype, long[] shape, float[]? f, int[]? i)
    {
        DType = dtype;
        Shape = shape;
        F = f;
        I = i;
        long n = ShapeSize(shape);
        long have = f?.LongLength ?? i?.LongLength ?? -1;
        if (have != n)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] needs {n} elements, got {have}");
    }

    /// <summary>A float array of type <paramref name="dtype"/> over <paramref name="data"/> (not copied).</summary>
    public static NDArray FromFloats(DType dtype, long[] shape, float[] data)
    {
        if (!dtype.IsFloat())
            throw new ArgumentException("FromFloats needs a float dtype");
        return new NDArray(dtype, shape, data, null);
    }

    /// <summary>An f32 array over <paramref name="data"/> (not copied).</summary>
    public static NDArray FromFloats(long[] shape, float[] data) => FromFloats(DType.F32, shape, data);

    /// <summary>An i32 array over <paramref name="data"/> (not copied).</summary>
    public static NDArray FromInts(long[] shape, int[] data) => new(DType.I32, shape, null, data);

    /// <summary>A zero-filled array.</summary>
    public static NDArray Zeros(DType dtype, long[] shape)
    {
        long n = ShapeSize(shape);
        if (n > Array.MaxLength)
            throw new InsufficientMemoryException($"an array of {n} elements is too large for " + $"the host");
        return dtype.IsFloat()
            ? new NDArray(dtype, shape, new float[n], null)
            : new NDArray(dtype, shape, null, new int[n]);
    }

    /// <summary>A scalar f32.</summary>
    public static NDArray Scalar(float v) => FromFloats([], [v]);

    /// <summary>Product of the dimensions (1 for a scalar).</summary>
    public static long ShapeSize(ReadOnlySpan<long> shape)
    {
        long n = 1;
        foreach (long d in shape)
            n = checked(n * d);
        return n;
    }

    /// <summary>Row-major strides, in elements.</summary>
    public static long[] Strides(long[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            s[i] = acc;
            acc *= shape[i];
        }
        return s;
    }

    /// <summary>The element at flat index <paramref name="i"/> as a double.</summary>
    public double GetDouble(long i) => F != null ? F[i] : (double)I![i];

    /// <summary>Shape as the language writes it, e.g. f32[8, 64].</summary>
    public string TypeString => $"{DType.Name()}[{string.Join(", ", Shape)}]";

    /// <inheritdoc/>
    public override string ToString() => TypeString;
}
