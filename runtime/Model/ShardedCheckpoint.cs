using System.Text.Json;
using System.Text.Json.Nodes;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Execution;
using ParallelCompiler.Runtime.IO;

namespace ParallelCompiler.Runtime.Model;

/// <summary>The processes that write one sharded checkpoint together: this one's rank, how many, and an exchange of
/// bytes among all of them (every process's bytes by rank) that is also their barrier.</summary>
public sealed record CheckpointWriters(int Rank, int Count, Func<byte[], byte[][]> AllGather);

/// <summary>
/// A sharded checkpoint: a folder of one <c>.safetensors</c> file per writing process and <c>index.json</c>, which
/// names the files and gives each parameter's type, shape and mesh layout and, per block, its file, offset and shape.
/// The blocks are the distinct blocks of each parameter's layout on the saving mesh, dealt out to the processes in
/// turn. Saving writes every file under a temporary name and renames it, then (after all processes have written)
/// the index, atomically, over the old one, and only then removes the old files: a crash at any point leaves a whole
/// checkpoint, the old or the new. Loading assembles each parameter from its blocks whatever mesh or process count
/// saved it, so the run that reads it reshards as it takes its devices' blocks; a missing, damaged or partial file is
/// an error naming it.
/// </summary>
public static class ShardedCheckpoint
{
    private const string Format = "mplc-sharded-checkpoint-1";

