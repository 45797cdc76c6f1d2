using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// The inputs and parameters as one process of an MPI job holds them: of each value only the blocks that its
/// devices take (each keyed by its offset in the global array), never the array of the global shape. Inputs are
/// named <c>input N</c>, parameters by their dotted path. A step's updates replace the blocks they write.
/// </summary>
public sealed class HeldBlocks
{
    private readonly Dictionary<string, Dictionary<string, (long[] Offset, NDArray Block)>> _values = [];
    private long _bytes;

    /// <summary>The name of input <paramref name="index"/>.</summary>
    public static string Input(int index) => $"input {index}";

    /// <summary>The bytes of host memory the blocks take (4 an element: f16 and bf16 are held widened).</summary>
    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Holds <paramref name="block"/> as the block of <paramref name="value"/> at <paramref
    /// name="offset"/>, in place of any block held there.</summary>
    public void Put(string value, long[] offset, NDArray block)
    {
        ArgumentNullException.ThrowIfNull(block);
        lock (_values)
        {
            if (!_values.TryGetValue(value, out var blocks))
                _values[value] = blocks = [];
            string key = string.Join(",", offset);
            if (blocks.TryGetValue(key, out var old))
                _bytes -= old.Block.Size * 4;
            blocks[key] = ((long[])offset.Clone(), block);
            _bytes += block.Size * 4;
        }
    }

    /// <summary>The block of <paramref name="value"/> at <paramref name="offset"/> of <paramref name="shape"/>; an
    /// error when this process does not hold it (a device asked for a block the process never read).</summary>
    public NDArray Get(string value, long[] offset, long[] shape)
    {
        lock (_values)
        {
            if (
                _values.TryGetValue(value, out var blocks)
                && blocks.TryGetValue(string.Join(",", offset), out var held)
                && held.Block.Shape.AsSpan().SequenceEqual(shape)
            )
                return held.Block;
        }
        throw new InvalidOperationException(
            $"this process holds no block of {value} at [{string.Join(", ", offset)}] of [{string.Join(", ", shape)}]"
        );
    }

    /// <summary>Whether a block of <paramref name="value"/> at <paramref name="offset"/> is held.</summary>
    public bool Holds(string value, long[] offset)
    {
        lock (_values)
            return _values.TryGetValue(value, out var blocks) && blocks.ContainsKey(string.Join(",", offset));
    }

    /// <summary>Every block held of <paramref name="value"/>, with its offset.</summary>
    public IReadOnlyList<(long[] Offset, NDArray Block)> Blocks(string value)
    {
        lock (_values)
            return _values.TryGetValue(value, out var blocks) ? [.. blocks.Values] : [];
    }
}
