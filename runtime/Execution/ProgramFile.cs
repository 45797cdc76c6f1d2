using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Runtime.Execution;

/// <summary>
/// A <see cref="DeviceProgram"/> as JSON (<c>program.json</c> in a bundle): its instructions, slots, results and
/// pipeline schedule. Kernels are referred to by name and resolved when the program is read.
/// </summary>
public static class ProgramFile
{
    /// <summary>The program as JSON.</summary>
    public static string Write(DeviceProgram p)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("name", p.Name);
            w.WriteNumber("slots", p.NumSlots);
            Json.Array(w, "results", p.Results);
            if (p.PipelineAxis != null)
                w.WriteString("pipeline_axis", p.PipelineAxis);
            if (p.MicrobatchAxis != null)
                w.WriteString("microbatch_axis", p.MicrobatchAxis);
            w.WriteNumber("microbatches", p.Microbatches);
            if (p.Schedule != null)
            {
                w.WriteStartArray("schedule");
                foreach (var device in p.Schedule)
                {
                    w.WriteStartArray();
                    foreach (var t in device)
                        w.WriteStringValue(t.Label(2));
                    w.WriteEndArray();
                }
                w.WriteEndArray();
            }
            w.WriteStartArray("code");
            foreach (var ins in p.Instructions)
                WriteInstruction(w, ins);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void WriteInstruction(Utf8JsonWriter w, Instruction ins)
    {
        w.WriteStartObject();
        w.WriteString(
            "i",
            ins switch
            {
                InputInstr => "input",
                ParamInstr => "param",
                LaunchInstr => "launch",
                CollectiveInstr => "collective",
                SendInstr => "send",
                RecvInstr => "recv",
                UpdateInstr => "update",
                PipeSendInstr => "pipe_send",
                PipeRecvInstr => "pipe_recv",
                StartInstr => "start",
                WaitInstr => "wait",
                _ => throw new ArgumentException($"no file form for {ins.GetType().Name}"),
            }
        );
        w.WriteString("op", ins.Op);
        w.WriteString("at", ins.Where);
        if (ins.Stage >= 0)
            w.WriteNumber("stage", ins.Stage);
        if (ins.Backward)
            w.WriteBoolean("backward", true);
        if (ins.Weight)
            w.WriteBoolean("weight", true);
        if (ins.PerStep)
            w.WriteBoolean("per_step", true);
        if (ins.Setup)
            w.WriteBoolean("setup", true);
        switch (ins)
        {
            case InputInstr x:
                w.WriteNumber("index", x.Index);
                w.WriteNumber("out", x.Output);
                break;
            case ParamInstr x:
                w.WriteString("path", x.Path);
                Json.Type(w, x.DType, x.Shape);
                w.WriteNumber("out", x.Output);
                break;
            case LaunchInstr x:
                w.WriteString("kernel", x.Kernel.Name);
                Json.Array(w, "in", x.Inputs);
                Json.Type(w, x.DType, x.Shape);
                w.WriteNumber("out", x.Output);
                break;
            case CollectiveInstr x:
                w.WriteString("kind", x.Kind.ToString());
                Json.Array(w, "axes", x.Axes);
                w.WriteNumber("dim", x.Dim);
                w.WriteNumber("dim2", x.Dim2);
                w.WriteString("reduce", x.Reduce.ToString());
                w.WriteStartArray("pairs");
                foreach (var (s, t) in x.Pairs)
                {
                    w.WriteStartArray();
                    w.WriteNumberValue(s);
                    w.WriteNumberValue(t);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
                w.WriteNumber("in", x.Input);
                w.WriteNumber("out", x.Output);
                break;
            case StartInstr x:
                w.WriteString("kind", x.Kind.ToString());
                Json.Array(w, "axes", x.Axes);
                w.WriteNumber("dim", x.Dim);
                w.WriteString("reduce", x.Reduce.ToString());
                Json.Array(w, "in", x.Inputs);
                w.WriteNumber("handle", x.Handle);
                break;
            case WaitInstr x:
                w.WriteNumber("handle", x.Handle);
                Json.Array(w, "holds", x.Holds);
                Json.Array(w, "out", x.Outputs);
                break;
            case SendInstr x:
                w.WriteString("axis", x.Axis);
                w.WriteNumber("shift", x.Shift);
                w.WriteNumber("in", x.Input);
                break;
            case RecvInstr x:
                w.WriteString("axis", x.Axis);
                w.WriteNumber("shift", x.Shift);
                Json.Type(w, x.DType, x.Shape);
                w.WriteNumber("out", x.Output);
                break;
            case UpdateInstr x:
                w.WriteString("path", x.Path);
                w.WriteNumber("in", x.Input);
                break;
            case PipeSendInstr x:
                w.WriteNumber("from", x.From);
                w.WriteNumber("to", x.To);
                w.WriteNumber("channel", x.Channel);
                w.WriteNumber("in", x.Input);
                break;
            case PipeRecvInstr x:
                w.WriteNumber("from", x.From);
                w.WriteNumber("to", x.To);
                w.WriteNumber("channel", x.Channel);
                Json.Type(w, x.DType, x.Shape);
                w.WriteNumber("out", x.Output);
                break;
        }
        w.WriteEndObject();
    }

    /// <summary>Reads a program; <paramref name="kernel"/> gives the kernel of each name. Malformed input is an <see
    /// cref="InvalidDataException"/>.</summary>
    public static DeviceProgram Read(string json, Func<string, IKernel> kernel)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            var code = r.GetProperty("code").EnumerateArray().Select(e => ReadInstruction(e, kernel)).ToList();
            List<PipelineTask>[]? schedule = r.TryGetProperty("schedule", out var s)
                ? s.EnumerateArray()
                    .Select(d =>
                        d.EnumerateArray()
                            .Select(t =>
                                PipelineTask.Parse(t.GetString()!)
                                ?? throw new InvalidDataException($"'{t.GetString()}' is not a task")
                            )
                            .ToList()
                    )
                    .ToArray()
                : null;
            return new DeviceProgram(
                r.GetProperty("name").GetString()!,
                r.GetProperty("slots").GetInt32(),
                code,
                Json.ReadInts(r.GetProperty("results")),
                r.TryGetProperty("pipeline_axis", out var pa) ? pa.GetString() : null
            )
            {
                MicrobatchAxis = r.TryGetProperty("microbatch_axis", out var mb) ? mb.GetString() : null,
                Microbatches = r.GetProperty("microbatches").GetInt32(),
                Schedule = schedule,
            };
        }
        catch (Exception e)
            when (e
                    is JsonException
                        or KeyNotFoundException
                        or InvalidOperationException
                        or FormatException
                        or ArgumentException
            )
        {
            throw new InvalidDataException($"the program is damaged: {e.Message}", e);
        }
    }

    private static Instruction ReadInstruction(JsonElement e, Func<string, IKernel> kernel)
    {
        string op = e.GetProperty("op").GetString()!,
            at = e.GetProperty("at").GetString()!;
        int Int(string k) => e.GetProperty(k).GetInt32();
        (DType, long[]) T() => Json.ReadType(e);
        Instruction ins;
        switch (e.GetProperty("i").GetString())
        {
            case "input":
                ins = new InputInstr(op, at, Int("index"), Int("out"));
                break;
            case "param":
            {
                var (dt, sh) = T();
                ins = new ParamInstr(op, at, e.GetProperty("path").GetString()!, dt, sh, Int("out"));
                break;
            }
            case "launch":
            {
                var (dt, sh) = T();
                ins = new LaunchInstr(
                    op,
                    at,
                    kernel(e.GetProperty("kernel").GetString()!),
                    Json.ReadInts(e.GetProperty("in")),
                    dt,
                    sh,
                    Int("out")
                );
                break;
            }
            case "collective":
                ins = new CollectiveInstr(
                    op,
                    at,
                    Enum.Parse<CollectiveKind>(e.GetProperty("kind").GetString()!),
                    e.GetProperty("axes").EnumerateArray().Select(x => x.GetString()!).ToArray(),
                    Int("dim"),
                    Int("dim2"),
                    Enum.Parse<ReduceKind>(e.GetProperty("reduce").GetString()!),
                    e.GetProperty("pairs").EnumerateArray().Select(p => (p[0].GetInt32(), p[1].GetInt32())).ToArray(),
                    Int("in"),
                    Int("out")
                );
                break;
            case "start":
                ins = new StartInstr(
                    op,
                    at,
                    Enum.Parse<CollectiveKind>(e.GetProperty("kind").GetString()!),
                    e.GetProperty("axes").EnumerateArray().Select(x => x.GetString()!).ToArray(),
                    Int("dim"),
                    Enum.Parse<ReduceKind>(e.GetProperty("reduce").GetString()!),
                    Json.ReadInts(e.GetProperty("in")),
                    Int("handle")
                );
                break;
            case "wait":
                ins = new WaitInstr(
                    op,
                    at,
                    Int("handle"),
                    Json.ReadInts(e.GetProperty("holds")),
                    Json.ReadInts(e.GetProperty("out"))
                );
                break;
            case "send":
                ins = new SendInstr(op, at, e.GetProperty("axis").GetString()!, Int("shift"), Int("in"));
                break;
            case "recv":
            {
                var (dt, sh) = T();
                ins = new RecvInstr(op, at, e.GetProperty("axis").GetString()!, Int("shift"), dt, sh, Int("out"));
                break;
            }
            case "update":
                ins = new UpdateInstr(op, at, e.GetProperty("path").GetString()!, Int("in"));
                break;
            case "pipe_send":
                ins = new PipeSendInstr(op, at, Int("from"), Int("to"), Int("channel"), Int("in"));
                break;
            case "pipe_recv":
            {
                var (dt, sh) = T();
                ins = new PipeRecvInstr(op, at, Int("from"), Int("to"), Int("channel"), dt, sh, Int("out"));
                break;
            }
            case var other:
                throw new InvalidDataException($"unknown instruction '{other}'");
        }
        return ins with
        {
            Stage = e.TryGetProperty("stage", out var st) ? st.GetInt32() : -1,
            Backward = e.TryGetProperty("backward", out var b) && b.GetBoolean(),
            Weight = e.TryGetProperty("weight", out var wg) && wg.GetBoolean(),
            PerStep = e.TryGetProperty("per_step", out var ps) && ps.GetBoolean(),
            Setup = e.TryGetProperty("setup", out var su) && su.GetBoolean(),
        };
    }
}