    /// <summary>Whether <paramref name="path"/> names a checkpoint folder rather than an array file.</summary>
    public static bool IsFolder(string path) =>
        Directory.Exists(path) || !ArrayFile.Extensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>Writes this process's share of the parameters into <paramref name="dir"/>, where <paramref
    /// name="holds"/>(path, offset) says whether this process holds a block and <paramref name="block"/>(path, offset,
    /// shape) gives it: each block is written by one of the processes that hold it, dealt out in turn. Every process of
    /// <paramref name="writers"/> calls it.</summary>
    public static void Write(
        string dir,
        ProgramManifest manifest,
        Func<string, long[], bool> holds,
        Func<string, long[], long[], NDArray> block,
        CheckpointWriters writers
    )
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(writers);
        Directory.CreateDirectory(dir);
        // One name for the whole checkpoint, rank 0's, so that its files never overwrite the previous one's.
        var ids = writers.AllGather(System.Text.Encoding.UTF8.GetBytes(Guid.NewGuid().ToString("N")[..12]));
        string id = System.Text.Encoding.UTF8.GetString(ids[0]);
        string File(int r) => $"rank-{r}-{id}.safetensors";
        // The distinct blocks of every parameter's layout, and which processes hold each.
        var all = new List<(ParamInfo P, long[] Offset, long[] Shape)>();
        foreach (var p in manifest.Params)
        {
            var seen = new HashSet<string>();
            for (int r = 0; r < manifest.Mesh.DeviceCount; r++)
            {
                var (offset, shape) = BlockLayout.Of(p.Shape, p.Layout, manifest.Mesh, r);
                if (seen.Add(string.Join(",", offset)))
                    all.Add((p, offset, shape));
            }
        }
        var held = writers.AllGather([.. all.Select(b => holds(b.P.Path, b.Offset) ? (byte)1 : (byte)0)]);
        var mine = new Dictionary<string, NDArray>();
        var entries = new JsonArray();
        int dealt = 0,
            at = 0;
        foreach (var p in manifest.Params)
        {
            var blocks = new JsonArray();
            for (; at < all.Count && all[at].P == p; at++)
            {
                var (_, offset, shape) = all[at];
                var holders = Enumerable.Range(0, writers.Count).Where(q => held[q][at] != 0).ToArray();
                if (holders.Length == 0)
                    throw new InvalidOperationException(
                        $"no process holds the block of '{p.Path}' at [{string.Join(", ", offset)}]: it cannot be saved"
                    );
                int owner = holders[dealt++ % holders.Length];
                string key = $"{p.Path}@{string.Join(",", offset)}";
                if (owner == writers.Rank)
                    mine[key] = block(p.Path, offset, shape);
                blocks.Add(
                    (JsonNode)
                        new JsonObject
                        {
                            ["file"] = owner,
                            ["key"] = key,
                            ["offset"] = new JsonArray([.. offset.Select(o => (JsonNode)o)]),
                            ["shape"] = new JsonArray([.. shape.Select(o => (JsonNode)o)]),
                        }
                );
            }
            entries.Add(
                (JsonNode)
                    new JsonObject
                    {
                        ["path"] = p.Path,
                        ["dtype"] = p.DType.Name(),
                        ["shape"] = new JsonArray([.. p.Shape.Select(o => (JsonNode)o)]),
                        ["layout"] = new JsonArray([
                            .. p.Layout.Select(d => (JsonNode)new JsonArray([.. d.Select(a => (JsonNode)a)])),
                        ]),
                        ["blocks"] = blocks,
                    }
            );
        }
        string path = Path.Combine(dir, File(writers.Rank));
        ArrayFile.Write(path + ".tmp.safetensors", mine);
        System.IO.File.Move(path + ".tmp.safetensors", path, overwrite: true);
        writers.AllGather([]); // every file is in place before the index names it
        if (writers.Rank != 0)
            return;
        var index = new JsonObject
        {
            ["format"] = Format,
            ["mesh"] = manifest.Mesh.ToString(),
            ["files"] = new JsonArray([.. Enumerable.Range(0, writers.Count).Select(r => (JsonNode)File(r))]),
            ["params"] = entries,
        };
        string indexPath = Path.Combine(dir, "index.json");
        System.IO.File.WriteAllText(
            indexPath + ".tmp",
            index.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
        );
        System.IO.File.Move(indexPath + ".tmp", indexPath, overwrite: true);
        var keep = Enumerable.Range(0, writers.Count).Select(File).ToHashSet();
        foreach (var old in Directory.EnumerateFiles(dir, "rank-*.safetensors"))
            if (!keep.Contains(Path.GetFileName(old)))
                System.IO.File.Delete(old);
    }

    /// <summary>The parameters in the checkpoint folder <paramref name="dir"/> that <paramref name="manifest"/>
    /// names, as global arrays; those it lacks are absent.</summary>
    public static Dictionary<string, NDArray> Read(string dir, ProgramManifest manifest) =>
        ReadBlocks(dir, manifest, null, out _, out _).ToDictionary(p => p.Key, p => p.Value[0].Block);

    /// <summary>
    /// The parameters in the checkpoint folder <paramref name="dir"/> that <paramref name="manifest"/> names, each as
    /// the blocks <paramref name="wanted"/> names (offset and shape on the loading mesh; null: one block, the whole
    /// array), each block an array of its own shape: only the parts of the saved blocks that overlap them are read,
    /// and only the files that hold such parts are opened. <paramref name="read"/>: the bytes of array data read;
    /// <paramref name="held"/>: those the checkpoint holds.
    /// </summary>
    public static Dictionary<string, List<(long[] Offset, NDArray Block)>> ReadBlocks(
        string dir,
        ProgramManifest manifest,
        IReadOnlyDictionary<string, List<(long[] Offset, long[] Shape)>>? wanted,
        out long read,
        out long held
    )
    {
        string indexPath = Path.Combine(dir, "index.json");
        if (!System.IO.File.Exists(indexPath))
            throw new RunInputException(
                $"{indexPath}: no such file: {dir} is not a sharded checkpoint (or its index was lost)"
            );
        JsonNode index;
        try
        {
            index = JsonNode.Parse(System.IO.File.ReadAllText(indexPath)) ?? throw new JsonException("empty");
            if ((string?)index["format"] != Format)
                throw new JsonException($"format is not {Format}");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new RunInputException($"{indexPath}: damaged checkpoint index: {e.Message}");
        }
        var files = index["files"]!.AsArray().Select(f => Path.Combine(dir, (string)f!)).ToArray();
        var opened = new Dictionary<int, ArrayReader>();
        ArrayReader FileOf(int i)
        {
            if (opened.TryGetValue(i, out var f))
                return f;
            if (!System.IO.File.Exists(files[i]))
                throw new RunInputException($"{files[i]}: missing: the checkpoint in {dir} is partial");
            try
            {
                return opened[i] = ArrayReader.Open(files[i]);
            }
            catch (ArrayFileException e)
            {
                throw new RunInputException($"{files[i]}: damaged checkpoint file: {e.Message}");
            }
        }
        var models = manifest.Params.ToDictionary(p => p.Path);
        var result = new Dictionary<string, List<(long[] Offset, NDArray Block)>>();
        held = 0;
        try
        {
            foreach (var entry in index["params"]!.AsArray())
            {
                string path = (string)entry!["path"]!;
                if (!models.TryGetValue(path, out var p))
                    throw new RunInputException(
                        $"{indexPath}: unknown parameter '{path}' (the model has {models.Count} parameters; 'mplc "
                            + "params' lists them)"
                    );
                var shape = entry["shape"]!.AsArray().Select(d => (long)d!).ToArray();
                if ((string?)entry["dtype"] != p.DType.Name() || !shape.SequenceEqual(p.Shape))
                    throw new RunInputException(
                        $"{indexPath}: parameter '{path}' is {entry["dtype"]}[{string.Join(", ", shape)}], the "
                            + "model's "
                            + ModelSession.SourceType(p.DType, p.Shape)
                    );
                var needed = wanted?.GetValueOrDefault(path) ?? [(new long[shape.Length], (long[])shape.Clone())];
                var targets = needed.Select(n => NDArray.Zeros(p.DType, n.Shape)).ToArray();
                long covered = 0;
                foreach (var b in entry["blocks"]!.AsArray())
                {
                    int file = (int)b!["file"]!;
                    string key = (string)b["key"]!;
                    var offset = b["offset"]!.AsArray().Select(d => (long)d!).ToArray();
                    var bshape = b["shape"]!.AsArray().Select(d => (long)d!).ToArray();
                    covered += NDArray.ShapeSize(bshape);
                    for (int w = 0; w < needed.Count; w++)
                    {
                        var (at, extent) = needed[w];
                        // The part of the saved block inside the wanted one.
                        var lo = new long[shape.Length];
                        var size = new long[shape.Length];
                        bool empty = false;
                        for (int d = 0; d < shape.Length; d++)
                        {
                            lo[d] = Math.Max(offset[d], at[d]);
                            size[d] = Math.Min(offset[d] + bshape[d], at[d] + extent[d]) - lo[d];
                            empty |= size[d] <= 0;
                        }
                        if (empty)
                            continue;
                        var reader = FileOf(file);
                        if (!reader.Keys.Contains(key) || !reader.Info(key).Shape.SequenceEqual(bshape))
                            throw new RunInputException(
                                $"{files[file]}: damaged checkpoint file: block '{key}' of "
                                    + $"[{string.Join(", ", bshape)}] is missing or of another shape"
                            );
                        try
                        {
                            reader.ReadBox(
                                key,
                                [.. lo.Select((l, d) => l - offset[d])],
                                size,
                                targets[w],
                                [.. lo.Select((l, d) => l - at[d])]
                            );
                        }
                        catch (ArrayFileException e)
                        {
                            throw new RunInputException($"{files[file]}: damaged checkpoint file: {e.Message}");
                        }
                    }
                }
                if (covered != NDArray.ShapeSize(p.Shape))
                    throw new RunInputException(
                        $"{indexPath}: the blocks of '{path}' do not cover it: partial checkpoint"
                    );
                held += NDArray.ShapeSize(p.Shape) * p.DType.Size();
                result[path] = [.. needed.Select((n, w) => (n.Offset, targets[w]))];
            }
            read = opened.Values.Sum(r => r.BytesRead);
            return result;
        }
        finally
        {
            foreach (var r in opened.Values)
                r.Dispose();
        }
    }
}
