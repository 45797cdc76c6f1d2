using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Lowering;

public sealed partial class Elaborator
{
    private EValue Eval(Expr e, Scope scope)
    {
        switch (e)
        {
            case IntLit i:
                return new IntVal(i.Value);
            case FloatLit f:
                return new FloatVal(f.Value);
            case BoolLit b:
                return new BoolVal(b.Value);
            case StringLit s:
                return new StringVal(s.Value);
            case ShardExpr sh:
                return new ShardVal(sh.Spec);
            case ListExpr l:
                return new ListVal(l.Items.Select(x => Eval(x, scope)).ToList(), l.Items);
            case NameExpr n:
                return Lookup(n, scope) is var found and not ErrorVal ? found : throw new ReportedException();
            case NegExpr n:
                return Eval(n.Operand, scope) switch
                {
                    IntVal i => new IntVal(Checked(() => -i.Value, n.Span)),
                    FloatVal f => new FloatVal(-f.Value),
                    TensorVal t => Op("tensor.neg", n.Span, t.Value),
                    var v => throw Error(n.Span, $"cannot negate {v.Describe()}"),
                };
            case BinaryExpr b:
                return Binary(b, Eval(b.Left, scope), Eval(b.Right, scope));
            case CallExpr c:
                if (_blocks.TryGetValue(c.Callee, out var layer))
                {
                    if (scope.Instance == null)
                        throw Error(c.Span, $"layer '{c.Callee}' cannot be called in a const expression");
                    return new TensorVal(CallLayer(c, layer, scope));
                }
                return CallBuiltin(c, scope);
            default:
                throw Error(e.Span, "unsupported expression");
        }
    }

    private EValue Lookup(NameExpr n, Scope scope)
    {
        var owner = scope.Find(n.Name);
        if (owner != null)
            return owner.Vars[n.Name];
        if (_consts.ContainsKey(n.Name))
            return ConstEValue(n.Name, n.Span);
        if (_blocks.ContainsKey(n.Name))
            throw Error(n.Span, $"'{n.Name}' is a layer; call it with arguments");
        if (scope.Instance == null && scope == Scope.Global)
            throw Error(n.Span, $"'{n.Name}' is not a const (only consts may appear here)");
        throw Error(n.Span, $"'{n.Name}' is not defined");
    }

    private long Checked(Func<long> f, TextSpan span)
    {
        try
        {
            return f();
        }
        catch (OverflowException)
        {
            throw Error(span, "integer overflow in a compile-time expression");
        }
    }

    private EValue Binary(BinaryExpr b, EValue l, EValue r)
    {
        if (l is IntVal li && r is IntVal ri)
            return new IntVal(IntArith(b, li.Value, ri.Value));
        if (l is IntVal or FloatVal && r is IntVal or FloatVal)
        {
            double x = AsDouble(l),
                y = AsDouble(r);
            return Finite(
                x,
                y,
                b.OpSpan,
                b.Op switch
                {
                    "+" => x + y,
                    "-" => x - y,
                    "*" => x * y,
                    "/" => y == 0 ? throw Error(b.OpSpan, "division by zero in a compile-time expression") : x / y,
                    "%" => y == 0
                        ? throw Error(b.OpSpan, "division by zero in a compile-time expression")
                        : x - Math.Floor(x / y) * y,
                    _ => throw Error(b.OpSpan, "'@' needs tensors on both sides"),
                }
            );
        }
        if (l is TensorVal || r is TensorVal)
        {
            if (l is not (TensorVal or IntVal or FloatVal) || r is not (TensorVal or IntVal or FloatVal))
                throw Error(b.OpSpan, $"cannot apply '{b.Op}' to {l.Describe()} and {r.Describe()}");
            var dtype = (l as TensorVal ?? (TensorVal)r).Type.DType;
            var lv = AsTensor(l, dtype, b.Left.Span);
            var rv = AsTensor(r, dtype, b.Right.Span);
            string op = b.Op switch
            {
                "+" => "tensor.add",
                "-" => "tensor.sub",
                "*" => "tensor.mul",
                "/" => "tensor.div",
                "%" => "tensor.rem",
                _ => "tensor.matmul",
            };
            if (op == "tensor.matmul" && (l is not TensorVal || r is not TensorVal))
                throw Error(b.OpSpan, "'@' needs tensors on both sides");
            return Op(op, b.OpSpan, lv, rv);
        }
        throw Error(b.OpSpan, $"cannot apply '{b.Op}' to {l.Describe()} and {r.Describe()}");
    }

