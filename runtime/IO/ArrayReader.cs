using System.IO.MemoryMappedFiles;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>
/// An array file opened to read parts of its arrays: only the header is read on opening; then <see cref="ReadBox"/>
/// reads the byte ranges of a box of one array (a block of a sharded layout) and nothing else. A <c>.npy</c> file is
/// memory-mapped and the box's rows copied out of the mapping; a <c>.safetensors</c> file is read at the offsets of
/// the box's rows. A <c>.npz</c> archive (whose entries may be compressed) and a Fortran-ordered <c>.npy</c> array
/// are read whole on first use. <see cref="BytesRead"/> counts the bytes of array data taken from the file.
/// </summary>
public sealed unsafe class ArrayReader : IDisposable
{
    // Rows are copied and decoded at most this many bytes at a time.
    private const int ChunkBytes = 1 << 20;

    private readonly Dictionary<string, Entry> _entries = [];
    private readonly List<string> _keys = [];
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle? _file;
    private Dictionary<string, NpyArray>? _whole;

    // Where a key's data lies: its stored type, shape and byte offset in the file; Whole: read with the whole file.
    private sealed record Entry(ElementType Type, long[] Shape, long Offset, bool Whole);

    private ArrayReader(string path) => Path = path;

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The keys of the file's arrays, in the file's order (a .npy file's one key is its name).</summary>
    public IReadOnlyList<string> Keys => _keys;

    /// <summary>The bytes of array data read from the file so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Opens <paramref name="path"/> (by its extension) and reads its header.</summary>
    public static ArrayReader Open(string path)
    {
        string ext = System.IO.Path.GetExtension(path).ToLowerInvariant();
        if (!ArrayFile.Extensions.Contains(ext))
            throw new ArrayFileException(
                $"{path}: unknown array file extension '{ext}': expected one of "
                    + string.Join(", ", ArrayFile.Extensions)
            );
        return ext switch
        {
            ".npy" => OpenNpy(path),
            ".safetensors" => OpenSafetensors(path),
            _ => OpenWhole(path),
        };
    }

    private ArrayReader(string path, Microsoft.Win32.SafeHandles.SafeFileHandle file)
        : this(path) => _file = file;

    private static ArrayReader OpenSafetensors(string path)
    {
        var r = new ArrayReader(path, OpenHandle(path));
        using var fs = ArrayFile.OpenRead(path);
        try
        {
            var (infos, dataStart) = Safetensors.ReadHeader(fs, path, out _);
            foreach (var (key, t, shape, begin, _) in infos)
                r.Add(key, new Entry(t, shape, dataStart + begin, false));
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            r.Dispose();
            throw ArrayFileException.Wrap(path, "reading it", e);
        }
        catch
        {
            r.Dispose();
            throw;
        }
        return r;
    }

    private ArrayReader(string path, MemoryMappedFile map, MemoryMappedViewAccessor view)
        : this(path)
    {
        _map = map;
        _view = view;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + view.PointerOffset;
    }

    private static ArrayReader OpenNpy(string path)
    {
        string key = System.IO.Path.GetFileNameWithoutExtension(path);
        ElementType t;
        bool fortran;
        long[] shape;
        long offset,
            length;
        using (var fs = ArrayFile.OpenRead(path))
        {
            try
            {
                (t, fortran, shape, offset) = Npy.ReadHeader(fs, path);
                length = fs.Length;
            }
            catch (Exception e) when (ArrayFileException.IsInputProblem(e))
            {
                throw ArrayFileException.Wrap(path, "reading the array", e);
            }
        }
        long bytes = DataBytes(t, shape, path);
        if (length - offset < bytes)
            throw ElementCodec.Truncated(path, bytes, length - offset);
        if (fortran && shape.Length > 1)
        {
            var whole = OpenWhole(path);
            whole._entries[key] = new Entry(t, shape, offset, true);
            return whole;
        }
        ArrayReader r;
        try
        {
            var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            r = new ArrayReader(path, map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read));
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(path, "mapping it", e);
        }
        r.Add(key, new Entry(t, shape, offset, false));
        return r;
    }

