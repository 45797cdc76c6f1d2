using ParallelCompiler.IR;

namespace ParallelCompiler.Passes;

/// <summary>
/// The derivative of every op: given an op and the adjoint of its result, the adjoint contribution of each
/// operand (null where none flows: integer operands, constants, masks). Forward values the rules read go
/// through <see cref="Fwd"/>, which recomputes the ops of @remat layers in the backward program instead of
/// keeping their results alive.
/// </summary>
public sealed class GradientRules(Builder b, bool remat)
{
    private readonly Dictionary<Value, Value> _recomputed = new(ReferenceEqualityComparer.Instance);

    /// <summary>Operand adjoints of <paramref name="op"/> given <paramref name="dy"/>, the adjoint of its
    /// result.</summary>
    public Value?[] Backward(Operation op, Value dy)
    {
        Value X(int i) => Fwd(op.Operands[i]);
        Value Y() => Fwd(op.Result);
        var xs = op.Operands;
        switch (op.Name)
        {
            case "tensor.add":
                return [Unbroadcast(dy, xs[0]), Unbroadcast(dy, xs[1])];
            case "tensor.sub":
                return [Unbroadcast(dy, xs[0]), Unbroadcast(Neg(dy), xs[1])];
            case "tensor.mul":
                return [Unbroadcast(Mul(dy, X(1)), xs[0]), Unbroadcast(Mul(dy, X(0)), xs[1])];
            case "tensor.div":
                return [Unbroadcast(Div(dy, X(1)), xs[0]), Unbroadcast(Neg(Div(Mul(dy, Y()), X(1))), xs[1])];
            case "tensor.rem": // a % b = a - b * floor(a / b)
                return [Unbroadcast(dy, xs[0]), Unbroadcast(Neg(Mul(dy, Div(Sub(X(0), Y()), X(1)))), xs[1])];
            case "tensor.neg":
                return [Neg(dy)];
            case "tensor.convert":
                return [b.CreateValue("tensor.convert", [dy], null, dy.TensorType.WithDType(xs[0].TensorType.DType))];
            case "tensor.relu":
                return [Mul(dy, Un("tensor.step", X(0)))];
            case "tensor.step":
                return [null];
            case "tensor.finite_or_zero": // 1 where x is finite: x * 0 + 1 is NaN elsewhere
                return [Mul(dy, Un("tensor.finite_or_zero", AddC(MulC(X(0), 0), 1)))];
            case "tensor.gelu":
                return [Mul(dy, GeluDerivative(X(0)))];
            case "tensor.silu":
            {
                var s = Un("tensor.sigmoid", X(0));
                return [Mul(dy, Mul(s, AddC(Mul(X(0), RSubC(1, s)), 1)))];
            }
            case "tensor.sigmoid":
                return [Mul(dy, Mul(Y(), RSubC(1, Y())))];
            case "tensor.tanh":
                return [Mul(dy, RSubC(1, Mul(Y(), Y())))];
            case "tensor.exp":
                return [Mul(dy, Y())];
            case "tensor.log":
                return [Div(dy, X(0))];
            case "tensor.sqrt":
                return [Div(MulC(dy, 0.5), Y())];
            case "tensor.rsqrt":
                return [Mul(MulC(dy, -0.5), Mul(Y(), Mul(Y(), Y())))];
            case "tensor.sum":
                return [Spread(op, dy, 1.0)];
            case "tensor.mean":
            {
                var shape = op.OperandType(0).Shape;
                long n = op.IntsAttr("axes").Aggregate(1L, (acc, a) => acc * shape[(int)a]);
                return [Spread(op, dy, 1.0 / n)];
            }
            case "tensor.max":
            {
                // The gradient is shared equally by the positions holding the maximum (1 - step(max - x) is 1 exactly
                // there), as torch.amax does: ties split it, so a value copied into several places gets it once.
                var at = RSubC(1, Un("tensor.step", Sub(Spread(op, Y(), 1.0), X(0))));
                var count = Reduce("tensor.sum", at, op.IntsAttr("axes"), keep: true);
                return [Mul(Spread(op, dy, 1.0), Div(at, count))];
            }
            case "tensor.softmax":
            {
                var s = Reduce("tensor.sum", Mul(dy, Y()), [op.IntAttr("axis")], keep: true);
                return [Mul(Y(), Sub(dy, s))];
            }
            case "tensor.layernorm":
                return LayerNorm(op, dy, X(0), X(1), op.FloatAttr("eps"), rms: false);
            case "tensor.rmsnorm":
                return LayerNorm(op, dy, X(0), X(1), op.FloatAttr("eps"), rms: true);
            case "tensor.matmul":
                return Matmul(op, dy, X(0), X(1));
            case "tensor.reshape":
                return [Reshape(dy, xs[0].TensorType.Shape)];
            case "tensor.transpose":
            {
                var perm = op.IntsAttr("perm");
                var inv = new long[perm.Length];
                for (int i = 0; i < perm.Length; i++)
                    inv[perm[i]] = i;
                return [b.CreateValue("tensor.transpose", [dy], [new("perm", Attr.Ints(inv))])];
            }
            case "tensor.broadcast":
                return [Unbroadcast(dy, xs[0])];
            case "tensor.concat":
            {
                long axis = op.IntAttr("axis"),
                    start = 0;
                var r = new Value?[xs.Count];
                for (int i = 0; i < xs.Count; i++)
                {
                    long len = xs[i].TensorType.Shape[(int)axis];
                    r[i] = b.CreateValue(
                        "tensor.slice",
                        [dy],
                        [new("axis", Attr.Int(axis)), new("start", Attr.Int(start)), new("length", Attr.Int(len))]
                    );
                    start += len;
                }
                return r;
            }
            case "tensor.slice":
            {
                // The block goes back where it came from, between zeros.
                int axis = (int)op.IntAttr("axis");
                long start = op.IntAttr("start"),
                    after = xs[0].TensorType.Shape[axis] - start - op.IntAttr("length");
                var parts = new List<Value>();
                Value Zeros(long n)
                {
                    var shape = dy.TensorType.ShapeArray;
                    shape[axis] = n;
                    return b.CreateValue(
                        "tensor.constant",
                        [],
                        [new("value", Attr.Float(0.0))],
                        new TensorType(dy.TensorType.DType, shape)
                    );
                }
                if (start > 0)
                    parts.Add(Zeros(start));
                parts.Add(dy);
                if (after > 0)
                    parts.Add(Zeros(after));
                return [parts.Count == 1 ? dy : b.CreateValue("tensor.concat", parts, [new("axis", Attr.Int(axis))])];
            }
            case "tensor.embedding":
                return
                [
                    null,
                    b.CreateValue(
                        "tensor.embedding_grad",
                        [xs[0], dy],
                        [new("rows", Attr.Int(xs[1].TensorType.Shape[0]))]
                    ),
                ];
            case "tensor.causal_mask":
                return [b.CreateValue("tensor.causal_mask", [dy], [new("fill", Attr.Float(0.0))])];
            case "tensor.cross_entropy":
            {
                var logits = op.OperandType(0);
                long positions = logits.NumElements / logits.Shape[^1];
                var p = b.CreateValue("tensor.softmax", [X(0)], [new("axis", Attr.Int(-1))]);
                var onehot = b.CreateValue(
                    "tensor.one_hot",
                    [xs[1]],
                    [new("classes", Attr.Int(logits.Shape[^1]))],
                    logits.WithSharding(null)
                );
                return [Mul(Sub(p, onehot), MulC(dy, 1.0 / positions)), null];
            }
            case "dist.reshard":
                return [dy];
            case "pipe.transfer":
                return
                [
                    b.CreateValue(
                        "pipe.transfer",
                        [dy],
                        [new("from", Attr.Int(op.IntAttr("to"))), new("to", Attr.Int(op.IntAttr("from")))]
                    ),
                ];
            case "tensor.constant" or "tensor.param" or "tensor.one_hot" or "tensor.embedding_grad":
                return new Value?[xs.Count];
            default:
                throw new IRException($"autodiff: no derivative rule for {op.Name}");
        }
    }

