using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>Reads and writes named arrays in .npy, .npz or .safetensors files, chosen by the file's
/// extension.</summary>
public static class ArrayFile
{
    /// <summary>The extensions <see cref="Read"/> and <see cref="Write"/> understand.</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".npy", ".npz", ".safetensors"];

    /// <summary>
    /// Reads every array in <paramref name="path"/>. A .npy file holds one array, keyed by the file name without
    /// its extension.
    /// </summary>
    public static Dictionary<string, NpyArray> Read(string path) =>
        Extension(path) switch
        {
            ".npz" => Npz.Read(path),
            ".safetensors" => Safetensors.Read(path),
            _ => new() { [Path.GetFileNameWithoutExtension(path)] = Npy.Read(path) },
        };

    /// <summary>Writes <paramref name="arrays"/> to <paramref name="path"/>; a .npy file takes exactly one
    /// array.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, NDArray> arrays)
    {
        switch (Extension(path))
        {
            case ".npz":
                Npz.Write(path, arrays);
                break;
            case ".safetensors":
                Safetensors.Write(path, arrays);
                break;
            default:
                if (arrays.Count != 1)
                    throw new ArrayFileException(
                        $"{path}: a .npy file holds exactly one array, but {arrays.Count} "
                            + $"were given"
                            + (arrays.Count > 0 ? $" ({string.Join(", ", arrays.Keys)}); use .npz or .safetensors" : "")
                    );
                Npy.Write(path, arrays.Values.First());
                break;
        }
    }

    private static string Extension(string path)
    {
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (!Extensions.Contains(ext))
            throw new ArrayFileException(
                $"{path}: unknown array file extension '{ext}': expected one of " + $"{string.Join(", ", Extensions)}"
            );
        return ext;
    }

    /// <summary>Opens <paramref name="path"/> for reading, turning every failure into an <see
    /// cref="ArrayFileException"/>.</summary>
    internal static FileStream OpenRead(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(path, "opening it", e);
        }
    }

    /// <summary>
    /// Writes <paramref name="path"/> through a temporary file in the same directory, so that a failed write never
    /// leaves a half-written file under the final name (readers of checkpoints would take it for a valid one).
    /// </summary>
    internal static void WriteAtomically(string path, Action<FileStream> write)
    {
        string full,
            temp;
        try
        {
            full = Path.GetFullPath(path);
            temp = Path.Combine(
                Path.GetDirectoryName(full) ?? ".",
                $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp"
            );
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(path, "resolving the path", e);
        }
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16))
                write(fs);
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            TryDelete(temp);
            throw e is DirectoryNotFoundException
                ? new ArrayFileException($"{path}: cannot write: the directory does not exist", e)
                : ArrayFileException.Wrap(path, "writing it", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        { /* the original error matters more */
        }
    }
}

/// <summary>Element types that occur in array files, independent of how a format spells them.</summary>
internal enum ElementKind
{
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

/// <summary>An element type as stored in a file: kind, byte order, and the format's own name for messages.</summary>
internal readonly record struct ElementType(ElementKind Kind, bool BigEndian, string Name)
{
    /// <summary>Bytes per element in the file.</summary>
    public int Size =>
        Kind switch
        {
            ElementKind.Bool or ElementKind.I8 or ElementKind.U8 => 1,
            ElementKind.I16 or ElementKind.U16 or ElementKind.F16 or ElementKind.BF16 => 2,
            ElementKind.I32 or ElementKind.U32 or ElementKind.F32 => 4,
            _ => 8,
        };

    /// <summary>The runtime type values are converted to: floats keep their width class, integers become i32.</summary>
    public DType Target =>
        Kind switch
        {
            ElementKind.F16 => DType.F16,
            ElementKind.BF16 => DType.BF16,
            ElementKind.F32 or ElementKind.F64 => DType.F32,
            _ => DType.I32,
        };
}

/// <summary>Converts raw little- or big-endian element data to and from <see cref="NDArray"/> values.</summary>
internal static class ElementCodec
{
    // Data is streamed through a fixed buffer so that decompressing streams and huge arrays need no second copy.
    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Reads the data of an array of <paramref name="shape"/> from <paramref name="s"/>. <paramref name="available"/>
    /// is the number of bytes known to be left (-1 if unknown), checked before allocating so that a corrupt shape
    /// is reported as such instead of exhausting memory.
    /// </summary>
    public static NDArray Read(Stream s, ElementType t, long[] shape, bool fortran, string what, long available)
    {
        long count,
            bytes;
        try
        {
            count = NDArray.ShapeSize(shape);
            bytes = checked(count * t.Size);
        }
        catch (OverflowException)
        {
            throw new ArrayFileException($"{what}: shape {ShapeText(shape)} is too large");
        }
        if (available >= 0 && available < bytes)
            throw Truncated(what, bytes, available);
        if (count > Array.MaxLength)
            throw new ArrayFileException(
                $"{what}: shape {ShapeText(shape)} has {count} elements; a host array holds "
                    + $"at most {Array.MaxLength}"
            );

        float[]? f = t.Target.IsFloat() ? new float[count] : null;
        int[]? ints = f == null ? new int[count] : null;
        var buf = new byte[(int)Math.Clamp(bytes, 1, ChunkBytes)];
        long done = 0;
        while (done < count)
        {
            int want = (int)Math.Min(buf.Length, (count - done) * t.Size);
            int got = ReadUpTo(s, buf.AsSpan(0, want));
            if (got < want)
                throw Truncated(what, bytes, done * t.Size + got);
            Decode(buf.AsSpan(0, want), t, f, ints, (int)done, shape, fortran, what);
            done += want / t.Size;
        }
        if (fortran && shape.Length > 1)
        {
            if (f != null)
                f = FortranToRowMajor(f, shape);
            else
                ints = FortranToRowMajor(ints!, shape);
        }
        return f != null ? NDArray.FromFloats(t.Target, shape, f) : NDArray.FromInts(shape, ints!);
    }

