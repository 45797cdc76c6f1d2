using ParallelCompiler.IR;

namespace ParallelCompiler.Interp;

/// <summary>A failure while evaluating IR (an id out of range, a missing parameter).</summary>
public sealed class InterpreterException(string message) : Exception(message);

/// <summary>
/// The reference interpreter: evaluates a function of tensor IR on the host with numpy's semantics. It is the
/// oracle that every transformation and back end is compared against, so it favours clarity over speed.
/// </summary>
public static class Interpreter
{
    /// <summary>
    /// Runs <paramref name="func"/> on <paramref name="args"/> (one per function argument, in order);
    /// <paramref name="param"/> supplies the value of each <c>tensor.param</c>; <paramref name="effect"/> receives the
    /// value of each <c>train.grad</c> and <c>train.update</c> (required when the function has updates).
    /// </summary>
    public static IReadOnlyList<NDArray> Run(
        Operation func,
        IReadOnlyList<NDArray> args,
        Func<Operation, NDArray> param,
        Action<Operation, NDArray>? effect = null
    )
    {
        var entry = func.Regions[0].Entry;
        if (args.Count != entry.Arguments.Count)
            throw new InterpreterException(
                $"@{func.StringAttr("sym_name")} takes {entry.Arguments.Count} " + $"argument(s), got {args.Count}"
            );
        var env = new Dictionary<Value, NDArray>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < args.Count; i++)
        {
            var t = entry.Arguments[i].TensorType;
            if (args[i].DType != t.DType || !args[i].Shape.SequenceEqual(t.Shape))
                throw new InterpreterException($"argument {i} must be {t.ToSourceString()}, got {args[i].TypeString}");
            env[entry.Arguments[i]] = args[i];
        }
        foreach (var op in entry.Operations)
        {
            if (op.Name == "func.return")
                return op.Operands.Select(v => env[v]).ToArray();
            var inputs = op.Operands.Select(v => env[v]).ToArray();
            if (op.Dialect == "train")
            {
                if (effect == null && op.Name == "train.update")
                    throw new InterpreterException(
                        $"@{func.StringAttr("sym_name")} updates parameters: run it with a " + $"parameter store"
                    );
                effect?.Invoke(op, inputs[1]);
                continue;
            }
            var result = Evaluate(op, inputs, param);
            if (result != null)
                env[op.Result] = result;
        }
        throw new InterpreterException($"@{func.StringAttr("sym_name")} has no func.return");
    }

    /// <summary>Evaluates one operation on its operand values; null for ops without results.</summary>
    public static NDArray? Evaluate(Operation op, NDArray[] x, Func<Operation, NDArray> param)
    {
        switch (op.Name)
        {
            case "tensor.constant":
                return Splat(op);
            case "kernel.launch":
                var callee =
                    op.ParentOp?.ParentOp?.Function(op.StringAttr("callee"))
                    ?? throw new InterpreterException($"no kernel function @{op.StringAttr("callee")}");
                return Run(callee, x, param)[0];
            case "tensor.param":
                var p = param(op);
                var pt = op.Result.TensorType;
                if (p.DType != pt.DType || !p.Shape.SequenceEqual(pt.Shape))
                    throw new InterpreterException(
                        $"parameter '{op.StringAttr("path")}' must be " + $"{pt.ToSourceString()}, got {p.TypeString}"
                    );
                return p;
            case "tensor.add" or "tensor.sub" or "tensor.mul" or "tensor.div" or "tensor.rem":
                return ReferenceKernels.Binary(op, x[0], x[1]);
            case "tensor.neg"
            or "tensor.relu"
            or "tensor.gelu"
            or "tensor.silu"
            or "tensor.sigmoid"
            or "tensor.tanh"
            or "tensor.exp"
            or "tensor.log"
            or "tensor.sqrt"
            or "tensor.rsqrt"
            or "tensor.step"
            or "tensor.finite_or_zero"
            or "tensor.convert":
                return ReferenceKernels.Unary(op, x[0]);
            case "tensor.slice":
                return ArrayOps.Slice(x[0], (int)op.IntAttr("axis"), op.IntAttr("start"), op.IntAttr("length"));
            case "tensor.one_hot":
                return ReferenceKernels.OneHot(op, x[0], x.Length > 1 ? x[1] : null);
            case "tensor.embedding_grad":
                return ReferenceKernels.EmbeddingGrad(op, x[0], x[1]);
            case "tensor.sum" or "tensor.mean" or "tensor.max":
                return ReferenceKernels.Reduce(op, x[0]);
            case "tensor.softmax":
                return ReferenceKernels.Softmax(op, x[0]);
            case "tensor.layernorm":
                return ReferenceKernels.Norm(op, x[0], x[1], x[2]);
            case "tensor.rmsnorm":
                return ReferenceKernels.Norm(op, x[0], x[1], null);
            case "tensor.matmul":
                return ReferenceKernels.Matmul(op, x[0], x[1]);
            case "tensor.reshape":
                return ReferenceKernels.Reshape(op, x[0]);
            case "tensor.transpose":
                return ReferenceKernels.Transpose(op, x[0]);
            case "tensor.broadcast":
                return ReferenceKernels.Broadcast(op, x[0]);
            case "tensor.concat":
                return ReferenceKernels.Concat(op, x);
            case "tensor.embedding":
                return ReferenceKernels.Embedding(op, x[0], x[1]);
            case "tensor.causal_mask":
                return ReferenceKernels.CausalMask(op, x[0]);
            case "tensor.cross_entropy":
                return ReferenceKernels.CrossEntropy(op, x[0], x[1]);
            case "dist.reshard":
                return x[0]; // a layout change only; on one device the values are the same
            case "pipe.boundary":
                return null;
            default:
                throw new InterpreterException($"the interpreter has no rule for '{op.Name}'");
        }
    }

    private static NDArray Splat(Operation op)
    {
        var t = op.Result.TensorType;
        var a = NDArray.Zeros(t.DType, t.ShapeArray);
        switch (op.GetAttr("value"))
        {
            case FloatAttr f:
                Array.Fill(a.F!, t.DType.Round((float)f.Value));
                break;
            case IntAttr i:
                Array.Fill(a.I!, (int)i.Value);
                break;
        }
        return a;
    }
}