    /// <summary>
    /// A forward value as the backward program should read it: itself, or (for a result of an op in a @remat
    /// layer) a copy of the op recomputed here from its own, possibly recomputed, operands.
    /// </summary>
    public Value Fwd(Value v)
    {
        if (
            !remat
            || v.DefiningOp is not { Dialect: "tensor" } op
            || op.GetAttr("remat") is not { } layer
            || op.Name == "tensor.param"
            || op.Results.Count != 1
        )
            return v;
        // A value the rest of the program reads (the layer's output) is the checkpoint the next layer recomputes
        // from: it is kept, and recomputation never reaches back into earlier layers.
        if (
            v.Uses.Any(u =>
                u.Op.Dialect != "train" && u.Op.GetAttr("recompute") is null && !Equals(u.Op.GetAttr("remat"), layer)
            )
        )
            return v;
        if (_recomputed.TryGetValue(v, out var r))
            return r;
        var operands = op.Operands.Select(Fwd).ToArray();
        // Marked as a recomputation, so CSE does not merge it back into the forward op it copies.
        var attrs = op.Attributes.Where(a => a.Key != "remat").Append(new("recompute", op.GetAttr("remat")!));
        var copy = b.Create(op.Name, operands, attrs, [op.Result.TensorType.WithSharding(null)]);
        copy.Location = op.Location;
        copy.Result.NameHint = v.NameHint == null ? null : v.NameHint + ".remat";
        return _recomputed[v] = copy.Result;
    }

