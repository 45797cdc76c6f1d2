using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// The per-device form of an op whose exchanged factor (<see cref="FactorKind.Exchanged"/>) is split, which
/// spmdize writes in its place. Each device holds a block of the classes; what every position needs from all of
/// them is reduced over the factor's axes:
/// <list type="bullet">
/// <item>softmax: the block's maximum, all-reduced by max, then the sum of the exponentials, all-reduced by sum;</item>
/// <item>cross_entropy: the same two, giving logsumexp, and the label's logit (held by one block, zero in the
/// others), all-reduced by sum as its finite part and whether it is finite, so that a masked logit gives the
/// infinite loss of one device rather than NaN; the loss is the mean of the difference (Megatron-LM's
/// vocabulary-parallel cross-entropy);</item>
/// <item>one_hot: the block of the rows that starts at this device's first class.</item>
/// </list>
/// The collectives move a few values per position instead of gathering the classes.
/// </summary>
public static class ExchangeLowering
{
    /// <summary>The mesh axes that split the exchanged factor of <paramref name="op"/> in its global layout (empty
    /// when the op has none or it is whole).</summary>
    public static IReadOnlyList<string> SplitAxes(Operation op, DeviceMesh mesh)
    {
        if (FactorSharding.RuleOf(op) is not { } rule)
            return [];
        int f = Enumerable.Range(0, rule.NumFactors).FirstOrDefault(i => rule.Kinds[i] == FactorKind.Exchanged, -1);
        if (f < 0)
            return [];
        var tensors = op.Operands.Concat(op.Results).ToArray();
        var dims = rule.Tensors.ToArray();
        for (int t = 0; t < tensors.Length && t < dims.Length; t++)
            if (dims[t].Any(d => d.Contains(f)) && tensors[t].TensorType.Sharding is { } s)
                return FactorSharding.Read(rule, dims[t], s, mesh)[f];
        return [];
    }

    /// <summary>Replaces <paramref name="op"/>, its results already made local, by its per-device form over
    /// <paramref name="axes"/>; returns the value that stands for its result.</summary>
    public static Value Expand(Operation op, IReadOnlyList<string> axes, Builder b, DeviceMesh mesh)
    {
        b.SetInsertionPointBefore(op);
        var marks = op.Attributes.Where(a => a.Key is "stage" or "phase" or "remat" or "recompute").ToArray();
        var e = new Emitter(b, marks, axes, mesh);
        var result = op.Name switch
        {
            "tensor.softmax" => e.Softmax(op.Operands[0], (int)op.IntAttr("axis")),
            "tensor.cross_entropy" => e.CrossEntropy(op.Operands[0], op.Operands[1]),
            "tensor.one_hot" => e.OneHot(op.Operands[0], op.Result.TensorType),
            _ => throw new IRException($"spmdize: {op.Name} has no per-device form for a split exchanged factor"),
        };
        result.NameHint ??= op.Result.NameHint;
        op.Result.ReplaceAllUsesWith(result);
        op.Erase();
        return result;
    }

    private sealed class Emitter(
        Builder b,
        KeyValuePair<string, Attr>[] marks,
        IReadOnlyList<string> axes,
        DeviceMesh mesh
    )
    {
        private Value V(
            string name,
            IReadOnlyList<Value> operands,
            KeyValuePair<string, Attr>[]? attrs = null,
            MplType? type = null
        ) => b.CreateValue(name, operands, (attrs ?? []).Concat(marks), type);

        private static KeyValuePair<string, Attr>[] Over(int axis) =>
            [new("axes", Attr.Ints([axis])), new("keepdims", Attr.Bool(true))];

        private Value AllReduce(Value x, string reduction) =>
            V("dist.all_reduce", [x], [new("axes", Attr.Strs(axes)), new("reduction", Attr.Str(reduction))], x.Type);

        /// <summary>The maximum over the whole axis and the exponentials of x less it, with their whole sum.</summary>
        private (Value Max, Value Exp, Value Sum) Exponentials(Value x, int axis)
        {
            var max = AllReduce(V("tensor.max", [x], Over(axis)), "max");
            var exp = V("tensor.exp", [V("tensor.sub", [x, max])]);
            return (max, exp, AllReduce(V("tensor.sum", [exp], Over(axis)), "sum"));
        }

        public Value Softmax(Value x, int axis)
        {
            var (_, exp, sum) = Exponentials(x, axis);
            return V("tensor.div", [exp, sum]);
        }

        public Value CrossEntropy(Value logits, Value labels)
        {
            var t = logits.TensorType;
            int last = t.Rank - 1;
            var (max, _, sum) = Exponentials(logits, last);
            var lse = V("tensor.add", [V("tensor.log", [sum]), max]);
            var onehot = OneHot(labels, t);
            // The label's logit, summed over the blocks (zero in all but the one holding it). A masked logit (-inf)
            // times a zero of the one-hot row would be NaN, so the finite part is picked, and the log of whether the
            // label's logit is finite (1 or 0: exp(x - x) is NaN where x is not) adds -inf where it is not, as one
            // device's cross-entropy does: log 1 = 0 leaves a finite logit bit for bit.
            var finite = V("tensor.finite_or_zero", [logits]);
            var isFinite = V("tensor.finite_or_zero", [V("tensor.exp", [V("tensor.sub", [logits, logits])])]);
            var picked = V(
                "tensor.add",
                [
                    AllReduce(V("tensor.sum", [V("tensor.mul", [finite, onehot])], Over(last)), "sum"),
                    V(
                        "tensor.log",
                        [AllReduce(V("tensor.sum", [V("tensor.mul", [isFinite, onehot])], Over(last)), "sum")]
                    ),
                ]
            );
            return V(
                "tensor.mean",
                [V("tensor.sub", [lse, picked])],
                [new("axes", Attr.Ints(Enumerable.Range(0, t.Rank).Select(d => (long)d).ToArray()))]
            );
        }

        /// <summary>This device's block of one-hot rows: classes from its first one.</summary>
        public Value OneHot(Value labels, TensorType block)
        {
            long classes = block.Shape[^1];
            return V(
                "tensor.one_hot",
                [labels, FirstClass(classes)],
                [new("classes", Attr.Int(classes)), new("total", Attr.Int(classes * mesh.Product(axes)))],
                block
            );
        }

        /// <summary>The first class of this device's block (an i32 scalar): the block starts of every member, made
        /// as constants, of which the device keeps its own.</summary>
        private Value FirstClass(long classes)
        {
            long n = mesh.Product(axes);
            var one = new TensorType(DType.I32, [1]);
            var starts = Enumerable
                .Range(0, (int)n)
                .Select(k => V("tensor.constant", [], [new("value", Attr.Int(k * classes))], one))
                .ToArray();
            var all = n == 1 ? starts[0] : V("tensor.concat", starts, [new("axis", Attr.Int(0))]);
            var mine = V("dist.all_slice", [all], [new("axes", Attr.Strs(axes)), new("dim", Attr.Int(0))], one);
            return V("tensor.reshape", [mine], [new("shape", Attr.Ints([]))], TensorType.Scalar(DType.I32));
        }
    }
}
