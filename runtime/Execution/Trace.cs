using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>One span of work on one device: a kernel, a collective, a send or receive, or a pipeline task around
/// them.</summary>
public readonly record struct TraceEvent(
    int Device,
    string Name,
    string Category,
    double Start,
    double End,
    string? Detail = null
);

/// <summary>
/// Spans of work recorded by every device of a run against one clock (microseconds since the trace began), written
/// as a Chrome/Perfetto trace: one track per device, so the pipeline bubble and the waits in collectives show.
/// Devices record from their own threads.
/// </summary>
public sealed class Trace
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly ConcurrentQueue<TraceEvent> _events = new();

    /// <summary>Microseconds since the trace began.</summary>
    public double Now => _clock.Elapsed.TotalMicroseconds;

    /// <summary>Every span recorded so far.</summary>
    public IReadOnlyList<TraceEvent> Events => _events.ToArray();

    /// <summary>Records a span of <paramref name="device"/> that began at <paramref name="start"/> and ends
    /// now.</summary>
    public void Add(int device, string name, string category, double start, string? detail = null) =>
        _events.Enqueue(new TraceEvent(device, name, category, start, Now, detail));

    /// <summary>Writes the Chrome trace-event JSON (<c>chrome://tracing</c>, Perfetto); <paramref name="deviceNames"/>
    /// label the tracks.</summary>
    public void WriteChromeJson(Stream stream, IReadOnlyList<string> deviceNames)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteStartArray("traceEvents");
        for (int d = 0; d < deviceNames.Count; d++)
        {
            w.WriteStartObject();
            w.WriteString("name", "thread_name");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 0);
            w.WriteNumber("tid", d);
            w.WriteStartObject("args");
            w.WriteString("name", deviceNames[d]);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        // Enclosing spans first where two start together, so viewers nest them.
        foreach (var e in Events.OrderBy(e => e.Device).ThenBy(e => e.Start).ThenByDescending(e => e.End))
        {
            w.WriteStartObject();
            w.WriteString("name", e.Name);
            w.WriteString("cat", e.Category);
            w.WriteString("ph", "X");
            w.WriteNumber("ts", Math.Round(e.Start, 3));
            w.WriteNumber("dur", Math.Round(Math.Max(0, e.End - e.Start), 3));
            w.WriteNumber("pid", 0);
            w.WriteNumber("tid", e.Device);
            if (e.Detail != null)
            {
                w.WriteStartObject("args");
                w.WriteString("at", e.Detail);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
