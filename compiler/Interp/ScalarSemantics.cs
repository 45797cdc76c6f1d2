namespace ParallelCompiler.Interp;

/// <summary>
/// The meaning of each elementwise op on one element, shared by the interpreter and constant folding so the two
/// can never disagree. Floats follow numpy's float32 arithmetic; integers wrap like numpy's int32.
/// </summary>
public static class ScalarSemantics
{
    private static readonly float Sqrt2OverPi = MathF.Sqrt(2f / MathF.PI);

    /// <summary>The float function of a unary op, or null when <paramref name="op"/> is not one.</summary>
    public static Func<float, float>? UnaryF(string op) =>
        op switch
        {
            "tensor.neg" => x => -x,
            "tensor.relu" => x => x > 0 ? x : (float.IsNaN(x) ? x : 0f),
            "tensor.gelu" => x => 0.5f * x * (1f + MathF.Tanh(Sqrt2OverPi * (x + 0.044715f * x * x * x))),
            "tensor.silu" => x => x / (1f + MathF.Exp(-x)),
            "tensor.sigmoid" => x => 1f / (1f + MathF.Exp(-x)),
            "tensor.tanh" => MathF.Tanh,
            "tensor.exp" => MathF.Exp,
            "tensor.log" => MathF.Log,
            "tensor.sqrt" => MathF.Sqrt,
            "tensor.rsqrt" => x => 1f / MathF.Sqrt(x),
            "tensor.step" => x => x > 0 ? 1f : (float.IsNaN(x) ? x : 0f),
            "tensor.finite_or_zero" => x => float.IsFinite(x) ? x : 0f,
            "tensor.convert" => x => x, // the result's rounding is the conversion
            _ => null,
        };

    /// <summary>The integer function of a unary op (neg, relu), or null.</summary>
    public static Func<int, int>? UnaryI(string op) =>
        op switch
        {
            "tensor.neg" => x => unchecked(-x),
            "tensor.relu" => x => Math.Max(x, 0),
            _ => null,
        };

    /// <summary>The float function of a binary op, or null.</summary>
    public static Func<float, float, float>? BinaryF(string op) =>
        op switch
        {
            "tensor.add" => (a, b) => a + b,
            "tensor.sub" => (a, b) => a - b,
            "tensor.mul" => (a, b) => a * b,
            "tensor.div" => (a, b) => a / b,
            "tensor.rem" => (a, b) =>
            {
                float r = a % b;
                return r != 0 && (r < 0) != (b < 0) ? r + b : r;
            },
            _ => null,
        };

    /// <summary>The integer function of a binary op, or null. Division floors and x / 0 = x % 0 = 0, as numpy's
    /// int32.</summary>
    public static Func<int, int, int>? BinaryI(string op) =>
        op switch
        {
            "tensor.add" => (a, b) => unchecked(a + b),
            "tensor.sub" => (a, b) => unchecked(a - b),
            "tensor.mul" => (a, b) => unchecked(a * b),
            "tensor.div" => (a, b) =>
                b == 0 ? 0
                : (a == int.MinValue && b == -1) ? int.MinValue
                : FloorDiv(a, b),
            "tensor.rem" => (a, b) => b == 0 || b == -1 ? 0 : unchecked(a - FloorDiv(a, b) * b),
            _ => null,
        };

    private static int FloorDiv(int a, int b)
    {
        int q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
    }

    /// <summary>Folds an elementwise op on constant operands; null when the op is not elementwise.</summary>
    public static double? Fold(string op, double[] args, DType dtype)
    {
        if (dtype.IsFloat())
        {
            float r;
            if (args.Length == 1 && UnaryF(op) is { } u)
                r = u((float)args[0]);
            else if (args.Length == 2 && BinaryF(op) is { } b)
                r = b((float)args[0], (float)args[1]);
            else
                return null;
            return dtype.Round(r);
        }
        if (args.Length == 1 && UnaryI(op) is { } ui)
            return ui((int)args[0]);
        if (args.Length == 2 && BinaryI(op) is { } bi)
            return bi((int)args[0], (int)args[1]);
        return null;
    }
}