    // A file read whole on first use (an .npz archive): its header is the whole file's directory.
    private static ArrayReader OpenWhole(string path)
    {
        var r = new ArrayReader(path);
        if (System.IO.Path.GetExtension(path).Equals(".npz", StringComparison.OrdinalIgnoreCase))
        {
            r._whole = Npz.Read(path);
            foreach (var (key, a) in r._whole)
            {
                // The archive's entries count as the runtime's elements (they may be compressed).
                var kind = a.Array.DType switch
                {
                    DType.F16 => ElementKind.F16,
                    DType.BF16 => ElementKind.BF16,
                    DType.I32 => ElementKind.I32,
                    _ => ElementKind.F32,
                };
                r.Add(key, new Entry(new ElementType(kind, false, a.SourceDtype), a.Array.Shape, 0, true));
                r.BytesRead += a.Array.Size * a.Array.DType.Size();
            }
        }
        else
            r.Add(System.IO.Path.GetFileNameWithoutExtension(path), new Entry(default, [], 0, true));
        return r;
    }

    private void Add(string key, Entry e)
    {
        _keys.Add(key);
        _entries[key] = e;
    }

    /// <summary>The global shape of array <paramref name="key"/> and the file's name for its stored type.</summary>
    public (long[] Shape, string SourceDtype) Info(string key)
    {
        var e = Find(key);
        if (e.Whole && _whole == null)
            LoadWhole();
        return _whole != null && _whole.TryGetValue(key, out var a)
            ? (a.Array.Shape, a.SourceDtype)
            : (e.Shape, e.Type.Name);
    }

    /// <summary>The runtime type the array's values are read as (floats keep their width, integers become
    /// i32).</summary>
    public DType Target(string key) =>
        _whole != null && _whole.TryGetValue(key, out var a) ? a.Array.DType : Find(key).Type.Target;

    /// <summary>All of array <paramref name="key"/>.</summary>
    public NpyArray Read(string key)
    {
        var (shape, source) = Info(key);
        var target = NDArray.Zeros(Target(key), shape);
        ReadBox(key, new long[shape.Length], shape, target, new long[shape.Length]);
        return new NpyArray(target, source);
    }

    /// <summary>Array <paramref name="key"/> of its global shape with only <paramref name="blocks"/> read (each an
    /// offset and a shape), zero elsewhere.</summary>
    public NpyArray ReadBlocks(string key, IEnumerable<(long[] Offset, long[] Shape)> blocks)
    {
        var (shape, source) = Info(key);
        var target = NDArray.Zeros(Target(key), shape);
        foreach (var (offset, extent) in blocks)
            ReadBox(key, offset, extent, target, offset);
        return new NpyArray(target, source);
    }

    /// <summary>The block of array <paramref name="key"/> at <paramref name="offset"/> of <paramref name="shape"/>,
    /// as an array of the block's shape (only its bytes are read).</summary>
    public NpyArray ReadBlock(string key, long[] offset, long[] shape)
    {
        var (global, source) = Info(key);
        var target = NDArray.Zeros(Target(key), shape);
        ReadBox(key, offset, shape, target, new long[global.Length]);
        return new NpyArray(target, source);
    }

