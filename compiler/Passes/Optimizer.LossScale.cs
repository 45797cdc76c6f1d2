using ParallelCompiler.IR;

namespace ParallelCompiler.Passes;

/// <summary>
/// Dynamic loss scaling for <c>precision fp16</c>, as PyTorch's gradient scaler and Megatron-LM do it: the backward
/// program starts at the loss scale S instead of 1, so gradients too small for fp16 stay representable; the
/// optimizer divides each gradient by S in f32. A step whose gradients hold an infinity or a NaN (the half-precision
/// backward overflowed) leaves every parameter and optimizer state as it was and halves S; after
/// <see cref="GrowthInterval"/> steps in a row without one, S doubles. S starts at 2^16 and is kept, as the state
/// <c>optimizer.loss_scale</c>, in units of 2^16 (so it starts at one, and every scale is an exact power of two);
/// <c>optimizer.loss_scale_good_steps</c> counts the steps since the last change.
/// </summary>
public sealed partial class Optimizer
{
    /// <summary>The state holding the loss scale, in units of <see cref="InitialLossScale"/>.</summary>
    public const string LossScalePath = "optimizer.loss_scale";

    /// <summary>The first loss scale (PyTorch's default).</summary>
    public const double InitialLossScale = 65536;

    /// <summary>Steps without an overflow after which the scale doubles (PyTorch's default).</summary>
    public const int GrowthInterval = 2000;

    /// <summary>The loss scale, for autodiff's seed in the type of <paramref name="one"/> (the seed it
    /// replaces).</summary>
    public static Value LossScaleSeed(Builder b, Value one)
    {
        var scale = ReadLossScale(b);
        return scale.TensorType.DType == one.TensorType.DType
            ? scale
            : b.CreateValue("tensor.convert", [scale], null, one.TensorType.WithSharding(null));
    }

    /// <summary>S in f32: the state times 2^16.</summary>
    private static Value ReadLossScale(Builder b, Value? state = null)
    {
        state ??= StateParam(b, LossScalePath, TensorType.Scalar(DType.F32), "ones");
        var c = b.CreateValue(
            "tensor.constant",
            [],
            [new("value", Attr.Float(InitialLossScale))],
            TensorType.Scalar(DType.F32)
        );
        return b.CreateValue("tensor.mul", [state, c]);
    }

    /// <summary>The optimizer's side of loss scaling, over one module's updates.</summary>
    private sealed class LossScaling
    {
        private readonly UpdateBuilder _u;
        private readonly Builder _b;
        private readonly Value _state;
        private readonly Value _scale;
        private readonly List<Value> _zeros = [];

        public LossScaling(UpdateBuilder u, Builder b, Block entry)
        {
            (_u, _b) = (u, b);
            _state =
                entry
                    .Operations.FirstOrDefault(o =>
                        o.Name == "tensor.param" && o.GetAttr("path") is StringAttr { Value: LossScalePath }
                    )
                    ?.Result
                ?? throw new IRException("optimizer: precision fp16, but autodiff read no loss scale");
            var before = b.Before!.Prev;
            _scale = ReadLossScale(b, _state);
            SetStage(_state.DefiningOp!.GetAttr("stage"), before, b.Before);
        }

        /// <summary>g / S in g's type, and (g / S) * 0 summed: 0, or NaN where g / S is not finite.</summary>
        public Value Unscale(Value g)
        {
            var unscaled = _u.Div(g, _u.As(_scale, g));
            var axes = Enumerable.Range(0, unscaled.TensorType.Rank).Select(i => (long)i).ToArray();
            var probe = _u.MulC(unscaled, 0);
            _zeros.Add(
                axes.Length == 0
                    ? probe
                    : _b.CreateValue(
                        "tensor.sum",
                        [probe],
                        [new("axes", Attr.Ints(axes)), new("keepdims", Attr.Bool(false))]
                    )
            );
            return unscaled;
        }

        /// <summary>1 when every gradient is finite, else 0 (f32): the sum of the probes plus one, made 0 where it
        /// is NaN.</summary>
        public Value AllFinite(bool pipelined)
        {
            var before = _b.Before?.Prev;
            var total = _u.As(_zeros[0], _scale);
            foreach (var z in _zeros.Skip(1))
                total = _u.Add(total, _u.As(z, _scale));
            var ok = _b.CreateValue("tensor.finite_or_zero", [_u.AddC(total, 1)]);
            ok.NameHint = "grads_finite";
            SetStage(pipelined ? Attr.Int(0) : null, before, _b.Before!); // once a step, where the step count lives
            return ok;
        }

        /// <summary>The gradient with its non-finite elements zeroed, so that a skipped step computes only finite
        /// values.</summary>
        public Value Sanitize(Value g) => _b.CreateValue("tensor.finite_or_zero", [g]);

        /// <summary>Every update made since <paramref name="existing"/> writes ok * new + (1 - ok) * old: the new
        /// value bit for bit when ok is 1, the old one when it is 0; then the scale's own update.</summary>
        public void Update(Value ok, HashSet<Operation> existing, bool pipelined)
        {
            var updates = ok.DefiningOp!.Block!.Operations.Where(o => o.Name == "train.update" && !existing.Contains(o))
                .ToList();
            foreach (var upd in updates)
            {
                // At the end: an update made before the check (the step count's) moves after it.
                _b.SetInsertionPointBefore(upd.Block!.Last!);
                var before = _b.Before!.Prev!;
                var (old, @new) = (upd.Operands[0], upd.Operands[1]);
                var keep = _u.As(ok, @new);
                _b.Create("train.update", [old, _u.Add(_u.Mul(@new, keep), _u.Mul(old, _u.RSubC(1, keep)))]);
                SetStage(upd.GetAttr("stage"), before, _b.Before!);
                upd.Erase();
            }
            _b.SetInsertionPointBefore(ok.DefiningOp!.Block!.Last!);
            var start = _b.Before!.Prev;
            // good' = ok (good + 1); grow = [good' >= interval]; S' = S (ok (1 + grow) + (1 - ok) / 2).
            var good = _u.State("optimizer.loss_scale_good_steps", TensorType.Scalar(DType.F32), null);
            var good1 = _u.Mul(ok, _u.AddC(good, 1));
            var grow = _b.CreateValue("tensor.step", [_u.AddC(good1, 0.5 - GrowthInterval)]);
            var factor = _u.Add(_u.Mul(ok, _u.AddC(grow, 1)), _u.MulC(_u.RSubC(1, ok), 0.5));
            _b.Create("train.update", [_state, _u.Mul(_state, factor)]);
            _b.Create("train.update", [good, _u.Mul(good1, _u.RSubC(1, grow))]);
            // where the scale is read
            SetStage(pipelined ? _state.DefiningOp!.GetAttr("stage") ?? Attr.Int(0) : null, start, _b.Before!);
        }
    }
}
