using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>mixed-precision</c>: for <c>train ... precision bf16</c> (or <c>fp16</c>), the forward program computes in the
/// half type while parameters stay in f32 as master weights, as Megatron-LM and PyTorch's automatic mixed precision
/// train. Every f32 parameter is read, then converted to the half type where it is used; f32 inputs are converted
/// on entry; every other f32 value becomes the half type, except a cross-entropy, which takes its logits widened to
/// f32 (the loss of a large vocabulary keeps its precision), and the loss, which is returned as f32. Kernels
/// accumulate matmuls and reductions in f32 and round only their results, so nothing else changes. Autodiff then
/// differentiates the converts: the backward program runs in the half type too and each parameter's gradient
/// arrives in f32, where the optimizer runs. A module without the setting is left alone.
/// </summary>
public sealed class MixedPrecision : IPass
{
    /// <inheritdoc/>
    public string Name => "mixed-precision";

    /// <inheritdoc/>
    public string Description =>
        "train ... precision bf16|fp16: compute the forward program in the half type, keep f32 master weights";

    /// <summary>The half type a module's <c>train</c> attribute asks for, or null (f32 or no setting).</summary>
    public static DType? HalfType(Operation module) =>
        module.GetAttr("train") is DictAttr t && t.Get("precision") is StringAttr s
            ? s.Value switch
            {
                "bf16" => DType.BF16,
                "fp16" => DType.F16,
                _ => null,
            }
            : null;

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (HalfType(module) is not { } half || module.IsSpmd())
            return false;
        var func = module.EntryFunction()!;
        var entry = func.Regions[0].Entry;
        if (entry.Operations.Any(o => o.Dialect == "train" || o.GetAttr("mixed_precision") != null))
            return false; // differentiated already, or converted
        var b = new Builder { Location = func.Location };
        var original = entry.Operations.ToList();
        var ret = entry.Last!;
        // Inputs: converted on entry.
        if (entry.First is { } first)
            b.SetInsertionPointBefore(first);
        foreach (var arg in entry.Arguments.Where(a => a.TensorType.DType == DType.F32))
            Narrow(b, arg, half, null);
        foreach (var op in original)
        {
            if (op == ret)
                break;
            b.Location = op.Location;
            if (op.Name == "tensor.param")
            {
                if (op.Result.TensorType.DType == DType.F32)
                {
                    b.SetInsertionPointBefore(op.Next!);
                    Narrow(b, op.Result, half, op);
                }
                continue;
            }
            b.SetInsertionPointBefore(op);
            if (op.Name == "tensor.cross_entropy")
            {
                // Logits widened back to f32 (the labels are integers); the loss stays f32.
                for (int i = 0; i < op.Operands.Count; i++)
                    if (op.Operands[i].TensorType.DType == half)
                        op.SetOperand(i, Convert(b, op.Operands[i], DType.F32, op));
                continue;
            }
            // An f32 operand here is a cross-entropy's loss, which the rest computes with in the half type.
            for (int i = 0; i < op.Operands.Count; i++)
                if (op.Operands[i].TensorType.DType == DType.F32)
                    op.SetOperand(i, Convert(b, op.Operands[i], half, op));
            foreach (var r in op.Results)
                if (r.TensorType.DType == DType.F32)
                    r.Type = r.TensorType.WithDType(half);
        }
        // The loss, in f32.
        b.SetInsertionPointBefore(ret);
        b.Location = ret.Location;
        for (int i = 0; i < ret.Operands.Count; i++)
            if (ret.Operands[i].TensorType.DType == half)
                ret.SetOperand(i, Convert(b, ret.Operands[i], DType.F32, ret.Operands[i].DefiningOp));
        return true;
    }

    /// <summary>Replaces every use of <paramref name="v"/> with its conversion to <paramref name="half"/>.</summary>
    private static void Narrow(Builder b, Value v, DType half, Operation? like)
    {
        var uses = v.Uses.ToArray();
        var narrow = Convert(b, v, half, like);
        foreach (var (user, index) in uses)
            user.SetOperand(index, narrow);
    }

    /// <summary>A convert marked as this pass's, carrying <paramref name="like"/>'s layer attributes (a
    /// <c>@remat</c> layer recomputes it, a pipeline stage owns it).</summary>
    private static Value Convert(Builder b, Value v, DType to, Operation? like)
    {
        var attrs = new List<KeyValuePair<string, Attr>> { new("mixed_precision", Attr.Bool(true)) };
        foreach (var key in new[] { "remat", "stage" })
            if (like?.GetAttr(key) is { } a)
                attrs.Add(new(key, a));
        return b.CreateValue("tensor.convert", [v], attrs, v.TensorType.WithDType(to));
    }
}
