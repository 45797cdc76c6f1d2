using System.Text.Json;

namespace ParallelCompiler.Tests.Support;

/// <summary>One complete span of a <c>--trace</c> file (Chrome's trace format, phase X), in microseconds.</summary>
public readonly record struct TraceSpan(string Cat, string Name, int Tid, double Start, double End)
{
    /// <summary>The complete spans of the trace file at <paramref name="path"/>.</summary>
    public static List<TraceSpan> Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc
            .RootElement.GetProperty("traceEvents")
            .EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == "X")
            .Select(e => new TraceSpan(
                e.GetProperty("cat").GetString()!,
                e.GetProperty("name").GetString()!,
                e.GetProperty("tid").GetInt32(),
                e.GetProperty("ts").GetDouble(),
                e.GetProperty("ts").GetDouble() + e.GetProperty("dur").GetDouble()
            ))
            .ToList();
    }

    /// <summary>How long the spans <paramref name="a"/> and <paramref name="b"/> overlap.</summary>
    public static double Overlap(TraceSpan a, TraceSpan b) =>
        Math.Max(0, Math.Min(a.End, b.End) - Math.Max(a.Start, b.Start));
}