    /// <summary>Reads until <paramref name="dst"/> is full or the stream ends; returns the bytes read.</summary>
    public static int ReadUpTo(Stream s, Span<byte> dst)
    {
        int got = 0;
        while (got < dst.Length)
        {
            int n = s.Read(dst[got..]);
            if (n == 0)
                break;
            got += n;
        }
        return got;
    }

    /// <summary>The "truncated data" error shared by all formats.</summary>
    public static ArrayFileException Truncated(string what, long expected, long found) =>
        new($"{what}: truncated data: expected {expected} bytes, found {found}");

    /// <summary>A shape as numpy prints it, e.g. (3, 4) or (5,).</summary>
    public static string ShapeText(long[] shape) =>
        shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";

    /// <summary>Decodes the contiguous elements in <paramref name="src"/> into <paramref name="target"/> from
    /// element <paramref name="at"/> (a row-major array of the stored array's shape).</summary>
    public static void DecodeInto(ReadOnlySpan<byte> src, ElementType t, NDArray target, long at, string what) =>
        Decode(src, t, target.F, target.I, checked((int)at), target.Shape, false, what);

    private static void Decode(
        ReadOnlySpan<byte> src,
        ElementType t,
        float[]? f,
        int[]? ints,
        int at,
        long[] shape,
        bool fortran,
        string what
    )
    {
        bool be = t.BigEndian;
        int n = src.Length / t.Size;
        Span<float> fd = f == null ? default : f.AsSpan(at, n);
        Span<int> id = ints == null ? default : ints.AsSpan(at, n);
        switch (t.Kind)
        {
            case ElementKind.F32 when !be && BitConverter.IsLittleEndian:
                MemoryMarshal.Cast<byte, float>(src).CopyTo(fd);
                break;
            case ElementKind.F32:
                for (int k = 0; k < n; k++)
                    fd[k] = be
                        ? BinaryPrimitives.ReadSingleBigEndian(src[(4 * k)..])
                        : BinaryPrimitives.ReadSingleLittleEndian(src[(4 * k)..]);
                break;
            case ElementKind.F64:
                for (int k = 0; k < n; k++)
                    fd[k] = (float)(
                        be
                            ? BinaryPrimitives.ReadDoubleBigEndian(src[(8 * k)..])
                            : BinaryPrimitives.ReadDoubleLittleEndian(src[(8 * k)..])
                    );
                break;
            case ElementKind.F16:
                for (int k = 0; k < n; k++)
                    fd[k] = (float)(
                        be
                            ? BinaryPrimitives.ReadHalfBigEndian(src[(2 * k)..])
                            : BinaryPrimitives.ReadHalfLittleEndian(src[(2 * k)..])
                    );
                break;
            case ElementKind.BF16:
                for (int k = 0; k < n; k++)
                    fd[k] = BitConverter.UInt32BitsToSingle((uint)U16(src, k, be) << 16);
                break;
            case ElementKind.Bool:
                for (int k = 0; k < n; k++)
                    id[k] = src[k] != 0 ? 1 : 0;
                break;
            case ElementKind.I8:
                for (int k = 0; k < n; k++)
                    id[k] = (sbyte)src[k];
                break;
            case ElementKind.U8:
                for (int k = 0; k < n; k++)
                    id[k] = src[k];
                break;
            case ElementKind.I16:
                for (int k = 0; k < n; k++)
                    id[k] = (short)U16(src, k, be);
                break;
            case ElementKind.U16:
                for (int k = 0; k < n; k++)
                    id[k] = U16(src, k, be);
                break;
            case ElementKind.I32 or ElementKind.U32:
                for (int k = 0; k < n; k++)
                {
                    uint v = be
                        ? BinaryPrimitives.ReadUInt32BigEndian(src[(4 * k)..])
                        : BinaryPrimitives.ReadUInt32LittleEndian(src[(4 * k)..]);
                    if (t.Kind == ElementKind.U32 && v > int.MaxValue)
                        throw OutOfRange(what, t, v.ToString(), at + k, shape, fortran);
                    id[k] = (int)v;
                }
                break;
            case ElementKind.I64 or ElementKind.U64:
                for (int k = 0; k < n; k++)
                {
                    ulong v = be
                        ? BinaryPrimitives.ReadUInt64BigEndian(src[(8 * k)..])
                        : BinaryPrimitives.ReadUInt64LittleEndian(src[(8 * k)..]);
                    bool fits =
                        t.Kind == ElementKind.U64 ? v <= int.MaxValue : (long)v is >= int.MinValue and <= int.MaxValue;
                    if (!fits)
                        throw OutOfRange(
                            what,
                            t,
                            t.Kind == ElementKind.U64 ? v.ToString() : ((long)v).ToString(),
                            at + k,
                            shape,
                            fortran
                        );
                    id[k] = (int)(long)v;
                }
                break;
            default:
                throw new ArrayFileException($"{what}: cannot decode dtype {t.Name}");
        }
    }

