using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>canonicalize</c>: local simplifications applied to a fixpoint: composed and identity transposes, reshape
/// chains, no-op reshapes and broadcasts, double negation, identities with splat constants (x + 0, x * 1, x - 0,
/// x / 1) and folding of ops on constants. Each pattern preserves the value exactly but one: a half-precision
/// accumulation whose only use widens it to f32 returns its f32 accumulator instead (a rounding vanishes).
/// </summary>
public sealed class Canonicalize : IPass
{
    /// <inheritdoc/>
    public string Name => "canonicalize";

    /// <inheritdoc/>
    public string Description => "simplify local patterns (transposes, reshapes, identities, constants) to a fixpoint";

    /// <summary>Most rounds over the program.</summary>
    [PassOption("max-iterations", "most rounds of pattern application")]
    public int MaxIterations { get; set; } = 10;

    /// <summary>The patterns, in the order they are tried.</summary>
    public static readonly IReadOnlyList<RewritePattern> Patterns =
    [
        new ComposeTransposes(),
        new IdentityTranspose(),
        new ComposeReshapes(),
        new IdentityShapeOp("tensor.reshape"),
        new IdentityShapeOp("tensor.broadcast"),
        new DoubleNegation(),
        new SplatIdentity(),
        new FoldConstants(),
        new WidenedAccumulation(),
    ];

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (MaxIterations < 1)
            throw new PipelineException("canonicalize: max-iterations must be at least 1");
        return GreedyRewriteDriver.Apply(module, Patterns, MaxIterations);
    }

    /// <summary>transpose(transpose(x, p), q) = transpose(x, p[q[i]]).</summary>
    private sealed class ComposeTransposes : RewritePattern
    {
        public override string Root => "tensor.transpose";

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (op.Operands[0].DefiningOp is not { Name: "tensor.transpose" } inner)
                return false;
            var p = inner.IntsAttr("perm");
            var q = op.IntsAttr("perm");
            var v = r.Create(
                op,
                "tensor.transpose",
                [inner.Operands[0]],
                [new("perm", Attr.Ints(q.Select(i => p[i])))]
            );
            r.ReplaceOp(op, v);
            return true;
        }
    }

    /// <summary>transpose(x, [0, 1, ...]) = x.</summary>
    private sealed class IdentityTranspose : RewritePattern
    {
        public override string Root => "tensor.transpose";

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            var perm = op.IntsAttr("perm");
            if (!perm.Select((p, i) => p == i).All(b => b) || !SameType(op))
                return false;
            r.ReplaceOp(op, op.Operands[0]);
            return true;
        }
    }

    /// <summary>reshape(reshape(x)) = reshape(x): row-major order is unchanged by both.</summary>
    private sealed class ComposeReshapes : RewritePattern
    {
        public override string Root => "tensor.reshape";

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (op.Operands[0].DefiningOp is not { Name: "tensor.reshape" } inner)
                return false;
            var v = r.Create(op, "tensor.reshape", [inner.Operands[0]], [new("shape", op.GetAttr("shape")!)]);
            r.ReplaceOp(op, v);
            return true;
        }
    }

    /// <summary>A reshape or broadcast to the operand's own shape is the operand.</summary>
    private sealed class IdentityShapeOp(string name) : RewritePattern
    {
        public override string Root => name;

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (!SameType(op))
                return false;
            r.ReplaceOp(op, op.Operands[0]);
            return true;
        }
    }

    /// <summary>
    /// convert(op(x) : half) : f32 = op(x) : f32 for an op that accumulates in f32 (matmul, sum, mean,
    /// embedding_grad) and is used only there: its accumulator, unrounded; a widened sum of two half values is the
    /// sum of the two widened; a widened transpose or reshape is that of the widened value. Mixed precision's
    /// weight gradients are summed over microbatches and devices in f32 so.
    /// </summary>
    private sealed class WidenedAccumulation : RewritePattern
    {
        public override string Root => "tensor.convert";

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (
                op.Result.TensorType.DType != DType.F32
                || op.Operands[0].DefiningOp is not { } inner
                || inner.Results.Count != 1
                || inner.Result.TensorType.DType is not (DType.F16 or DType.BF16)
                || inner.Result.Uses.Count != 1
            )
                return false;
            if (inner.Name is "tensor.matmul" or "tensor.sum" or "tensor.mean" or "tensor.embedding_grad")
            {
                inner.Result.Type = inner.Result.TensorType.WithDType(DType.F32);
                r.ReplaceOp(op, inner.Result);
                return true;
            }
            var b = new Builder { Location = inner.Location };
            b.SetInsertionPointBefore(op);
            var carried = inner.Attributes; // the op's stage and phase (and layout), which the new ops take
            Value Widen(Value v) =>
                b.CreateValue(
                    "tensor.convert",
                    [v],
                    carried.Where(a => a.Key is "stage" or "phase" or "remat"),
                    v.TensorType.WithDType(DType.F32).WithSharding(null)
                );
            if (inner.Name is "tensor.transpose" or "tensor.reshape") // layout commutes with the conversion
            {
                r.ReplaceOp(op, b.CreateValue(inner.Name, [Widen(inner.Operands[0])], carried));
                return true;
            }
            if (
                inner.Name != "tensor.add"
                || !inner.Operands.All(o => o.TensorType.SameShapeAndType(inner.Result.TensorType))
            )
                return false;
            var sum = b.CreateValue("tensor.add", [Widen(inner.Operands[0]), Widen(inner.Operands[1])], carried);
            r.ReplaceOp(op, sum);
            return true;
        }
    }

    /// <summary>-(-x) = x.</summary>
    private sealed class DoubleNegation : RewritePattern
    {
        public override string Root => "tensor.neg";

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (op.Operands[0].DefiningOp is not { Name: "tensor.neg" } inner)
                return false;
            r.ReplaceOp(op, inner.Operands[0]);
            return true;
        }
    }

    /// <summary>x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1 are x when the result has x's type (no broadcast).</summary>
    private sealed class SplatIdentity : RewritePattern
    {
        public override string? Root => null;

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (op.Operands.Count != 2)
                return false;
            double? identity = op.Name switch
            {
                "tensor.add" or "tensor.sub" => 0,
                "tensor.mul" or "tensor.div" => 1,
                _ => null,
            };
            if (identity == null)
                return false;
            bool commutes = op.Name is "tensor.add" or "tensor.mul";
            for (int side = 1; side >= (commutes ? 0 : 1); side--)
            {
                var other = op.Operands[1 - side];
                if (
                    SplatValue(op.Operands[side]) == identity
                    && other.TensorType.SameShapeAndType(op.Result.TensorType)
                )
                {
                    r.ReplaceOp(op, other);
                    return true;
                }
            }
            return false;
        }
    }

    /// <summary>Elementwise ops whose operands are all splat constants become one splat constant.</summary>
    private sealed class FoldConstants : RewritePattern
    {
        public override string? Root => null;

        public override bool MatchAndRewrite(Operation op, PatternRewriter r)
        {
            if (op.Results.Count != 1 || op.Operands.Count == 0)
                return false;
            var vals = op.Operands.Select(SplatValue).ToArray();
            if (vals.Any(v => v == null))
                return false;
            var t = op.Result.TensorType;
            double? folded = Interp.ScalarSemantics.Fold(op.Name, vals.Select(v => v!.Value).ToArray(), t.DType);
            if (folded == null)
                return false;
            Attr value = t.DType.IsFloat() ? Attr.Float(folded.Value) : Attr.Int((long)folded.Value);
            r.ReplaceOp(op, r.Create(op, "tensor.constant", [], [new("value", value)], t.WithSharding(null)));
            return true;
        }
    }

    private static bool SameType(Operation op) => op.Operands[0].TensorType.SameShapeAndType(op.Result.TensorType);

    private static double? SplatValue(Value v) =>
        v.DefiningOp is { Name: "tensor.constant" } c
            ? c.GetAttr("value") switch
            {
                FloatAttr f => f.Value,
                IntAttr i => i.Value,
                _ => null,
            }
            : null;
}
