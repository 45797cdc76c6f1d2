using System.IO.Compression;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.IO;

/// <summary>Reads and writes numpy's .npz format: a zip archive of .npy files, one per named array.</summary>
public static class Npz
{
    /// <summary>
    /// Reads every array in the .npz file at <paramref name="path"/>, keyed by entry name without ".npy", in the
    /// archive's order. Entries may be stored or deflated, with or without zip64 records (np.savez writes zip64).
    /// </summary>
    public static Dictionary<string, NpyArray> Read(string path)
    {
        using var fs = ArrayFile.OpenRead(path);
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(fs, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (Exception e) when (ArrayFileException.IsInputProblem(e))
        {
            throw new ArrayFileException($"{path}: not a valid .npz file: expected a zip archive, but {e.Message}", e);
        }
        using (zip)
        {
            var result = new Dictionary<string, NpyArray>();
            IReadOnlyCollection<ZipArchiveEntry> entries;
            try
            {
                entries = zip.Entries;
            }
            catch (Exception e) when (ArrayFileException.IsInputProblem(e))
            {
                throw ArrayFileException.Wrap(path, "reading the zip directory", e);
            }
            foreach (var entry in entries)
            {
                string name = entry.FullName;
                if (name.EndsWith('/'))
                    continue; // a directory record holds no data
                if (!name.EndsWith(".npy", StringComparison.Ordinal))
                    throw new ArrayFileException(
                        $"{path}: entry '{name}' is not an array: expected only '<key>.npy' "
                            + $"entries in an .npz file"
                    );
                string key = name[..^4];
                string what = $"{path}: key '{key}'";
                if (result.ContainsKey(key))
                    throw new ArrayFileException($"{what}: the key occurs more than once in " + $"the archive");
                try
                {
                    using var s = entry.Open();
                    result[key] = Npy.Read(s, what, entry.Length);
                }
                catch (Exception e) when (ArrayFileException.IsInputProblem(e))
                {
                    throw ArrayFileException.Wrap(what, "decompressing the entry", e);
                }
            }
            return result;
        }
    }

    /// <summary>
    /// Writes <paramref name="arrays"/> to <paramref name="path"/> as "key.npy" entries in enumeration order,
    /// deflated when <paramref name="compress"/> (like np.savez_compressed), else stored (like np.savez).
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, NDArray> arrays, bool compress = false)
    {
        var level = compress ? CompressionLevel.Optimal : CompressionLevel.NoCompression;
        ArrayFile.WriteAtomically(
            path,
            fs =>
            {
                using var zip = new ZipArchive(fs, ZipArchiveMode.Create, leaveOpen: true);
                foreach (var (key, a) in arrays)
                {
                    var entry = zip.CreateEntry(key + ".npy", level);
                    using var s = entry.Open();
                    Npy.Write(s, a);
                }
            }
        );
    }
}
