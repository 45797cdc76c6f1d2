using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.IO;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// A model input or result: its name, element type, global shape and layout (the mesh axes each dimension is split
/// over). <paramref name="IntBound"/> bounds random integer inputs (rows of the table or classes they index).
/// </summary>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, string[][] Layout, long IntBound = 10);

/// <summary>A parameter (or optimizer state): dotted path, element type, global shape, layout and
/// initialiser.</summary>
public sealed record ParamInfo(string Path, DType DType, long[] Shape, string[][] Layout, string Init, double Std);

/// <summary>
/// A kernel of the program: its symbol and, for a GPU, the launch shape (grid and block, x y z) and whether the
/// threads of a block meet at barriers (the shared-memory tiles of a matmul).
/// </summary>
public sealed record KernelInfo(string Name, int[] Grid, int[] Block, bool Barriers = false);

/// <summary>
/// A pipelined program's schedule: the pipeline axis, the kind (gpipe, 1f1b, interleaved, zb-h1, zb-h2),
/// microbatches, model chunks per device, and per pipeline device its tasks in order (F3 = forward of microbatch 3,
/// B3.1 = backward of microbatch 3 on chunk 1, W3 = weight gradient of microbatch 3 under zero-bubble schedules).
/// </summary>
public sealed record ScheduleInfo(string Axis, string Kind, int Microbatches, int Chunks, string[][] Order);

/// <summary>
/// What a runtime needs to know of a compiled program besides its instructions: the mesh (with the axis that stands
/// for microbatches, which runs in time), the inputs, results and parameters with their global layouts, whether
/// it is a training step, its kernels and the memory plan of a device. Written as <c>manifest.json</c> in a bundle,
/// with the checksums of the
/// bundle's files.
/// </summary>
public sealed class ProgramManifest
{
    /// <summary>The format of this manifest; readers refuse others.</summary>
    public const int FormatVersion = 1;

    /// <summary>The model's name.</summary>
    public required string Name { get; init; }

    /// <summary>The full mesh, microbatch axis included.</summary>
    public required DeviceMesh Mesh { get; init; }

    /// <summary>The mesh axis that stands for microbatches, or null.</summary>
    public string? MicrobatchAxis { get; init; }

    /// <summary>Inputs in argument order.</summary>
    public required IReadOnlyList<TensorInfo> Inputs { get; init; }

    /// <summary>Results in order.</summary>
    public required IReadOnlyList<TensorInfo> Results { get; init; }

    /// <summary>Parameters and optimizer state, one entry per path.</summary>
    public required IReadOnlyList<ParamInfo> Params { get; init; }

    /// <summary>True when one run is a training step (result 0 the loss; parameters updated).</summary>
    public bool Training { get; init; }

    /// <summary>The kernels, by symbol.</summary>
    public IReadOnlyList<KernelInfo> Kernels { get; init; } = [];

    /// <summary>The memory plan of one device's program, if recorded.</summary>
    public Execution.MemoryPlan? Memory { get; init; }

    /// <summary>Files of the bundle and their SHA-256 (hex).</summary>
    public IReadOnlyDictionary<string, string> Files { get; init; } = new Dictionary<string, string>();

    /// <summary>The pipeline schedule, when the program is pipelined (the program file holds the same order).</summary>
    public ScheduleInfo? Schedule { get; init; }

    /// <summary>The CPU the bundle's host kernels were compiled for (null in bundles written before it was
    /// recorded).</summary>
    public HostCpu? HostCpu { get; init; }

    /// <summary>The devices the program runs on: the mesh without its microbatch axis.</summary>
    public DeviceMesh PhysicalMesh => Mesh.Without(MicrobatchAxis);

