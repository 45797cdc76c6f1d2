using System.Text.Json;

namespace ParallelCompiler.Runtime.IO;

/// <summary>
/// A problem with an array file (.npy, .npz, .safetensors): unreadable, truncated, malformed or holding something
/// the runtime cannot represent. The message names the file (and the key inside it) and says what was expected.
/// </summary>
public sealed class ArrayFileException : Exception
{
    /// <summary>An error with a complete message, e.g. "w.npz: key 'b': truncated data: expected 64 bytes, found
    /// 8".</summary>
    public ArrayFileException(string message)
        : base(message) { }

    /// <summary>An error caused by a lower-level exception, kept as the inner exception.</summary>
    public ArrayFileException(string message, Exception inner)
        : base(message, inner) { }

    /// <summary>
    /// True for the exceptions that I/O, decompression and parsing throw on bad or unreadable input; these are
    /// translated so that callers only ever need to catch <see cref="ArrayFileException"/>.
    /// </summary>
    internal static bool IsInputProblem(Exception e) =>
        e
            is IOException
                or InvalidDataException
                or UnauthorizedAccessException
                or NotSupportedException
                or ArgumentException
                or IndexOutOfRangeException
                or OverflowException
                or FormatException
                or JsonException
                or InsufficientMemoryException
                or InvalidOperationException;

    /// <summary>Wraps <paramref name="e"/> with a message that starts with <paramref name="what"/>.</summary>
    internal static ArrayFileException Wrap(string what, string doing, Exception e) =>
        e switch
        {
            FileNotFoundException or DirectoryNotFoundException => new($"{what}: no such file", e),
            UnauthorizedAccessException => new($"{what}: permission denied while {doing}", e),
            EndOfStreamException => new($"{what}: unexpected end of file while {doing}", e),
            InvalidDataException => new($"{what}: corrupt data while {doing}: {e.Message}", e),
            InsufficientMemoryException => new($"{what}: too large for the host while {doing}: {e.Message}", e),
            _ => new($"{what}: error while {doing}: {e.Message}", e),
        };
}
