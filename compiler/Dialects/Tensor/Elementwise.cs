using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary>Elementwise binary ops with numpy broadcasting; both operands have the same element type.</summary>
public abstract class BinaryElementwiseOp : OpDef
{
    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (a, b) = (sig.Operands[0], sig.Operands[1]);
        sig.RequireSameDType(a, b);
        var shape =
            ShapeRules.Broadcast(a.Shape, b.Shape)
            ?? throw sig.Error($"shapes {a.ToSourceString()} and {b.ToSourceString()} do not broadcast");
        return [new TensorType(a.DType, shape)];
    }

    /// <summary>One parallel factor per result dimension; operands broadcast into it.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var r = results[0].Shape;
        var b = new ShardingRuleBuilder();
        var f = b.Factors(r);
        return b.BroadcastOperand(sig.Operands[0].Shape, r, f)
            .BroadcastOperand(sig.Operands[1].Shape, r, f)
            .Result(f)
            .Build();
    }
}

/// <summary><c>tensor.add %a, %b</c>: a + b.</summary>
public sealed class AddOp : BinaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.add";

    /** <inheritdoc/> */public override string Summary => "elementwise a + b with broadcasting";
}

/// <summary><c>tensor.sub %a, %b</c>: a - b.</summary>
public sealed class SubOp : BinaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.sub";

    /** <inheritdoc/> */public override string Summary => "elementwise a - b with broadcasting";
}

/// <summary><c>tensor.mul %a, %b</c>: a * b.</summary>
public sealed class MulOp : BinaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.mul";

    /** <inheritdoc/> */public override string Summary => "elementwise a * b with broadcasting";
}

/// <summary><c>tensor.div %a, %b</c>: a / b (integer division truncates toward minus infinity, as numpy's
/// //).</summary>
public sealed class DivOp : BinaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.div";

    /** <inheritdoc/> */public override string Summary => "elementwise a / b with broadcasting";
}

/// <summary><c>tensor.rem %a, %b</c>: numpy's a % b (sign of the divisor).</summary>
public sealed class RemOp : BinaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.rem";

    /** <inheritdoc/> */public override string Summary => "elementwise a % b with broadcasting (numpy sign rule)";
}

/// <summary>Elementwise unary ops: the result has the operand's type.</summary>
public abstract class UnaryElementwiseOp : OpDef
{
    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <summary>False for ops defined only on floats.</summary>
    protected virtual bool AllowsInt => false;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var a = sig.Operands[0];
        if (!AllowsInt)
            sig.RequireFloat(a, "the operand");
        return [new TensorType(a.DType, a.Shape)];
    }

    /// <summary>One parallel factor per dimension.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Pointwise(results[0].Shape);
}

/// <summary><c>tensor.neg</c>: -x.</summary>
public sealed class NegOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.neg";

    /** <inheritdoc/> */public override string Summary => "elementwise -x";

    /** <inheritdoc/> */protected override bool AllowsInt => true;
}

/// <summary><c>tensor.relu</c>: max(x, 0).</summary>
public sealed class ReluOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.relu";

    /** <inheritdoc/> */public override string Summary => "elementwise max(x, 0)";

    /** <inheritdoc/> */protected override bool AllowsInt => true;
}

/// <summary><c>tensor.gelu</c>: the tanh approximation of GELU.</summary>
public sealed class GeluOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.gelu";

    /** <inheritdoc/> */public override string Summary => "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))";
}

/// <summary><c>tensor.silu</c>: x * sigmoid(x).</summary>
public sealed class SiluOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.silu";

    /** <inheritdoc/> */public override string Summary => "x * sigmoid(x)";
}

/// <summary><c>tensor.sigmoid</c>: 1 / (1 + exp(-x)).</summary>
public sealed class SigmoidOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.sigmoid";

    /** <inheritdoc/> */public override string Summary => "1 / (1 + exp(-x))";
}

/// <summary><c>tensor.tanh</c>.</summary>
public sealed class TanhOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.tanh";

    /** <inheritdoc/> */public override string Summary => "hyperbolic tangent";
}

/// <summary><c>tensor.exp</c>.</summary>
public sealed class ExpOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.exp";

    /** <inheritdoc/> */public override string Summary => "e^x";
}

/// <summary><c>tensor.log</c>.</summary>
public sealed class LogOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.log";

    /** <inheritdoc/> */public override string Summary => "natural logarithm";
}

/// <summary><c>tensor.sqrt</c>.</summary>
public sealed class SqrtOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.sqrt";

    /** <inheritdoc/> */public override string Summary => "square root";
}

/// <summary><c>tensor.rsqrt</c>: 1 / sqrt(x).</summary>
public sealed class RsqrtOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.rsqrt";

    /** <inheritdoc/> */public override string Summary => "1 / sqrt(x)";
}

/// <summary><c>tensor.step</c>: 1 where x &gt; 0, else 0 (the derivative of relu; gradients use it as a
/// mask).</summary>
public sealed class StepOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.step";

    /** <inheritdoc/> */public override string Summary => "1 where x > 0, else 0";
}

/// <summary><c>tensor.finite_or_zero</c>: x where it is finite, else 0 (dynamic loss scaling makes the gradients of
/// a step that overflowed harmless with it, and tells such a step from the others).</summary>
public sealed class FiniteOrZeroOp : UnaryElementwiseOp
{
    /** <inheritdoc/> */public override string Name => "tensor.finite_or_zero";

    /** <inheritdoc/> */public override string Summary => "x where it is finite, else 0";
}

/// <summary>
/// <c>%r = tensor.convert %x : (tensor&lt;4xf32&gt;) -&gt; tensor&lt;4xbf16&gt;</c>: each element in another float
/// type,
/// rounded to nearest even (the result type says which). Mixed precision runs on it: an optimizer keeps f32
/// state beside bf16 parameters, and bf16 values are widened where f32 accumulates.
/// </summary>
public sealed class ConvertOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.convert";

    /// <inheritdoc/>
    public override string Summary => "elements in another float type";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (x, t) = (sig.Operands[0], sig.GivenTensor());
        sig.RequireFloat(x, "the operand");
        sig.RequireFloat(t, "the result");
        if (!t.Shape.SequenceEqual(x.Shape))
            throw sig.Error($"result {t.ToSourceString()} must have the shape of " + $"{x.ToSourceString()}");
        return [new TensorType(t.DType, x.Shape)];
    }

    /// <summary>One parallel factor per dimension.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results) =>
        ShardingRules.Pointwise(results[0].Shape);
}
