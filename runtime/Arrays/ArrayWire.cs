using System.Runtime.InteropServices;
using System.Text;

namespace ParallelCompiler.Runtime.Arrays;

/// <summary>
/// Host arrays as the bytes that go between processes: the element type, the shape and the elements as they are in
/// memory (f16 and bf16 values travel as the f32 values they are stored as, so nothing is rounded twice), with
/// texts and nested lists for the messages and results around them.
/// </summary>
internal static class ArrayWire
{
    /// <summary>Appends <paramref name="x"/> (null allowed).</summary>
    public static void Write(BinaryWriter w, NDArray? x)
    {
        if (x == null)
        {
            w.Write((byte)255);
            return;
        }
        w.Write((byte)x.DType);
        w.Write(x.Shape.Length);
        foreach (long d in x.Shape)
            w.Write(d);
        if (x.F != null)
            w.Write(MemoryMarshal.AsBytes(x.F.AsSpan()));
        else
            w.Write(MemoryMarshal.AsBytes(x.I!.AsSpan()));
    }

    /// <summary>Reads an array <see cref="Write"/> wrote.</summary>
    public static NDArray? Read(BinaryReader r)
    {
        byte t = r.ReadByte();
        if (t == 255)
            return null;
        var dtype = (DType)t;
        var shape = new long[r.ReadInt32()];
        for (int i = 0; i < shape.Length; i++)
            shape[i] = r.ReadInt64();
        long n = NDArray.ShapeSize(shape);
        if (dtype == DType.I32)
        {
            var data = new int[n];
            r.BaseStream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
            return NDArray.FromInts(shape, data);
        }
        var f = new float[n];
        r.BaseStream.ReadExactly(MemoryMarshal.AsBytes(f.AsSpan()));
        return NDArray.FromFloats(dtype, shape, f);
    }

    /// <summary>The bytes of one array.</summary>
    public static byte[] Bytes(NDArray x)
    {
        using var m = new MemoryStream();
        using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true))
            Write(w, x);
        return m.ToArray();
    }

    /// <summary>The array in <paramref name="bytes"/> from <paramref name="offset"/>.</summary>
    public static NDArray FromBytes(byte[] bytes, int offset, int count)
    {
        using var r = new BinaryReader(new MemoryStream(bytes, offset, count));
        return Read(r)!;
    }
}
