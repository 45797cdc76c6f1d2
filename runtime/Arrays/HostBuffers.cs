using System.Runtime.CompilerServices;

namespace ParallelCompiler.Runtime.Arrays;

/// <summary>
/// Host buffers handed out for arrays whose one holder gives them back when the value dies: the MPI link's reduced
/// results, which the executor releases at their last use (<see cref="Distributed.SimulatedCpuDevice"/>'s
/// <c>Release</c>). A buffer given back is handed out again for the next array of its length, so a step that reduces
/// the same gradients every step does not fault in fresh pages for each result. Only buffers this pool handed out are
/// taken back, each once; at most <see cref="KeptPerLength"/> of a length and <see cref="KeptBytes"/> in all are kept
/// (the rest are left to the collector). Thread-safe.
/// </summary>
public static class HostBuffers
{
    /// <summary>The most free buffers kept of one element type and length.</summary>
    public const int KeptPerLength = 4;

    /// <summary>The most bytes of free buffers kept in all.</summary>
    public const long KeptBytes = 256L << 20;

    // Buffers handed out and not given back (a buffer is in it while some array holds it).
    private static readonly ConditionalWeakTable<Array, object> Out = [];
    private static readonly Dictionary<(bool Ints, int Length), Stack<Array>> Free = [];
    private static readonly Lock Gate = new();
    private static long _freeBytes;

    /// <summary>An uninitialised float buffer of <paramref name="length"/> elements.</summary>
    public static float[] Floats(int length) => (float[])Rent(false, length);

    /// <summary>An uninitialised int buffer of <paramref name="length"/> elements.</summary>
    public static int[] Ints(int length) => (int[])Rent(true, length);

    /// <summary>Gives back the buffer of <paramref name="x"/> if this pool handed it out and it is not back yet: no
    /// array may read it afterwards. Any other array is left alone.</summary>
    public static void Return(NDArray x)
    {
        ArgumentNullException.ThrowIfNull(x);
        Array buffer = x.F != null ? x.F : x.I!;
        lock (Gate)
        {
            if (!Out.Remove(buffer))
                return;
            var key = (x.F == null, buffer.Length);
            long bytes = buffer.Length * 4L;
            if (!Free.TryGetValue(key, out var stack))
                Free[key] = stack = new Stack<Array>();
            if (stack.Count >= KeptPerLength || _freeBytes + bytes > KeptBytes)
                return;
            stack.Push(buffer);
            _freeBytes += bytes;
        }
    }

    private static Array Rent(bool ints, int length)
    {
        Array? buffer = null;
        lock (Gate)
        {
            if (Free.TryGetValue((ints, length), out var stack) && stack.TryPop(out buffer))
                _freeBytes -= length * 4L;
        }
        buffer ??= ints ? GC.AllocateUninitializedArray<int>(length) : GC.AllocateUninitializedArray<float>(length);
        lock (Gate)
            Out.AddOrUpdate(buffer, Free);
        return buffer;
    }
}