    private Value GeluDerivative(Value x)
    {
        // d/dx 0.5 x (1 + tanh(u)), u = c (x + k x^3): 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 k x^2).
        const double c = 0.7978845608028654,
            k = 0.044715;
        var x2 = Mul(x, x);
        var t = Un("tensor.tanh", MulC(Add(x, MulC(Mul(x2, x), k)), c));
        var left = MulC(AddC(t, 1), 0.5);
        var right = Mul(MulC(Mul(x, RSubC(1, Mul(t, t))), 0.5 * c), AddC(MulC(x2, 3 * k), 1));
        return Add(left, right);
    }

    private Value?[] LayerNorm(Operation op, Value dy, Value x, Value g, double eps, bool rms)
    {
        var last = new long[] { -1 };
        var centered = rms ? x : Sub(x, Reduce("tensor.mean", x, last, keep: true));
        var rstd = Un("tensor.rsqrt", AddC(Reduce("tensor.mean", Mul(centered, centered), last, keep: true), eps));
        var xhat = Mul(centered, rstd);
        var lead = Enumerable.Range(0, x.TensorType.Rank - 1).Select(i => (long)i).ToArray();
        Value SumLead(Value v) => lead.Length == 0 ? v : Reduce("tensor.sum", v, lead, keep: false);
        var dxhat = Mul(dy, g);
        var inner = Sub(dxhat, Mul(xhat, Reduce("tensor.mean", Mul(dxhat, xhat), last, keep: true)));
        if (!rms)
            inner = Sub(inner, Reduce("tensor.mean", dxhat, last, keep: true));
        var dx = Mul(rstd, inner);
        var dg = SumLead(Mul(dy, xhat));
        return rms ? [dx, dg] : [dx, dg, SumLead(dy)];
    }

