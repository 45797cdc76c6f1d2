using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>
/// Reads and writes the safetensors format: a little-endian u64 header size N, N bytes of JSON describing each
/// tensor (dtype, shape, data_offsets relative to the data buffer) and an optional "__metadata__" map of strings,
/// then the data buffer.
/// </summary>
public static class Safetensors
{
    // The reference implementation refuses larger headers; a corrupt size field must not cause a huge allocation.
    private const long MaxHeaderBytes = 100_000_000;
    private const string MetadataKey = "__metadata__";

    private static readonly string Supported = "F32, F16, BF16, F64, I32, I64, I16, I8, U8, U16, U32, U64, BOOL";

    /// <summary>Reads every tensor in the safetensors file at <paramref name="path"/>, in header order.</summary>
    public static Dictionary<string, NpyArray> Read(string path) => Read(path, out _);

    /// <summary>Reads every tensor and the "__metadata__" map (empty if absent) of the file at <paramref
    /// name="path"/>.</summary>
    public static Dictionary<string, NpyArray> Read(string path, out Dictionary<string, string> metadata)
    {
        using var fs = ArrayFile.OpenRead(path);
        try
        {
            return ReadCore(fs, path, out metadata);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw ArrayFileException.Wrap(path, "reading it", e);
        }
    }

    private static Dictionary<string, NpyArray> ReadCore(
        FileStream fs,
        string path,
        out Dictionary<string, string> metadata
    )
    {
        var (infos, dataStart) = ReadHeader(fs, path, out metadata);
        var result = new Dictionary<string, NpyArray>();
        foreach (var (key, t, shape, begin, end) in infos)
        {
            string what = $"{path}: key '{key}'";
            fs.Seek(dataStart + begin, SeekOrigin.Begin);
            result[key] = new NpyArray(ElementCodec.Read(fs, t, shape, false, what, end - begin), t.Name);
        }
        return result;
    }

