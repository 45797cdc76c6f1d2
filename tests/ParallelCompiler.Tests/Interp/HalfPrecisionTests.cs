using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Interp;

/// <summary>f16 and bf16 are computed in f32 and rounded after every op; numpy is the oracle for both
/// roundings.</summary>
public class HalfPrecisionTests
{
    [Fact]
    public void F16ModelMatchesNumpyFloat16Arithmetic()
    {
        string dir = Directory.CreateTempSubdirectory("mplc-f16").FullName;
        try
        {
            string model = Path.Combine(dir, "m.mpl");
            File.WriteAllText(model, "model m(x: f16[64], y: f16[64]) -> f16[64] { return (x * y + 0.1) / 3.0; }\n");
            var py = Python.Run(
                """
                import numpy as np, sys
                rng = np.random.default_rng(5)
                x = rng.standard_normal(64).astype(np.float16); y = rng.standard_normal(64).astype(np.float16)
                np.savez(sys.argv[1] + '/in.npz', x=x, y=y)
                np.save(sys.argv[1] + '/ref.npy', (x * y + np.float16(0.1)) / np.float16(3.0))
                """,
                dir
            );
            Assert.True(py.ExitCode == 0, py.Stderr);
            var r = Mplc.Run(
                "run",
                model,
                "--inputs",
                Path.Combine(dir, "in.npz"),
                "--out",
                Path.Combine(dir, "out.npz")
            );
            Assert.True(r.ExitCode == 0, r.Stderr);
            var got = Npz.Read(Path.Combine(dir, "out.npz"))["out"];
            var want = Npy.Read(Path.Combine(dir, "ref.npy"));
            Assert.Equal("float16", got.SourceDtype);
            Assert.Equal(want.Array.F!, got.Array.F!); // bit-for-bit: each op rounds exactly like numpy's float16
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Bf16RoundsToNearestEvenLikeTheBitLevelDefinitionInNumpy()
    {
        float[] values = [1.0f, 1.00390625f, 1.01171875f, 3.14159265f, -2.7182817f, 65504f, 1e-20f, 3.4e38f];
        var py = Python.Run(
            """
            import numpy as np, sys
            v = np.array([float(s) for s in sys.argv[1:]], dtype=np.float32).view(np.uint32).astype(np.uint64)
            r = ((v + 0x7FFF + ((v >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
            print(' '.join(str(int(x)) for x in r))
            """,
            values.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)).ToArray()
        );
        Assert.True(py.ExitCode == 0, py.Stderr);
        var want = py.Stdout.Trim().Split(' ').Select(uint.Parse).ToArray();
        Assert.Equal(want, values.Select(v => BitConverter.SingleToUInt32Bits(DType.BF16.Round(v))).ToArray());
    }
}