    /// <summary>numpy matmul's gradient: 1-D operands promoted as in the forward op, batch dimensions summed
    /// back.</summary>
    private Value?[] Matmul(Operation op, Value dy, Value a, Value bv)
    {
        var (ta, tb) = (op.OperandType(0), op.OperandType(1));
        var a2 = ta.Rank == 1 ? Reshape(a, [1, ta.Shape[0]]) : a;
        var b2 = tb.Rank == 1 ? Reshape(bv, [tb.Shape[0], 1]) : bv;
        var dyShape = op.Result.TensorType.ShapeArray.ToList();
        if (ta.Rank == 1)
            dyShape.Insert(dyShape.Count - (tb.Rank == 1 ? 0 : 1), 1);
        if (tb.Rank == 1)
            dyShape.Add(1);
        var dy2 = Reshape(dy, dyShape);
        var da = b.CreateValue("tensor.matmul", [dy2, SwapLast(b2)]);
        var db = b.CreateValue("tensor.matmul", [SwapLast(a2), dy2]);
        return [Reshape(Unbroadcast(da, a2), ta.Shape), Reshape(Unbroadcast(db, b2), tb.Shape)];
    }

    private Value SwapLast(Value v)
    {
        int r = v.TensorType.Rank;
        var perm = Enumerable
            .Range(0, r)
            .Select(i =>
                (long)(
                    i == r - 1 ? r - 2
                    : i == r - 2 ? r - 1
                    : i
                )
            );
        return b.CreateValue("tensor.transpose", [v], [new("perm", Attr.Ints(perm))]);
    }

    /// <summary>A reduction's adjoint spread back over the reduced axes (times <paramref name="scale"/>).</summary>
    private Value Spread(Operation op, Value dy, double scale)
    {
        var x = op.OperandType(0);
        var keep = x.ShapeArray;
        foreach (long a in op.IntsAttr("axes"))
            keep[a] = 1;
        var r = b.CreateValue("tensor.broadcast", [Reshape(dy, keep)], [new("shape", Attr.Ints(x.Shape))]);
        return scale == 1.0 ? r : MulC(r, scale);
    }

    /// <summary>Sums a broadcast result's adjoint back to the shape of the operand that was broadcast.</summary>
    private Value Unbroadcast(Value g, Value operand)
    {
        var target = operand.TensorType.Shape;
        var shape = g.TensorType.Shape;
        int lead = shape.Count - target.Count;
        var axes = Enumerable
            .Range(0, shape.Count)
            .Where(i => i < lead || (target[i - lead] == 1 && shape[i] != 1))
            .Select(i => (long)i)
            .ToArray();
        if (axes.Length == 0)
            return g;
        return Reshape(Reduce("tensor.sum", g, axes, keep: true), target);
    }

    private Value Reshape(Value v, IReadOnlyList<long> shape) =>
        v.TensorType.Shape.SequenceEqual(shape)
            ? v
            : b.CreateValue("tensor.reshape", [v], [new("shape", Attr.Ints(shape))]);

    private Value Reduce(string name, Value v, long[] axes, bool keep) =>
        b.CreateValue(name, [v], [new("axes", Attr.Ints(axes)), new("keepdims", Attr.Bool(keep))]);

    private Value Un(string name, Value v) => b.CreateValue(name, [v]);

    private Value Neg(Value v) => Un("tensor.neg", v);

    private Value Add(Value x, Value y) => b.CreateValue("tensor.add", [x, y]);

    private Value Sub(Value x, Value y) => b.CreateValue("tensor.sub", [x, y]);

    private Value Mul(Value x, Value y) => b.CreateValue("tensor.mul", [x, y]);

    private Value Div(Value x, Value y) => b.CreateValue("tensor.div", [x, y]);

    private Value C(Value like, double c) =>
        b.CreateValue("tensor.constant", [], [new("value", Attr.Float(c))], TensorType.Scalar(like.TensorType.DType));

    private Value MulC(Value v, double c) => Mul(v, C(v, c));

    private Value AddC(Value v, double c) => Add(v, C(v, c));

    private Value RSubC(double c, Value v) => Sub(C(v, c), v);
}
