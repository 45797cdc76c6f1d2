using System.Text;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.IR;

/// <summary>The type of an SSA value. Only tensors exist today; later dialects may add more.</summary>
public abstract class MplType : IEquatable<MplType>
{
    /// <inheritdoc/>
    public abstract bool Equals(MplType? other);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is MplType t && Equals(t);

    /// <inheritdoc/>
    public abstract override int GetHashCode();

    /// <summary>The IR spelling, e.g. tensor&lt;8x64xf32&gt;.</summary>
    public abstract override string ToString();
}

/// <summary>A ranked tensor with static dimensions, an element type and, optionally, a sharding over the
/// mesh.</summary>
public sealed class TensorType : MplType
{
    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Global dimensions (local ones after spmdize). Empty for a scalar.</summary>
    public IReadOnlyList<long> Shape => _shape;

    /// <summary>How the value is split over the mesh, or null when not (yet) known.</summary>
    public Sharding? Sharding { get; }

    private readonly long[] _shape;

    /// <summary>Creates a tensor type; dimensions must be non-negative.</summary>
    public TensorType(DType dtype, IEnumerable<long> shape, Sharding? sharding = null)
    {
        DType = dtype;
        _shape = shape.ToArray();
        foreach (long d in _shape)
            if (d < 0)
                throw new ArgumentException($"negative dimension {d}");
        if (sharding != null && sharding.Rank != _shape.Length)
            throw new ArgumentException(
                $"sharding {sharding} has rank {sharding.Rank} but the tensor has rank " + $"{_shape.Length}"
            );
        Sharding = sharding;
    }

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements.</summary>
    public long NumElements
    {
        get
        {
            long n = 1;
            foreach (long d in _shape)
                n = checked(n * d);
            return n;
        }
    }

    /// <summary>The shape as an array (a copy).</summary>
    public long[] ShapeArray => (long[])_shape.Clone();

    /// <summary>The same type with another shape.</summary>
    public TensorType WithShape(IEnumerable<long> shape) => new(DType, shape);

    /// <summary>The same type with another (or no) sharding.</summary>
    public TensorType WithSharding(Sharding? s) => new(DType, _shape, s);

    /// <summary>The same shape and sharding with element type <paramref name="dtype"/>.</summary>
    public TensorType WithDType(DType dtype) => new(dtype, _shape, Sharding);

    /// <summary>A scalar of the given element type.</summary>
    public static TensorType Scalar(DType t) => new(t, Array.Empty<long>());

    /// <summary>The language's spelling, used in diagnostics: f32[8, 64].</summary>
    public string ToSourceString() => $"{DType.Name()}[{string.Join(", ", _shape)}]";

    /// <inheritdoc/>
    public override bool Equals(MplType? other) =>
        other is TensorType t
        && t.DType == DType
        && t._shape.AsSpan().SequenceEqual(_shape)
        && Equals(t.Sharding, Sharding);

    /// <summary>Equal ignoring shardings.</summary>
    public bool SameShapeAndType(TensorType t) => t.DType == DType && t._shape.AsSpan().SequenceEqual(_shape);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(DType);
        foreach (long d in _shape)
            h.Add(d);
        h.Add(Sharding);
        return h.ToHashCode();
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder("tensor<");
        foreach (long d in _shape)
            sb.Append(d).Append('x');
        sb.Append(DType.Name());
        if (Sharding != null)
            sb.Append(", ").Append(Sharding);
        return sb.Append('>').ToString();
    }
}