    /// <summary>The header of the safetensors file <paramref name="fs"/>: each tensor's key, stored type, shape and
    /// data offsets (checked against the file's length), in header order, and where the data buffer starts.</summary>
    internal static (
        List<(string Key, ElementType Type, long[] Shape, long Begin, long End)> Infos,
        long DataStart
    ) ReadHeader(FileStream fs, string path, out Dictionary<string, string> metadata)
    {
        long fileLen = fs.Length;
        Span<byte> sizeField = stackalloc byte[8];
        int got = ElementCodec.ReadUpTo(fs, sizeField);
        if (got < 8)
            throw new ArrayFileException(
                $"{path}: truncated header: expected at least 8 bytes (the header " + $"size), found {got}"
            );
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(sizeField);
        if (n > MaxHeaderBytes)
            throw new ArrayFileException(
                $"{path}: bad header: its size field says {n} bytes, expected at most "
                    + $"{MaxHeaderBytes} (is this a safetensors file?)"
            );
        if ((long)n > fileLen - 8)
            throw new ArrayFileException(
                $"{path}: truncated header: the size field says {n} bytes, but only " + $"{fileLen - 8} follow"
            );
        var header = new byte[n];
        got = ElementCodec.ReadUpTo(fs, header);
        if (got < header.Length)
            throw new ArrayFileException($"{path}: truncated header: expected {n} bytes, found " + $"{got}");
        long dataStart = 8 + (long)n,
            bufferLen = fileLen - dataStart;

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new ArrayFileException($"{path}: bad header: expected a JSON object, but " + $"{e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArrayFileException(
                    $"{path}: bad header: expected a JSON object, found a " + $"{doc.RootElement.ValueKind}"
                );
            metadata = [];
            var infos = new List<(string Key, ElementType Type, long[] Shape, long Begin, long End)>();
            var seen = new HashSet<string>();
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(prop.Name))
                    throw new ArrayFileException($"{path}: bad header: key '{prop.Name}' occurs " + $"more than once");
                if (prop.Name == MetadataKey)
                    metadata = ParseMetadata(prop.Value, path);
                else
                    infos.Add(ParseInfo(prop.Name, prop.Value, path, bufferLen));
            }
            return (infos, dataStart);
        }
    }

    private static Dictionary<string, string> ParseMetadata(JsonElement m, string path)
    {
        if (m.ValueKind != JsonValueKind.Object)
            throw new ArrayFileException(
                $"{path}: bad header: '{MetadataKey}' must be an object of strings, found a " + $"{m.ValueKind}"
            );
        var d = new Dictionary<string, string>();
        foreach (var p in m.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw new ArrayFileException(
                    $"{path}: bad header: '{MetadataKey}' entry '{p.Name}' must be a string, "
                        + $"found a {p.Value.ValueKind}"
                );
            d[p.Name] = p.Value.GetString()!;
        }
        return d;
    }

    private static (string, ElementType, long[], long, long) ParseInfo(
        string key,
        JsonElement v,
        string path,
        long bufferLen
    )
    {
        string what = $"{path}: key '{key}'";
        if (v.ValueKind != JsonValueKind.Object)
            throw new ArrayFileException(
                $"{what}: bad header: expected an object with dtype, shape and data_offsets, "
                    + $"found a {v.ValueKind}"
            );
        JsonElement Field(string name) =>
            v.TryGetProperty(name, out var f)
                ? f
                : throw new ArrayFileException(
                    $"{what}: bad header: missing field '{name}' (expected dtype, shape and " + $"data_offsets)"
                );

        var dt = Field("dtype");
        if (dt.ValueKind != JsonValueKind.String)
            throw new ArrayFileException($"{what}: bad header: 'dtype' must be " + $"a string, found a {dt.ValueKind}");
        string dtype = dt.GetString()!;
        ElementType t =
            ParseDtype(dtype)
            ?? throw new ArrayFileException($"{what}: unsupported dtype '{dtype}': expected one of {Supported}");
        long[] shape = Integers(Field("shape"), "shape", what, -1);
        long[] offsets = Integers(Field("data_offsets"), "data_offsets", what, 2);
        long begin = offsets[0],
            end = offsets[1];
        string shown = $"data_offsets [{begin}, {end}]";
        if (begin > end)
            throw new ArrayFileException($"{what}: bad {shown}: expected begin <= end");
        if (end > bufferLen)
            throw new ArrayFileException(
                $"{what}: bad {shown}: expected them within the data buffer of {bufferLen} "
                    + $"bytes (the file is truncated or the header is wrong)"
            );
        long need;
        try
        {
            need = checked(NDArray.ShapeSize(shape) * t.Size);
        }
        catch (OverflowException)
        {
            throw new ArrayFileException($"{what}: shape [{string.Join(", ", shape)}] is too " + $"large");
        }
        if (end - begin != need)
            throw new ArrayFileException(
                $"{what}: bad {shown}: dtype {dtype} and shape [{string.Join(", ", shape)}] "
                    + $"need {need} bytes, but the offsets span {end - begin}"
            );
        return (key, t, shape, begin, end);
    }

    private static long[] Integers(JsonElement e, string field, string what, int count)
    {
        string expected = count < 0 ? "a list of non-negative integers" : $"a list of {count} non-negative integers";
        if (e.ValueKind != JsonValueKind.Array || (count >= 0 && e.GetArrayLength() != count))
            throw new ArrayFileException($"{what}: bad header: '{field}' must be {expected}, found {e.GetRawText()}");
        var r = new long[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out long v) || v < 0)
                throw new ArrayFileException(
                    $"{what}: bad header: '{field}' must be {expected}, found {e.GetRawText()}"
                );
            r[i++] = v;
        }
        return r;
    }

    private static ElementType? ParseDtype(string s)
    {
        ElementKind? k = s switch
        {
            "F32" => ElementKind.F32,
            "F16" => ElementKind.F16,
            "BF16" => ElementKind.BF16,
            "F64" => ElementKind.F64,
            "I32" => ElementKind.I32,
            "I64" => ElementKind.I64,
            "I16" => ElementKind.I16,
            "I8" => ElementKind.I8,
            "U8" => ElementKind.U8,
            "U16" => ElementKind.U16,
            "U32" => ElementKind.U32,
            "U64" => ElementKind.U64,
            "BOOL" => ElementKind.Bool,
            _ => null,
        };
        return k == null ? null : new ElementType(k.Value, false, s);
    }

    /// <summary>
    /// Writes <paramref name="arrays"/> to <paramref name="path"/> in enumeration order, each in its own type
    /// (F32, F16, BF16, I32), with an optional "__metadata__" map.
    /// </summary>
    public static void Write(
        string path,
        IReadOnlyDictionary<string, NDArray> arrays,
        IReadOnlyDictionary<string, string>? metadata = null
    )
    {
        if (arrays.ContainsKey(MetadataKey))
            throw new ArrayFileException(
                $"{path}: key '{MetadataKey}' is reserved for metadata and cannot name a " + $"tensor"
            );
        var json = new MemoryStream();
        using (
            var w = new Utf8JsonWriter(
                json,
                new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }
            )
        )
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata)
                    w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (key, a) in arrays)
            {
                long bytes = a.Size * a.DType.Size();
                w.WriteStartObject(key);
                w.WriteString(
                    "dtype",
                    a.DType switch
                    {
                        DType.F16 => "F16",
                        DType.BF16 => "BF16",
                        DType.I32 => "I32",
                        _ => "F32",
                    }
                );
                w.WriteStartArray("shape");
                foreach (long d in a.Shape)
                    w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        // Spaces pad the header so that the data buffer starts 8-byte aligned, as the reference writer does.
        while (json.Length % 8 != 0)
            json.WriteByte((byte)' ');

        ArrayFile.WriteAtomically(
            path,
            fs =>
            {
                Span<byte> size = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(size, (ulong)json.Length);
                fs.Write(size);
                json.Position = 0;
                json.CopyTo(fs);
                foreach (var a in arrays.Values)
                {
                    var kind = a.DType switch
                    {
                        DType.F16 => ElementKind.F16,
                        DType.BF16 => ElementKind.BF16,
                        DType.I32 => ElementKind.I32,
                        _ => ElementKind.F32,
                    };
                    ElementCodec.Write(fs, a, kind);
                }
            }
        );
    }
}
