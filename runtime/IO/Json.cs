using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>The small pieces the runtime's JSON files (program, manifest) share.</summary>
internal static class Json
{
    /// <summary>Writes <c>"name": [items...]</c>.</summary>
    public static void Array<T>(Utf8JsonWriter w, string name, IEnumerable<T> items)
    {
        w.WriteStartArray(name);
        foreach (var x in items)
            switch (x)
            {
                case int i:
                    w.WriteNumberValue(i);
                    break;
                case long l:
                    w.WriteNumberValue(l);
                    break;
                case string s:
                    w.WriteStringValue(s);
                    break;
                default:
                    throw new ArgumentException($"no JSON form for {typeof(T).Name}");
            }
        w.WriteEndArray();
    }

    /// <summary>Writes an element type and shape: <c>"dtype": "f32", "shape": [...]</c>.</summary>
    public static void Type(Utf8JsonWriter w, DType dtype, long[] shape)
    {
        w.WriteString("dtype", dtype.Name());
        Array(w, "shape", shape);
    }

    /// <summary>Reads what <see cref="Type"/> wrote.</summary>
    public static (DType, long[]) ReadType(JsonElement e)
    {
        string name = e.GetProperty("dtype").GetString()!;
        if (!DTypes.TryParse(name, out var dtype))
            throw new InvalidDataException($"unknown element type '{name}'");
        return (dtype, e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray());
    }

    /// <summary>Reads an array of integers.</summary>
    public static int[] ReadInts(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
