using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.IO;

/// <summary>
/// <see cref="ArrayReader"/> reads a box of an array and nothing more: numpy writes the files and slices the boxes
/// (the oracle), and the reader's byte count is the box's elements times the stored element size.
/// </summary>
public sealed class ArrayReaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mplc-reader").FullName;

    // argv: the folder, then per case: name, dtype, shape (a,b,c), box offset, box shape, fortran (0/1). Writes
    // NAME.npy and prints, per case, the box's values (as float64) and the stored element size.
    private const string Script = """
        import json, sys
        import numpy as np
        d = sys.argv[1]; out = {}
        args = sys.argv[2:]
        for i in range(0, len(args), 6):
            name, dtype, shape, off, box, fortran = args[i:i+6]
            shape = [int(s) for s in shape.split(',')]
            off = [int(s) for s in off.split(',')]; box = [int(s) for s in box.split(',')]
            a = (np.arange(np.prod(shape)) * 7 % 101 - 50).reshape(shape).astype(dtype)
            if fortran == '1':
                a = np.asfortranarray(a)
            np.save(f'{d}/{name}.npy', a)
            s = a[tuple(slice(o, o + b) for o, b in zip(off, box))]
            out[name] = {'values': s.astype(np.float64).ravel().tolist(), 'size': a.dtype.itemsize}
        print(json.dumps(out))
        """;

    /// <summary>Boxes of .npy arrays of several stored types and byte orders: the values numpy slices, and only
    /// the box's bytes read (a Fortran-ordered array is read whole).</summary>
    [Fact]
    public void ABoxOfANpyArrayReadsOnlyItsBytes()
    {
        (string Name, string Dtype, string Shape, string Offset, string Box, bool Fortran)[] cases =
        [
            ("f32", "<f4", "4,6,8", "2,0,0", "2,6,8", false),
            ("f64be", ">f8", "4,6,8", "1,3,2", "2,3,4", false),
            ("i64", "<i8", "6,10", "0,5", "6,5", false),
            ("f16", "<f2", "8", "4", "4", false),
            ("fortran", "<f4", "4,6", "2,3", "2,3", true),
        ];
        var expected = JsonDocument
            .Parse(
                Python.RunOk(
                    Script,
                    [
                        _dir,
                        .. cases.SelectMany(c =>
                            new[] { c.Name, c.Dtype, c.Shape, c.Offset, c.Box, c.Fortran ? "1" : "0" }
                        ),
                    ]
                )
            )
            .RootElement;
        foreach (var c in cases)
        {
            long[] L(string s) => [.. s.Split(',').Select(long.Parse)];
            var (offset, box) = (L(c.Offset), L(c.Box));
            using var r = ArrayReader.Open(Path.Combine(_dir, $"{c.Name}.npy"));
            Assert.Equal(0, r.BytesRead);
            var target = NDArray.Zeros(r.Target(c.Name), box);
            r.ReadBox(c.Name, offset, box, target, new long[box.Length]);
            var want = expected.GetProperty(c.Name);
            var values = want.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(values, Enumerable.Range(0, (int)target.Size).Select(i => target.GetDouble(i)));
            long size = want.GetProperty("size").GetInt64();
            Assert.Equal((c.Fortran ? NDArray.ShapeSize(L(c.Shape)) : target.Size) * size, r.BytesRead);
        }
    }

    /// <summary>Blocks of safetensors arrays placed into a global array: only their bytes are read, the rest stays
    /// zero, and the whole read of the same file gives the same values in the blocks.</summary>
    [Fact]
    public void BlocksOfSafetensorsArraysReadOnlyTheirBytes()
    {
        string path = Path.Combine(_dir, "p.safetensors");
        var w = NDArray.FromFloats([6, 8], [.. Enumerable.Range(0, 48).Select(i => (float)i)]);
        var h = NDArray.FromFloats(DType.BF16, [4, 4], [.. Enumerable.Range(0, 16).Select(i => i * 0.5f)]);
        Safetensors.Write(path, new Dictionary<string, NDArray> { ["w"] = w, ["h"] = h });
        using var r = ArrayReader.Open(path);
        Assert.Equal(["w", "h"], r.Keys);
        var part = r.ReadBlocks("w", [([0, 4], [3, 4]), ([3, 0], [3, 4])]).Array;
        Assert.Equal(12 * 4 * 2, r.BytesRead);
        for (int i = 0; i < 6; i++)
        for (int j = 0; j < 8; j++)
            Assert.Equal((i < 3) == (j >= 4) ? i * 8 + j : 0, part.F![i * 8 + j]);
        var hb = r.ReadBlocks("h", [([2, 0], [2, 4])]).Array;
        Assert.Equal(DType.BF16, hb.DType);
        Assert.Equal(12 * 4 * 2 + 8 * 2, r.BytesRead);
        Assert.Equal(h.F![8..], hb.F![8..]);
        Assert.All(hb.F![..8], v => Assert.Equal(0f, v));
        Assert.Equal(48 * 4 + 16 * 2, r.DataBytes(r.Keys));
    }

    /// <summary>A box outside the array and a key the file lacks are errors naming the file.</summary>
    [Fact]
    public void ABadBoxOrKeyIsAnError()
    {
        string path = Path.Combine(_dir, "a.safetensors");
        Safetensors.Write(path, new Dictionary<string, NDArray> { ["a"] = NDArray.Zeros(DType.F32, [4, 4]) });
        using var r = ArrayReader.Open(path);
        var t = NDArray.Zeros(DType.F32, [4, 4]);
        var e = Assert.Throws<ArgumentException>(() => r.ReadBox("a", [2, 0], [4, 4], t, [0, 0]));
        Assert.Contains("box outside the array on dimension 0", e.Message);
        var k = Assert.Throws<ArrayFileException>(() => r.Info("b"));
        Assert.Contains($"{path}: no array 'b'", k.Message);
    }

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(_dir, true);
}