    private static ushort U16(ReadOnlySpan<byte> src, int k, bool be) =>
        be
            ? BinaryPrimitives.ReadUInt16BigEndian(src[(2 * k)..])
            : BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * k)..]);

    private static ArrayFileException OutOfRange(
        string what,
        ElementType t,
        string value,
        long fileIndex,
        long[] shape,
        bool fortran
    )
    {
        // The file's order is column-major for Fortran arrays, so the first index varies fastest there.
        var idx = new long[shape.Length];
        long rest = fileIndex;
        for (int j = 0; j < shape.Length; j++)
        {
            int d = fortran ? j : shape.Length - 1 - j;
            idx[d] = rest % shape[d];
            rest /= shape[d];
        }
        return new ArrayFileException(
            $"{what}: {t.Name} value {value} at index [{string.Join(", ", idx)}] does not fit in int32 (expected "
                + $"values in [{int.MinValue}, {int.MaxValue}])"
        );
    }

    private static T[] FortranToRowMajor<T>(T[] src, long[] shape)
    {
        int r = shape.Length;
        var colStride = new long[r];
        long acc = 1;
        for (int d = 0; d < r; d++)
        {
            colStride[d] = acc;
            acc *= shape[d];
        }
        var dst = new T[src.Length];
        var idx = new long[r];
        long off = 0;
        for (long i = 0; i < dst.LongLength; i++)
        {
            dst[i] = src[off];
            // Advance the row-major odometer and keep the column-major offset in step with it.
            for (int d = r - 1; d >= 0; d--)
            {
                off += colStride[d];
                if (++idx[d] < shape[d])
                    break;
                off -= colStride[d] * shape[d];
                idx[d] = 0;
            }
        }
        return dst;
    }

    /// <summary>
    /// Writes the values of <paramref name="a"/> little-endian as <paramref name="kind"/> (F32, F16, BF16 or I32;
    /// float values are rounded to the narrower type, which is exact for arrays already of that type).
    /// </summary>
    public static void Write(Stream s, NDArray a, ElementKind kind)
    {
        int size = kind is ElementKind.F16 or ElementKind.BF16 ? 2 : 4;
        var buf = new byte[ChunkBytes];
        int per = ChunkBytes / size;
        long n = a.Size;
        for (long start = 0; start < n; start += per)
        {
            int m = (int)Math.Min(per, n - start);
            Span<byte> dst = buf.AsSpan(0, m * size);
            if (kind == ElementKind.I32)
            {
                ReadOnlySpan<int> v = a.I.AsSpan((int)start, m);
                for (int k = 0; k < m; k++)
                    BinaryPrimitives.WriteInt32LittleEndian(dst[(4 * k)..], v[k]);
            }
            else
            {
                ReadOnlySpan<float> v = a.F.AsSpan((int)start, m);
                for (int k = 0; k < m; k++)
                {
                    switch (kind)
                    {
                        case ElementKind.F32:
                            BinaryPrimitives.WriteSingleLittleEndian(dst[(4 * k)..], v[k]);
                            break;
                        case ElementKind.F16:
                            BinaryPrimitives.WriteHalfLittleEndian(dst[(2 * k)..], (Half)v[k]);
                            break;
                        default:
                            BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * k)..], Bf16Bits(v[k]));
                            break;
                    }
                }
            }
            s.Write(dst);
        }
    }

    private static ushort Bf16Bits(float v)
    {
        // Truncating a NaN whose payload sits in the low half would turn it into infinity.
        if (float.IsNaN(v))
            return (ushort)(float.IsNegative(v) ? 0xFFC0 : 0x7FC0);
        return (ushort)(BitConverter.SingleToUInt32Bits(DType.BF16.Round(v)) >> 16);
    }
}