    /// <summary>A folded float: overflow to infinity from finite operands is an error, as integer overflow
    /// is.</summary>
    private FloatVal Finite(double x, double y, TextSpan span, double result) =>
        double.IsFinite(result) || !double.IsFinite(x) || !double.IsFinite(y)
            ? new FloatVal(result)
            : throw Error(span, "float overflow in a compile-time expression (beyond the range of a 64-bit float)");

    private long IntArith(BinaryExpr b, long x, long y)
    {
        if (b.Op is "/" or "%" && y == 0)
            throw Error(b.OpSpan, "division by zero in a compile-time expression");
        return Checked(
            () =>
                b.Op switch
                {
                    "+" => checked(x + y),
                    "-" => checked(x - y),
                    "*" => checked(x * y),
                    // Python's // and %: the quotient rounds toward minus infinity, the remainder
                    // takes the divisor's sign.
                    "/" => FloorDiv(x, y),
                    "%" => checked(x - FloorDiv(x, y) * y),
                    _ => throw Error(b.OpSpan, "'@' needs tensors on both sides"),
                },
            b.OpSpan
        );
    }

    private static long FloorDiv(long x, long y)
    {
        if (x == long.MinValue && y == -1)
            throw new OverflowException();
        long q = x / y;
        return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
    }

    private static double AsDouble(EValue v) => v is IntVal i ? i.Value : ((FloatVal)v).Value;

    /// <summary>A tensor operand; a number becomes a scalar constant of the other operand's element type.</summary>
    private Value AsTensor(EValue v, DType dtype, TextSpan span)
    {
        switch (v)
        {
            case TensorVal t:
                return t.Value;
            case IntVal i when dtype == DType.I32:
                if (i.Value < int.MinValue || i.Value > int.MaxValue)
                    throw Error(span, $"{i.Value} does not fit in i32");
                return Constant(i.Value, dtype);
            case IntVal i:
                return Constant(Fits(i.Value, dtype, span), dtype);
            case FloatVal f when dtype.IsFloat():
                return Constant(Fits(f.Value, dtype, span), dtype);
            case FloatVal f:
                throw Error(span, $"cannot combine the float {f.Value} with an i32 tensor");
            default:
                throw Error(span, $"expected a tensor or a number, got {v.Describe()}");
        }
    }

    /// <summary>A finite number that the tensor's float type would turn into infinity is an error, not a silent
    /// inf.</summary>
    private double Fits(double value, DType dtype, TextSpan span) =>
        !dtype.IsFloat() || !double.IsFinite(value) || float.IsFinite(dtype.Round((float)value))
            ? value
            : throw Error(
                span,
                $"{value.ToString("G", System.Globalization.CultureInfo.InvariantCulture)} does not fit in "
                    + $"{dtype.Name()}: it would be infinite"
            );

    private Value Constant(double value, DType dtype)
    {
        Attr a = dtype.IsFloat() ? Attr.Float(dtype.Round((float)value)) : Attr.Int((long)value);
        return _b.CreateValue("tensor.constant", [], [new("value", a)], TensorType.Scalar(dtype));
    }

    /// <summary>Creates an op at <paramref name="span"/>, turning shape errors into diagnostics there.</summary>
    private TensorVal Op(string name, TextSpan span, params Value[] operands) => Op(name, span, operands, null);

    private TensorVal Op(
        string name,
        TextSpan span,
        Value[] operands,
        IEnumerable<KeyValuePair<string, Attr>>? attrs,
        MplType? type = null
    )
    {
        var saved = _b.Location;
        _b.Location = Loc(span);
        try
        {
            return new TensorVal(_b.CreateValue(name, operands, attrs, type));
        }
        catch (IRException e)
        {
            throw Error(span, e.Message);
        }
        finally
        {
            _b.Location = saved;
        }
    }
}
