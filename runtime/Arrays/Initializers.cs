namespace ParallelCompiler.Runtime.Arrays;

/// <summary>
/// Deterministic parameter initialisation. Each parameter draws from its own stream, seeded by the run's seed
/// and a hash of its dotted path, so adding or reordering parameters never changes the others.
/// </summary>
public static class Initializers
{
    /// <summary>An array for initialiser <paramref name="kind"/> (normal, zeros, ones).</summary>
    public static NDArray Create(string kind, double std, DType dtype, long[] shape, ulong seed, string path) =>
        CreateBlock(kind, std, dtype, shape, seed, path, new long[shape.Length], shape);

    /// <summary>Random inputs for a run without an inputs file: normal floats, integers uniform in [0,
    /// bound).</summary>
    public static NDArray RandomInput(DType dtype, long[] shape, ulong seed, string name, long intBound) =>
        RandomInputBlock(dtype, shape, seed, name, intBound, new long[shape.Length], shape);

    /// <summary>The block at <paramref name="offset"/> of <paramref name="blockShape"/> of what <see cref="Create"/>
    /// makes of <paramref name="shape"/>, without the array of that shape: the same stream is drawn in the same order,
    /// and only the block's elements are kept.</summary>
    public static NDArray CreateBlock(
        string kind,
        double std,
        DType dtype,
        long[] shape,
        ulong seed,
        string path,
        long[] offset,
        long[] blockShape
    )
    {
        var a = NDArray.Zeros(dtype, blockShape);
        switch (kind)
        {
            case "zeros":
                break;
            case "ones":
                if (a.F != null)
                    Array.Fill(a.F, 1f);
                else
                    Array.Fill(a.I!, 1);
                break;
            case "normal":
                var rng = new SplitMix64(seed ^ Fnv1a(path));
                if (a.F != null)
                    Draw(
                        shape,
                        offset,
                        blockShape,
                        i => a.F[i] = dtype.Round((float)(std * rng.NextNormal())),
                        () => rng.NextNormal()
                    );
                break;
            default:
                throw new ArgumentException($"unknown initialiser '{kind}'");
        }
        return a;
    }

    /// <summary>The block at <paramref name="offset"/> of <paramref name="blockShape"/> of what <see
    /// cref="RandomInput"/> makes of <paramref name="shape"/>, without the array of that shape.</summary>
    public static NDArray RandomInputBlock(
        DType dtype,
        long[] shape,
        ulong seed,
        string name,
        long intBound,
        long[] offset,
        long[] blockShape
    )
    {
        var a = NDArray.Zeros(dtype, blockShape);
        var rng = new SplitMix64(seed ^ Fnv1a("input:" + name));
        if (a.F != null)
            Draw(shape, offset, blockShape, i => a.F[i] = dtype.Round((float)rng.NextNormal()), () => rng.NextNormal());
        else
            Draw(
                shape,
                offset,
                blockShape,
                i => a.I![i] = (int)(rng.Next() % (ulong)Math.Max(1, intBound)),
                () => rng.Next()
            );
        return a;
    }

    // Walks the elements of an array of shape in row-major order: keep(i) for the block's ith element, skip() for one
    // outside it, so that every element draws from the stream as the whole array's does.
    private static void Draw(long[] shape, long[] offset, long[] blockShape, Action<long> keep, Action skip)
    {
        long total = NDArray.ShapeSize(shape);
        if (blockShape.AsSpan().SequenceEqual(shape))
        {
            // The whole array: every element kept, in order.
            for (long i = 0; i < total; i++)
                keep(i);
            return;
        }
        var strides = NDArray.Strides(shape);
        var blockStrides = NDArray.Strides(blockShape);
        for (long flat = 0; flat < total; flat++)
        {
            long rest = flat,
                at = 0;
            bool inside = true;
            for (int d = 0; d < shape.Length && inside; d++)
            {
                long c = rest / strides[d] - offset[d];
                rest %= strides[d];
                inside = c >= 0 && c < blockShape[d];
                at += c * blockStrides[d];
            }
            if (inside)
                keep(at);
            else
                skip();
        }
    }

    /// <summary>64-bit FNV-1a of a string's UTF-16 code units.</summary>
    public static ulong Fnv1a(string s)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in s)
        {
            h ^= c;
            h *= 1099511628211UL;
        }
        return h;
    }

    /// <summary>SplitMix64: small, fast and identical on every platform.</summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _s = state;

        public ulong Next()
        {
            ulong z = _s += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform in (0, 1].</summary>
        public double NextUnit() => ((Next() >> 11) + 1) * (1.0 / (1UL << 53));

        /// <summary>Standard normal by Box-Muller.</summary>
        public double NextNormal() => Math.Sqrt(-2 * Math.Log(NextUnit())) * Math.Cos(2 * Math.PI * NextUnit());
    }
}
