using System.IO.Compression;
using System.Text;
using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.IO;

/// <summary>The .npy, .npz and safetensors readers and writers, checked against numpy in both directions.</summary>
public sealed class NpyTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("pc-io-").FullName;

    /// <summary>Removes the test's temporary directory.</summary>
    public void Dispose() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    // Builds the named arrays, saves them as asked, and prints each one's dtype, shape and values (floats as the
    // bits of their float32 value, integers as int64) for the C# side to compare against.
    private const string MakeArrays = """
        import sys, json, numpy as np
        rng = np.random.default_rng(7)
        def make(c):
            if c in ('float32', 'v2', 'v3'):
                a = rng.standard_normal((3, 4)).astype(np.float32)
                a[0, 0] = np.nan; a[0, 1] = -np.inf; a[0, 2] = -0.0
                return a
            if c == 'float64':
                a = rng.standard_normal((2, 3, 5)) * 1e3
                a[0, 0, 0] = 1e300; a[1, 2, 4] = 1e-50; a[1, 0, 0] = 1 / 3
                return a
            if c == 'int32': return rng.integers(-2**31, 2**31, size=(7,), dtype=np.int32)
            if c == 'int64': return np.array([[-2**31, 2**31 - 1, 0], [5, -7, 123456789]], dtype=np.int64)
            if c == 'float16':
                a = (rng.standard_normal((4, 4)) * 100).astype(np.float16); a[0, 0] = np.inf; a[1, 1] = 6e-8; return a
            if c == 'scalar': return np.array(3.25, dtype=np.float32)
            if c == 'empty': return np.zeros((0, 3), np.float32)
            if c == 'fortran': return np.asfortranarray(rng.standard_normal((2, 3, 4)).astype(np.float32))
            if c == 'fortran_int64': return np.asfortranarray(np.arange(30, dtype=np.int64).reshape(5, 6) - 9)
            if c == 'big_f4': return rng.standard_normal((3, 5)).astype('>f4')
            if c == 'big_i8': return np.array([-3, 2**31 - 1, 17], dtype='>i8')
            if c == 'bool': return np.array([[True, False], [False, True]])
            if c == 'uint8': return np.arange(250, 256, dtype=np.uint8)
            if c == 'int16': return np.array([-32768, -1, 32767], dtype=np.int16)
            if c == 'int64_big': return np.array([[1, 2], [3, 3000000000]], dtype=np.int64)
            if c == 'complex64': return np.ones(3, np.complex64)
            if c == 'zeros': return np.zeros((128, 128), np.float32)
            raise SystemExit('unknown case ' + c)
        def describe(a):
            c = np.array(a, order='C')
            d = {'dtype': a.dtype.name, 'shape': list(a.shape)}
            if a.dtype.kind == 'f': d['bits'] = c.astype(np.float32).reshape(-1).view(np.uint32).tolist()
            elif a.dtype.kind != 'c': d['ints'] = c.astype(np.int64).reshape(-1).tolist()
            return d
        mode, path, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
        arrays = {c: make(c) for c in cases}
        if mode == 'npy':
            (c,) = cases
            if c in ('v2', 'v3'):
                with open(path, 'wb') as f: np.lib.format.write_array(f, arrays[c], version=(int(c[1]), 0))
            else: np.save(path, arrays[c])
        elif mode == 'savez': np.savez(path, **arrays)
        elif mode == 'savez_compressed': np.savez_compressed(path, **arrays)
        elif mode == 'npz_truncated_entry':
            import io, zipfile
            buf = io.BytesIO(); np.save(buf, arrays['zeros']); b = buf.getvalue()
            with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
                z.writestr('mlp.w1.npy', b[:len(b) - 65536 + 1200])
        elif mode == 'safetensors':
            import struct
            tensors = {'f32': np.float32, 'f64': np.float64, 'f16': np.float16, 'i32': np.int32, 'i64': np.int64}
            spell = {'f32': 'F32', 'f64': 'F64', 'f16': 'F16', 'i32': 'I32', 'i64': 'I64', 'bf16': 'BF16'}
            raw = {k: (rng.standard_normal((2, 3)) * 50).astype(t) for k, t in tensors.items()}
            raw['bf16'] = (rng.standard_normal(5).astype(np.float32).view(np.uint32) >> 16).astype('<u2')
            header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
            for k, a in raw.items():
                blob = a.astype(a.dtype.newbyteorder('<')).tobytes(); blobs.append(blob)
                header[k] = {'dtype': spell[k], 'shape': list(a.shape), 'data_offsets': [off, off + len(blob)]}
                off += len(blob)
            h = json.dumps(header).encode()
            with open(path, 'wb') as f: f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
            arrays = dict(raw)
            arrays['bf16'] = (raw['bf16'].astype(np.uint32) << 16).view(np.float32)
            print(json.dumps({k: dict(describe(a), dtype=spell[k]) for k, a in arrays.items()})); sys.exit(0)
        print(json.dumps({c: describe(a) for c, a in arrays.items()}))
        """;

    private JsonElement Make(string mode, string path, params string[] cases) =>
        JsonDocument.Parse(Python.RunOk(MakeArrays, [mode, path, .. cases])).RootElement;

    private static void AssertMatches(JsonElement e, NpyArray got)
    {
        string dtype = e.GetProperty("dtype").GetString()!;
        Assert.Equal(dtype, got.SourceDtype);
        Assert.Equal(e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()), got.Array.Shape);
        DType want = dtype switch
        {
            "float16" or "F16" => DType.F16,
            "BF16" => DType.BF16,
            "float32" or "float64" or "F32" or "F64" => DType.F32,
            _ => DType.I32,
        };
        Assert.Equal(want, got.Array.DType);
        if (e.TryGetProperty("bits", out var bits))
            Assert.Equal(
                bits.EnumerateArray().Select(x => x.GetUInt32()),
                got.Array.F!.Select(BitConverter.SingleToUInt32Bits)
            );
        else
            Assert.Equal(
                e.GetProperty("ints").EnumerateArray().Select(x => x.GetInt64()),
                got.Array.I!.Select(x => (long)x)
            );
    }

    [Theory]
    [InlineData("float32")]
    [InlineData("float64")]
    [InlineData("int32")]
    [InlineData("int64")]
    [InlineData("float16")]
    [InlineData("scalar")]
    [InlineData("empty")]
    [InlineData("fortran")]
    [InlineData("fortran_int64")]
    [InlineData("big_f4")]
    [InlineData("big_i8")]
    [InlineData("bool")]
    [InlineData("uint8")]
    [InlineData("int16")]
    [InlineData("v2")]
    [InlineData("v3")]
    public void ReadsNpyWrittenByNumpy(string kase)
    {
        string path = P(kase + ".npy");
        var expected = Make("npy", path, kase);
        if (kase.StartsWith("fortran"))
            Assert.Contains("'fortran_order': True", Encoding.Latin1.GetString(File.ReadAllBytes(path)));
        AssertMatches(expected.GetProperty(kase), Npy.Read(path));
        // ArrayFile keys a single .npy by its file name.
        AssertMatches(expected.GetProperty(kase), Assert.Single(ArrayFile.Read(path), kv => kv.Key == kase).Value);
    }

    [Theory]
    [InlineData("savez")]
    [InlineData("savez_compressed")]
    public void ReadsNpzWrittenByNumpy(string mode)
    {
        string path = P(mode + ".npz");
        string[] cases = ["float32", "int64", "float16", "scalar", "empty", "fortran", "big_f4", "bool"];
        var expected = Make(mode, path, cases);
        var got = Npz.Read(path);
        Assert.Equal(cases, got.Keys);
        foreach (string c in cases)
            AssertMatches(expected.GetProperty(c), got[c]);
    }

    [Fact]
    public void ReadsSafetensorsWrittenByHand()
    {
        string path = P("model.safetensors");
        var expected = Make("safetensors", path);
        var got = Safetensors.Read(path, out var metadata);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, metadata);
        Assert.Equal(expected.EnumerateObject().Select(p => p.Name), got.Keys);
        foreach (var p in expected.EnumerateObject())
            AssertMatches(p.Value, got[p.Name]);
    }

    private static Dictionary<string, NDArray> Samples() =>
        new()
        {
            ["w"] = NDArray.FromFloats([2, 3], [1.5f, -0f, float.NaN, float.PositiveInfinity, 1e-40f, 3.14159f]),
            ["h"] = NDArray.FromFloats(DType.F16, [2, 2], [1f, -2.5f, 65504f, (float)(Half)0.1f]),
            ["b"] = NDArray.FromFloats(DType.BF16, [3], [1f, DType.BF16.Round(-3.14159f), DType.BF16.Round(1e20f)]),
            ["i"] = NDArray.FromInts([5], [int.MinValue, -1, 0, 1, int.MaxValue]),
            ["s"] = NDArray.Scalar(42.5f),
            ["e"] = NDArray.FromFloats([0, 3], []),
            ["long"] = NDArray.FromFloats([1000], Enumerable.Range(0, 1000).Select(x => x * 0.25f).ToArray()),
            ["cube"] = NDArray.FromInts([3, 4, 5], Enumerable.Range(-30, 60).ToArray()),
        };

    // The values as the file must hold them: float bits in the stored width, or integers.
    private static string Expectations(Dictionary<string, NDArray> arrays, bool safetensors)
    {
        var sb = new StringBuilder("{");
        foreach (var (key, a) in arrays)
        {
            (string npy, string st) = a.DType switch
            {
                DType.F16 => ("<f2", "F16"),
                DType.BF16 => ("<f4", "BF16"),
                DType.I32 => ("<i4", "I32"),
                _ => ("<f4", "F32"),
            };
            IEnumerable<long> values = a.DType switch
            {
                DType.I32 => a.I!.Select(x => (long)x),
                DType.F16 => a.F!.Select(x => (long)BitConverter.HalfToUInt16Bits((Half)x)),
                DType.BF16 when safetensors => a.F!.Select(x => (long)(BitConverter.SingleToUInt32Bits(x) >> 16)),
                _ => a.F!.Select(x => (long)BitConverter.SingleToUInt32Bits(x)),
            };
            sb.Append(
                    $"\"{key}\": "
                        + $"{{\"descr\": \"{npy}\", \"dtype\": \"{st}\", \"shape\": [{string.Join(", ", a.Shape)}], "
                )
                .Append($"\"{(a.DType == DType.I32 ? "ints" : "bits")}\": [{string.Join(", ", values)}]}}, ");
        }
        return sb.Remove(sb.Length - 2, 2).Append('}').ToString();
    }

    // Loads what C# wrote with numpy, compares dtype, shape and value bits, and (for npy and npz) checks that the
    // bytes are exactly what np.save produces for the same array.
    private const string CheckNumpy = """
        import sys, json, io, zipfile, numpy as np
        mode, path, exp = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
        def check(key, a, raw):
            e = exp[key]
            assert a.dtype.str == e['descr'], (key, a.dtype.str, e['descr'])
            assert list(a.shape) == e['shape'], (key, a.shape, e['shape'])
            if 'bits' in e:
                got = a.reshape(-1).view(np.uint16 if a.dtype.itemsize == 2 else np.uint32).tolist()
                assert got == e['bits'], (key, got, e['bits'])
            else: assert a.reshape(-1).tolist() == e['ints'], (key, a)
            buf = io.BytesIO(); np.save(buf, a)
            assert buf.getvalue() == raw, (key, 'differs from np.save', raw[:128], buf.getvalue()[:128])
        if mode == 'npy':
            for key in exp:
                f = f'{path}/{key}.npy'
                check(key, np.load(f), open(f, 'rb').read())
        else:
            z, zf = np.load(path), zipfile.ZipFile(path)
            assert z.files == list(exp), (z.files, list(exp))
            assert zf.testzip() is None
            kinds = {i.compress_type for i in zf.infolist()}
            assert kinds == {zipfile.ZIP_DEFLATED if mode == 'compressed' else zipfile.ZIP_STORED}, kinds
            for key in exp: check(key, z[key], zf.read(key + '.npy'))
        print('ok', len(exp))
        """;

    [Fact]
    public void NumpyReadsNpyWrittenByCSharp()
    {
        var arrays = Samples();
        foreach (var (key, a) in arrays)
            Npy.Write(P(key + ".npy"), a);
        File.WriteAllText(P("expected.json"), Expectations(arrays, false));
        Assert.Equal($"ok {arrays.Count}", Python.RunOk(CheckNumpy, "npy", dir, P("expected.json")).Trim());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NumpyReadsNpzWrittenByCSharp(bool compress)
    {
        var arrays = Samples();
        Npz.Write(P("out.npz"), arrays, compress);
        File.WriteAllText(P("expected.json"), Expectations(arrays, false));
        Assert.Equal(
            $"ok {arrays.Count}",
            Python.RunOk(CheckNumpy, compress ? "compressed" : "stored", P("out.npz"), P("expected.json")).Trim()
        );
    }

    private const string CheckSafetensors = """
        import sys, json, struct, numpy as np
        data, exp = open(sys.argv[1], 'rb').read(), json.load(open(sys.argv[2]))
        (n,) = struct.unpack('<Q', data[:8])
        assert n % 8 == 0, n
        header = json.loads(data[8:8 + n])
        assert header.pop('__metadata__') == {'producer': 'tests'}
        assert list(header) == list(exp), (list(header), list(exp))
        buf, end = data[8 + n:], 0
        for key, e in exp.items():
            h = header[key]
            assert h['dtype'] == e['dtype'] and h['shape'] == e['shape'], (key, h, e)
            begin, stop = h['data_offsets']
            assert begin == end, (key, begin, end)
            end = stop
            size = {'F32': 4, 'F16': 2, 'BF16': 2, 'I32': 4}[h['dtype']]
            assert stop - begin == size * int(np.prod(e['shape'])), (key, h)
            got = np.frombuffer(buf[begin:stop], {'F32': '<u4', 'F16': '<u2', 'BF16': '<u2', 'I32': '<i4'}[h['dtype']])
            assert got.tolist() == e['ints' if h['dtype'] == 'I32' else 'bits'], (key, got)
        assert end == len(buf), (end, len(buf))
        print('ok', len(exp))
        """;

    [Fact]
    public void PythonReadsSafetensorsWrittenByCSharp()
    {
        var arrays = Samples();
        Safetensors.Write(P("out.safetensors"), arrays, new Dictionary<string, string> { ["producer"] = "tests" });
        File.WriteAllText(P("expected.json"), Expectations(arrays, true));
        Assert.Equal(
            $"ok {arrays.Count}",
            Python.RunOk(CheckSafetensors, P("out.safetensors"), P("expected.json")).Trim()
        );
    }

    [Theory]
    [InlineData("all.npz")]
    [InlineData("all.safetensors")]
    public void RoundTripsThroughArrayFile(string name)
    {
        var arrays = Samples();
        ArrayFile.Write(P(name), arrays);
        var back = ArrayFile.Read(P(name));
        Assert.Equal(arrays.Keys, back.Keys);
        foreach (var (key, a) in arrays)
        {
            var b = back[key].Array;
            // numpy has no bfloat16, so .npz keeps bf16 values as float32.
            Assert.Equal(a.DType == DType.BF16 && name.EndsWith(".npz") ? DType.F32 : a.DType, b.DType);
            Assert.Equal(a.Shape, b.Shape);
            if (a.I != null)
                Assert.Equal(a.I, b.I);
            else
                Assert.Equal(
                    a.F!.Select(BitConverter.SingleToUInt32Bits),
                    b.F!.Select(BitConverter.SingleToUInt32Bits)
                );
        }
    }

    [Fact]
    public void ParsesHeadersWithOddSpacingOrderAndCommas()
    {
        byte[] data = [1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF];
        File.WriteAllBytes(
            P("odd.npy"),
            NpyBytes("{ 'shape':(2L ,) ,\"fortran_order\" : False,'descr':'<i4',}  \n", data)
        );
        var got = Npy.Read(P("odd.npy"));
        Assert.Equal([1, -2], got.Array.I!);
        File.WriteAllBytes(
            P("v2.npy"),
            NpyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': ()}", [0x40, 0x49, 0x0F, 0xDB], major: 2)
        );
        Assert.Equal(3.1415927f, Npy.Read(P("v2.npy")).Array.F![0]);
    }

    private static byte[] NpyBytes(string header, byte[] data, int major = 1)
    {
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0]);
        byte[] h = Encoding.ASCII.GetBytes(header);
        ms.Write(major == 1 ? BitConverter.GetBytes((ushort)h.Length) : BitConverter.GetBytes((uint)h.Length));
        ms.Write(h);
        ms.Write(data);
        return ms.ToArray();
    }

    private static string Fails(Action read) => Assert.Throws<ArrayFileException>(read).Message;

    [Fact]
    public void TruncatedNpyNamesFileAndSizes()
    {
        string path = P("weights.npy");
        Npy.Write(path, NDArray.Zeros(DType.F32, [128, 128]));
        byte[] all = File.ReadAllBytes(path);
        int header = all.Length - 65536;
        File.WriteAllBytes(path, all[..(header + 1200)]);
        Assert.Equal($"{path}: truncated data: expected 65536 bytes, found 1200", Fails(() => Npy.Read(path)));

        // The same through a stream that cannot tell its length: the shortfall is found while reading.
        var packed = new MemoryStream();
        using (var z = new DeflateStream(packed, CompressionLevel.Fastest, leaveOpen: true))
            z.Write(all, 0, header + 1200);
        packed.Position = 0;
        using var unpacked = new DeflateStream(packed, CompressionMode.Decompress);
        Assert.Equal(
            "stream: truncated data: expected 65536 bytes, found 1200",
            Fails(() => Npy.Read(unpacked, "stream"))
        );

        File.WriteAllBytes(path, all[..7]);
        Assert.Equal($"{path}: truncated header: expected at least 10 bytes, found 7", Fails(() => Npy.Read(path)));
    }

    [Fact]
    public void GarbageAndMissingFilesAreReportedByName()
    {
        File.WriteAllText(P("garbage.npy"), "this is not an array");
        string m = Fails(() => ArrayFile.Read(P("garbage.npy")));
        Assert.StartsWith(
            $"{P("garbage.npy")}: not a .npy file: expected the magic bytes \\x93NUMPY, found 'this is ",
            m
        );
        File.WriteAllText(P("garbage.npz"), "this is not a zip either");
        Assert.StartsWith(
            $"{P("garbage.npz")}: not a valid .npz file: expected a zip archive",
            Fails(() => ArrayFile.Read(P("garbage.npz")))
        );
        File.WriteAllBytes(P("garbage.safetensors"), [1, 2, 3]);
        Assert.Equal(
            $"{P("garbage.safetensors")}: truncated header: expected at least 8 bytes (the header size), " + $"found 3",
            Fails(() => ArrayFile.Read(P("garbage.safetensors")))
        );
        foreach (string name in (string[])["missing.npy", "missing.npz", "missing.safetensors"])
            Assert.Equal($"{P(name)}: no such file", Fails(() => ArrayFile.Read(P(name))));
        Assert.Equal(
            $"{P("w.txt")}: unknown array file extension '.txt': expected one of .npy, .npz, .safetensors",
            Fails(() => ArrayFile.Read(P("w.txt")))
        );
        Assert.Contains(
            "missing key 'shape'",
            Fails(() => Npy.Read(new MemoryStream(NpyBytes("{'descr': '<f4', 'fortran_order': False}\n", [])), "hdr"))
        );
    }

    [Fact]
    public void NpzWithTruncatedEntryNamesKey()
    {
        string path = P("weights.npz");
        Make("npz_truncated_entry", path, "zeros");
        Assert.Equal(
            $"{path}: key 'mlp.w1': truncated data: expected 65536 bytes, found 1200",
            Fails(() => Npz.Read(path))
        );

        // A cut archive loses its central directory: reported as not a zip, naming the file.
        Npz.Write(P("cut.npz"), Samples(), compress: true);
        byte[] all = File.ReadAllBytes(P("cut.npz"));
        File.WriteAllBytes(P("cut.npz"), all[..(all.Length / 2)]);
        Assert.StartsWith($"{P("cut.npz")}: not a valid .npz file", Fails(() => Npz.Read(P("cut.npz"))));
    }

    [Fact]
    public void ValuesAndDtypesThatDoNotFitAreRejected()
    {
        string path = P("big.npy");
        Make("npy", path, "int64_big");
        Assert.Equal(
            $"{path}: int64 value 3000000000 at index [1, 1] does not fit in int32 (expected values in "
                + $"[-2147483648, 2147483647])",
            Fails(() => Npy.Read(path))
        );
        string complex = P("c.npy");
        Make("npy", complex, "complex64");
        Assert.StartsWith(
            $"{complex}: unsupported dtype '<c8' (complex64): expected one of",
            Fails(() => Npy.Read(complex))
        );
        Assert.StartsWith(
            $"{P("two.npy")}: a .npy file holds exactly one array, but 8 were given",
            Fails(() => ArrayFile.Write(P("two.npy"), Samples()))
        );
        Assert.False(File.Exists(P("two.npy")));
    }

    private void WriteSafetensors(string name, string header, int dataBytes)
    {
        byte[] h = Encoding.UTF8.GetBytes(header);
        File.WriteAllBytes(P(name), [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[dataBytes]]);
    }

    [Fact]
    public void SafetensorsOffsetsAreValidated()
    {
        WriteSafetensors("past.safetensors", """{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}""", 8);
        Assert.Equal(
            $"{P("past.safetensors")}: key 'w': bad data_offsets [0, 16]: expected them within the data "
                + $"buffer of 8 bytes (the file is truncated or the header is wrong)",
            Fails(() => Safetensors.Read(P("past.safetensors")))
        );
        WriteSafetensors(
            "size.safetensors",
            """{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}""",
            16
        );
        Assert.Equal(
            $"{P("size.safetensors")}: key 'w': bad data_offsets [0, 16]: dtype F32 and shape [2, 3] need 24 "
                + $"bytes, but the offsets span 16",
            Fails(() => Safetensors.Read(P("size.safetensors")))
        );
        WriteSafetensors("header.safetensors", """{"w": {"dtype": "F32", "sha""", 0);
        Assert.StartsWith(
            $"{P("header.safetensors")}: bad header: expected a JSON object",
            Fails(() => Safetensors.Read(P("header.safetensors")))
        );
        WriteSafetensors("i64.safetensors", """{"x": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}""", 0);
        File.AppendAllBytes(P("i64.safetensors"), BitConverter.GetBytes(-5_000_000_000L));
        Assert.Equal(
            $"{P("i64.safetensors")}: key 'x': I64 value -5000000000 at index [0] does not fit in int32 "
                + $"(expected values in [-2147483648, 2147483647])",
            Fails(() => Safetensors.Read(P("i64.safetensors")))
        );
    }

    [Fact]
    public void WritingIntoAMissingDirectoryFails()
    {
        string path = P("no/such/dir/w.npz");
        Assert.Equal($"{path}: cannot write: the directory does not exist", Fails(() => Npz.Write(path, Samples())));
    }
}