    /// <summary>The manifest as indented JSON.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("format", FormatVersion);
            w.WriteString("name", Name);
            w.WriteStartObject("mesh");
            Json.Array(w, "axes", Mesh.AxisNames);
            Json.Array(w, "sizes", Mesh.Sizes);
            if (MicrobatchAxis != null)
                w.WriteString("microbatch_axis", MicrobatchAxis);
            w.WriteNumber("devices", PhysicalMesh.DeviceCount);
            w.WriteEndObject();
            w.WriteBoolean("training", Training);
            Tensors(w, "inputs", Inputs);
            Tensors(w, "results", Results);
            w.WriteStartArray("params");
            foreach (var p in Params)
            {
                w.WriteStartObject();
                w.WriteString("path", p.Path);
                Type(w, p.DType, p.Shape, p.Layout);
                w.WriteString("init", p.Init);
                w.WriteNumber("std", p.Std);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("kernels");
            foreach (var k in Kernels)
            {
                w.WriteStartObject();
                w.WriteString("name", k.Name);
                Json.Array(w, "grid", k.Grid);
                Json.Array(w, "block", k.Block);
                if (k.Barriers)
                    w.WriteBoolean("barriers", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (Memory != null)
            {
                w.WriteStartObject("memory");
                w.WriteNumber("arena_bytes", Memory.ArenaBytes);
                w.WriteNumber("peak_live_bytes", Memory.PeakLiveBytes);
                w.WriteStartArray("buffers");
                foreach (var b in Memory.Buffers)
                {
                    w.WriteStartArray();
                    foreach (var x in new[] { b.Slot, b.Bytes, b.Offset, b.From, b.To })
                        w.WriteNumberValue(x);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            if (HostCpu != null)
            {
                w.WriteStartObject("host_cpu");
                w.WriteString("name", HostCpu.Name);
                Json.Array(w, "features", HostCpu.Features);
                w.WriteEndObject();
            }
            if (Schedule != null)
            {
                w.WriteStartObject("schedule");
                w.WriteString("axis", Schedule.Axis);
                w.WriteString("kind", Schedule.Kind);
                w.WriteNumber("microbatches", Schedule.Microbatches);
                w.WriteNumber("chunks", Schedule.Chunks);
                w.WriteStartArray("order");
                foreach (var device in Schedule.Order)
                {
                    w.WriteStartArray();
                    foreach (var task in device)
                        w.WriteStringValue(task);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteStartObject("files");
            foreach (var (f, h) in Files.OrderBy(x => x.Key, StringComparer.Ordinal))
                w.WriteString(f, h);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>Reads a manifest; anything malformed is an <see cref="InvalidDataException"/> saying what.</summary>
    public static ProgramManifest FromJson(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            int format = r.GetProperty("format").GetInt32();
            if (format != FormatVersion)
                throw new InvalidDataException(
                    $"manifest format {format}, this runtime " + $"reads format {FormatVersion}"
                );
            var mesh = r.GetProperty("mesh");
            return new ProgramManifest
            {
                Name = r.GetProperty("name").GetString()!,
                Mesh = new DeviceMesh(
                    mesh.GetProperty("axes").EnumerateArray().Select(x => x.GetString()!).ToArray(),
                    mesh.GetProperty("sizes").EnumerateArray().Select(x => x.GetInt32()).ToArray()
                ),
                MicrobatchAxis = mesh.TryGetProperty("microbatch_axis", out var mb) ? mb.GetString() : null,
                Training = r.GetProperty("training").GetBoolean(),
                Inputs = ReadTensors(r.GetProperty("inputs")),
                Results = ReadTensors(r.GetProperty("results")),
                Params = r.GetProperty("params")
                    .EnumerateArray()
                    .Select(p =>
                    {
                        var (dtype, shape, layout) = ReadType(p);
                        return new ParamInfo(
                            p.GetProperty("path").GetString()!,
                            dtype,
                            shape,
                            layout,
                            p.GetProperty("init").GetString()!,
                            p.GetProperty("std").GetDouble()
                        );
                    })
                    .ToArray(),
                Kernels = r.GetProperty("kernels")
                    .EnumerateArray()
                    .Select(k => new KernelInfo(
                        k.GetProperty("name").GetString()!,
                        k.GetProperty("grid").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                        k.GetProperty("block").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                        k.TryGetProperty("barriers", out var sync) && sync.GetBoolean()
                    ))
                    .ToArray(),
                Files = r.GetProperty("files").EnumerateObject().ToDictionary(f => f.Name, f => f.Value.GetString()!),
                Memory = r.TryGetProperty("memory", out var mem)
                    ? new Execution.MemoryPlan(
                        mem.GetProperty("buffers")
                            .EnumerateArray()
                            .Select(b => new Execution.BufferPlacement(
                                b[0].GetInt32(),
                                b[1].GetInt64(),
                                b[2].GetInt64(),
                                b[3].GetInt32(),
                                b[4].GetInt32()
                            ))
                            .ToArray(),
                        mem.GetProperty("arena_bytes").GetInt64(),
                        mem.GetProperty("peak_live_bytes").GetInt64()
                    )
                    : null,
                HostCpu = r.TryGetProperty("host_cpu", out var cpu)
                    ? new HostCpu(
                        cpu.GetProperty("name").GetString()!,
                        cpu.GetProperty("features").EnumerateArray().Select(x => x.GetString()!).ToArray()
                    )
                    : null,
                Schedule = r.TryGetProperty("schedule", out var sch)
                    ? new ScheduleInfo(
                        sch.GetProperty("axis").GetString()!,
                        sch.GetProperty("kind").GetString()!,
                        sch.GetProperty("microbatches").GetInt32(),
                        sch.GetProperty("chunks").GetInt32(),
                        sch.GetProperty("order")
                            .EnumerateArray()
                            .Select(d => d.EnumerateArray().Select(t => t.GetString()!).ToArray())
                            .ToArray()
                    )
                    : null,
            };
        }
        catch (Exception e)
            when (e
                    is JsonException
                        or KeyNotFoundException
                        or InvalidOperationException
                        or FormatException
                        or ArgumentException
                        or IndexOutOfRangeException
            )
        {
            throw new InvalidDataException($"the manifest is damaged: {e.Message}", e);
        }
    }

    private static void Tensors(Utf8JsonWriter w, string name, IEnumerable<TensorInfo> ts)
    {
        w.WriteStartArray(name);
        foreach (var t in ts)
        {
            w.WriteStartObject();
            w.WriteString("name", t.Name);
            Type(w, t.DType, t.Shape, t.Layout);
            w.WriteNumber("int_bound", t.IntBound);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static TensorInfo[] ReadTensors(JsonElement e) =>
        e.EnumerateArray()
            .Select(t =>
            {
                var (dtype, shape, layout) = ReadType(t);
                return new TensorInfo(
                    t.GetProperty("name").GetString()!,
                    dtype,
                    shape,
                    layout,
                    t.GetProperty("int_bound").GetInt64()
                );
            })
            .ToArray();

    private static void Type(Utf8JsonWriter w, DType dtype, long[] shape, string[][] layout)
    {
        Json.Type(w, dtype, shape);
        w.WriteStartArray("layout");
        foreach (var axes in layout)
        {
            w.WriteStartArray();
            foreach (var a in axes)
                w.WriteStringValue(a);
            w.WriteEndArray();
        }
        w.WriteEndArray();
    }

    private static (DType, long[], string[][]) ReadType(JsonElement e)
    {
        var (dtype, shape) = Json.ReadType(e);
        return (
            dtype,
            shape,
            e.GetProperty("layout")
                .EnumerateArray()
                .Select(a => a.EnumerateArray().Select(x => x.GetString()!).ToArray())
                .ToArray()
        );
    }
}