    /// <summary>
    /// Reads the box of array <paramref name="key"/> at <paramref name="offset"/> of <paramref name="shape"/> into
    /// <paramref name="target"/> (of the array's runtime type) at <paramref name="at"/>: only the bytes of the box's
    /// rows are read.
    /// </summary>
    public void ReadBox(string key, long[] offset, long[] shape, NDArray target, long[] at)
    {
        var e = Find(key);
        var (global, _) = Info(key);
        string what = _entries.Count == 1 && e.Whole ? Path : $"{Path}: key '{key}'";
        if (offset.Length != global.Length || shape.Length != global.Length || at.Length != target.Shape.Length)
            throw new ArgumentException($"{what}: a box of rank {shape.Length} of an array of rank {global.Length}");
        for (int d = 0; d < global.Length; d++)
            if (offset[d] < 0 || offset[d] + shape[d] > global[d] || at[d] + shape[d] > target.Shape[d])
                throw new ArgumentException($"{what}: box outside the array on dimension {d}");
        if (NDArray.ShapeSize(shape) == 0)
            return;
        if (e.Whole)
        {
            CopyBox(_whole![key].Array, offset, shape, target, at);
            return;
        }
        // Rows: the last dimensions the box covers whole in both arrays are one contiguous run of elements.
        int r = shape.Length;
        long run = r == 0 ? 1 : shape[r - 1];
        int lead = r - 1;
        while (lead > 0 && shape[lead] == global[lead] && shape[lead] == target.Shape[lead])
            run *= shape[--lead];
        var srcStrides = NDArray.Strides(global);
        var dstStrides = NDArray.Strides(target.Shape);
        int size = e.Type.Size;
        long rows = r == 0 ? 1 : NDArray.ShapeSize(shape[..lead]);
        var idx = new long[Math.Max(lead, 0)];
        var buffer = _base == null ? new byte[(int)Math.Min(ChunkBytes, run * size)] : null;
        for (long k = 0; k < rows; k++)
        {
            long src = 0,
                dst = 0;
            for (int d = 0; d < r; d++)
            {
                long i = d < lead ? idx[d] : 0;
                src += (offset[d] + i) * srcStrides[d];
                dst += (at[d] + i) * dstStrides[d];
            }
            long per = ChunkBytes / size;
            for (long done = 0; done < run; done += per)
            {
                int n = (int)Math.Min(per, run - done);
                long position = e.Offset + (src + done) * size;
                ReadOnlySpan<byte> bytes;
                if (_base != null)
                    bytes = new ReadOnlySpan<byte>(_base + position, n * size);
                else
                {
                    var span = buffer.AsSpan(0, n * size);
                    int got = 0;
                    try
                    {
                        while (got < span.Length)
                        {
                            int m = RandomAccess.Read(_file!, span[got..], position + got);
                            if (m == 0)
                                throw ElementCodec.Truncated(what, span.Length, got);
                            got += m;
                        }
                    }
                    catch (Exception x) when (ArrayFileException.IsInputProblem(x))
                    {
                        throw ArrayFileException.Wrap(what, "reading the array", x);
                    }
                    bytes = span;
                }
                ElementCodec.DecodeInto(bytes, e.Type, target, dst + done, what);
                BytesRead += bytes.Length;
            }
            for (int d = lead - 1; d >= 0; d--)
            {
                if (++idx[d] < shape[d])
                    break;
                idx[d] = 0;
            }
        }
    }

    /// <summary>The sum of the byte sizes of the arrays of <paramref name="keys"/> as stored in the file.</summary>
    public long DataBytes(IEnumerable<string> keys) =>
        keys.Sum(k => NDArray.ShapeSize(Info(k).Shape) * Find(k).Type.Size);

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _file?.Dispose();
    }

    private Entry Find(string key) =>
        _entries.TryGetValue(key, out var e)
            ? e
            : throw new ArrayFileException($"{Path}: no array '{key}' (the file has {string.Join(", ", _keys)})");

    private void LoadWhole()
    {
        var a = Npy.Read(Path);
        _whole = new() { [_keys[0]] = a };
        BytesRead += a.Array.Size * _entries[_keys[0]].Type.Size;
    }

    private static long DataBytes(ElementType t, long[] shape, string what)
    {
        try
        {
            return checked(NDArray.ShapeSize(shape) * t.Size);
        }
        catch (OverflowException)
        {
            throw new ArrayFileException($"{what}: shape {ElementCodec.ShapeText(shape)} is too large");
        }
    }

    private static Microsoft.Win32.SafeHandles.SafeFileHandle OpenHandle(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(path, "opening it", e);
        }
    }

    // A box of an array in memory into another, one innermost row at a time.
    private static void CopyBox(NDArray src, long[] offset, long[] shape, NDArray dst, long[] at)
    {
        int r = shape.Length;
        long row = r == 0 ? 1 : shape[r - 1];
        var ss = NDArray.Strides(src.Shape);
        var ds = NDArray.Strides(dst.Shape);
        var idx = new long[r];
        for (long done = 0; done < NDArray.ShapeSize(shape); done += row)
        {
            long s = 0,
                d = 0;
            for (int k = 0; k < r; k++)
            {
                s += (offset[k] + idx[k]) * ss[k];
                d += (at[k] + idx[k]) * ds[k];
            }
            if (src.F != null)
                Array.Copy(src.F, s, dst.F!, d, row);
            else
                Array.Copy(src.I!, s, dst.I!, d, row);
            for (int k = r - 2; k >= 0; k--)
            {
                if (++idx[k] < shape[k])
                    break;
                idx[k] = 0;
            }
        }
    }
}
