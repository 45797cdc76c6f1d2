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
    private readonly long _origin = Stopwatch.GetTimestamp();
    private readonly ConcurrentQueue<TraceEvent> _events = new();

    /// <summary>Microseconds since the trace began.</summary>
    public double Now => At(Stopwatch.GetTimestamp());

    /// <summary>A <see cref="Stopwatch"/> timestamp in microseconds since the trace began (never before it).</summary>
    public double At(long timestamp) => Math.Max(0, Stopwatch.GetElapsedTime(_origin, timestamp).TotalMicroseconds);

    /// <summary>Every span recorded so far.</summary>
    public IReadOnlyList<TraceEvent> Events => _events.ToArray();

    /// <summary>Records a span of <paramref name="device"/> that began at <paramref name="start"/> and ends
    /// now.</summary>
    public void Add(int device, string name, string category, double start, string? detail = null) =>
        _events.Enqueue(new TraceEvent(device, name, category, start, Now, detail));

    /// <summary>The category of a collective in flight (from its start to when its group completed it), drawn on
    /// the device's communication track.</summary>
    public const string AsyncCategory = "async";

    /// <summary>The track of device <paramref name="device"/>'s collectives in flight.</summary>
    public static int CommTrack(int device, int devices) => devices + device;

    /// <summary>Records a span of <paramref name="device"/> from <paramref name="start"/> to <paramref
    /// name="end"/>.</summary>
    public void AddSpan(int device, string name, string category, double start, double end, string? detail = null) =>
        _events.Enqueue(new TraceEvent(device, name, category, start, Math.Max(start, end), detail));

    /// <summary>Writes the Chrome trace-event JSON (<c>chrome://tracing</c>, Perfetto); <paramref name="deviceNames"/>
    /// label the tracks.</summary>
    public void WriteChromeJson(Stream stream, IReadOnlyList<string> deviceNames)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        w.WriteStartObject();
        w.WriteString("displayTimeUnit", "ms");
        w.WriteStartArray("traceEvents");
        var events = Events;
        var tracks = Enumerable.Range(0, deviceNames.Count).Select(d => (Tid: d, Name: deviceNames[d])).ToList();
        // Collectives in flight overlap the device's own work, so they get a track of their own under it.
        foreach (int d in events.Where(e => e.Category == AsyncCategory).Select(e => e.Device).Distinct().Order())
            if (d < deviceNames.Count)
                tracks.Add((CommTrack(d, deviceNames.Count), $"{deviceNames[d]} comm"));
        foreach (var (tid, name) in tracks)
        {
            w.WriteStartObject();
            w.WriteString("name", "thread_name");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 0);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
            w.WriteString("name", name);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("name", "thread_sort_index");
            w.WriteString("ph", "M");
            w.WriteNumber("pid", 0);
            w.WriteNumber("tid", tid);
            w.WriteStartObject("args");
            w.WriteNumber("sort_index", tid < deviceNames.Count ? 2 * tid : 2 * (tid - deviceNames.Count) + 1);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        // Enclosing spans first where two start together, so viewers nest them.
        foreach (var e in events.OrderBy(e => e.Device).ThenBy(e => e.Start).ThenByDescending(e => e.End))
        {
            w.WriteStartObject();
            w.WriteString("name", e.Name);
            w.WriteString("cat", e.Category);
            w.WriteString("ph", "X");
            w.WriteNumber("ts", Math.Round(e.Start, 3));
            w.WriteNumber("dur", Math.Round(Math.Max(0, e.End - e.Start), 3));
            w.WriteNumber("pid", 0);
            w.WriteNumber("tid", e.Category == AsyncCategory ? CommTrack(e.Device, deviceNames.Count) : e.Device);
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
