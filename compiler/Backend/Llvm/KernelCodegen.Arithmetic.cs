using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>The arithmetic of kernel expressions: binary and unary ops, conversions, comparisons, rounding.</summary>
public sealed unsafe partial class KernelCodegen
{
    private LLVMValueRef Binary(string op, KType t, LLVMValueRef a, LLVMValueRef c)
    {
        if (t is KType.F32 or KType.F64)
            return op switch
            {
                "add" => LLVM.BuildFAdd(_b, a, c, ""),
                "sub" => LLVM.BuildFSub(_b, a, c, ""),
                "mul" => LLVM.BuildFMul(_b, a, c, ""),
                "div" => LLVM.BuildFDiv(_b, a, c, ""),
                "rem" => FloatRem(a, c, ElementType(t)),
                "max" => LLVM.BuildSelect(_b, LLVM.BuildFCmp(_b, LLVMRealPredicate.UGT, a, c, ""), a, c, ""),
                "min" => LLVM.BuildSelect(_b, LLVM.BuildFCmp(_b, LLVMRealPredicate.ULT, a, c, ""), a, c, ""),
                _ => throw new IRException($"no float op {op}"),
            };
        if (t == KType.Index)
            return op switch
            {
                "add" => LLVM.BuildAdd(_b, a, c, ""),
                "sub" => LLVM.BuildSub(_b, a, c, ""),
                "mul" => LLVM.BuildMul(_b, a, c, ""),
                "div" => LLVM.BuildSDiv(_b, a, c, ""),
                "rem" => LLVM.BuildSRem(_b, a, c, ""),
                _ => throw new IRException($"no index op {op}"),
            };
        return op switch
        {
            "add" => LLVM.BuildAdd(_b, a, c, ""),
            "sub" => LLVM.BuildSub(_b, a, c, ""),
            "mul" => LLVM.BuildMul(_b, a, c, ""),
            "div" => IntFloorDiv(a, c, rem: false),
            "rem" => IntFloorDiv(a, c, rem: true),
            "max" => LLVM.BuildSelect(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SGT, a, c, ""), a, c, ""),
            "min" => LLVM.BuildSelect(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, a, c, ""), a, c, ""),
            _ => throw new IRException($"no i32 op {op}"),
        };
    }

    /// <summary>numpy's float remainder: the sign of the divisor.</summary>
    private LLVMValueRef FloatRem(LLVMValueRef a, LLVMValueRef c, LLVMTypeRef ty)
    {
        var r = LLVM.BuildFRem(_b, a, c, "");
        var zero = LLVM.ConstReal(ty, 0);
        var nonzero = LLVM.BuildFCmp(_b, LLVMRealPredicate.ONE, r, zero, "");
        var signs = LLVM.BuildXor(
            _b,
            LLVM.BuildFCmp(_b, LLVMRealPredicate.OLT, r, zero, ""),
            LLVM.BuildFCmp(_b, LLVMRealPredicate.OLT, c, zero, ""),
            ""
        );
        return LLVM.BuildSelect(_b, LLVM.BuildAnd(_b, nonzero, signs, ""), LLVM.BuildFAdd(_b, r, c, ""), r, "");
    }

    /// <summary>numpy's int32 floor division and remainder: x / 0 = x % 0 = 0, INT_MIN / -1 wraps.</summary>
    private LLVMValueRef IntFloorDiv(LLVMValueRef a, LLVMValueRef c, bool rem)
    {
        var zero = LLVM.ConstInt(_i32, 0, 0);
        var minusOne = LLVM.ConstInt(_i32, unchecked((ulong)-1), 1);
        var bad = LLVM.BuildOr(
            _b,
            LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, c, zero, ""),
            LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, c, minusOne, ""),
            ""
        );
        // Divide by a safe divisor, then fix up the cases numpy defines differently.
        var safe = LLVM.BuildSelect(_b, bad, LLVM.ConstInt(_i32, 1, 0), c, "");
        var q = LLVM.BuildSDiv(_b, a, safe, "");
        var r = LLVM.BuildSRem(_b, a, safe, "");
        var adjust = LLVM.BuildAnd(
            _b,
            LLVM.BuildICmp(_b, LLVMIntPredicate.NE, r, zero, ""),
            LLVM.BuildXor(
                _b,
                LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, r, zero, ""),
                LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, safe, zero, ""),
                ""
            ),
            ""
        );
        if (rem)
        {
            var fixedR = LLVM.BuildSelect(_b, adjust, LLVM.BuildAdd(_b, r, safe, ""), r, "");
            return LLVM.BuildSelect(_b, bad, zero, fixedR, "");
        }
        var fixedQ = LLVM.BuildSelect(_b, adjust, LLVM.BuildSub(_b, q, LLVM.ConstInt(_i32, 1, 0), ""), q, "");
        var byMinusOne = LLVM.BuildSub(_b, zero, a, ""); // wraps for INT_MIN, as numpy
        return LLVM.BuildSelect(
            _b,
            LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, c, zero, ""),
            zero,
            LLVM.BuildSelect(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, c, minusOne, ""), byMinusOne, fixedQ, ""),
            ""
        );
    }

    private LLVMValueRef Unary(string op, KType t, LLVMValueRef x)
    {
        var ty = ElementType(t);
        switch (op)
        {
            case "neg":
                return t == KType.I32 ? LLVM.BuildSub(_b, LLVM.ConstInt(_i32, 0, 0), x, "") : LLVM.BuildFNeg(_b, x, "");
            case "isnan":
                return LLVM.BuildFCmp(_b, LLVMRealPredicate.UNO, x, x, "");
        }
        if (_target == KernelTarget.Ptx)
            return PtxMath(op, t, x);
        string suffix = t == KType.F64 ? "f64" : "f32";
        return op switch
        {
            "exp" => Call($"llvm.exp.{suffix}", ty, [x]),
            "log" => Call($"llvm.log.{suffix}", ty, [x]),
            "sqrt" => Call($"llvm.sqrt.{suffix}", ty, [x]),
            "tanh" => Call(t == KType.F64 ? "tanh" : "tanhf", ty, [x]),
            _ => throw new IRException($"no unary op {op}"),
        };
    }

    /// <summary>GPU math from PTX's approximate base-2 exponent and logarithm (no libm on the device).</summary>
    private LLVMValueRef PtxMath(string op, KType t, LLVMValueRef x)
    {
        if (t == KType.F64)
        {
            var r = PtxMath(op, KType.F32, LLVM.BuildFPTrunc(_b, x, _f32, ""));
            return LLVM.BuildFPExt(_b, r, _f64, "");
        }
        LLVMValueRef C(double v) => LLVM.ConstReal(_f32, v);
        switch (op)
        {
            case "exp":
                return Call("llvm.nvvm.ex2.approx.f", _f32, [LLVM.BuildFMul(_b, x, C(1.4426950408889634), "")]);
            case "log":
                return LLVM.BuildFMul(_b, Call("llvm.nvvm.lg2.approx.f", _f32, [x]), C(0.6931471805599453), "");
            case "sqrt":
                return Call("llvm.sqrt.f32", _f32, [x]);
            case "tanh":
                // tanh x = 1 - 2 / (e^(2x) + 1): exact at both infinities.
                var e2 = PtxMath("exp", KType.F32, LLVM.BuildFMul(_b, x, C(2), ""));
                return LLVM.BuildFSub(_b, C(1), LLVM.BuildFDiv(_b, C(2), LLVM.BuildFAdd(_b, e2, C(1), ""), ""), "");
            default:
                throw new IRException($"no unary op {op}");
        }
    }

    private LLVMValueRef Convert(LLVMValueRef v, KType from, KType to)
    {
        if (from == to)
            return v;
        bool fromFloat = from is KType.F32 or KType.F64,
            toFloat = to is KType.F32 or KType.F64;
        if (from == KType.Bool)
            return toFloat
                ? LLVM.BuildSelect(_b, v, LLVM.ConstReal(ElementType(to), 1), LLVM.ConstReal(ElementType(to), 0), "")
                : LLVM.BuildZExt(_b, v, ElementType(to), "");
        if (fromFloat && toFloat)
            return to == KType.F64 ? LLVM.BuildFPExt(_b, v, _f64, "") : LLVM.BuildFPTrunc(_b, v, _f32, "");
        if (!fromFloat && toFloat)
            return LLVM.BuildSIToFP(_b, v, ElementType(to), "");
        if (fromFloat)
            return LLVM.BuildFPToSI(_b, v, ElementType(to), "");
        return to == KType.Index ? LLVM.BuildSExt(_b, v, _i64, "") : LLVM.BuildTrunc(_b, v, _i32, "");
    }

    private LLVMValueRef Compare(string pred, KType t, LLVMValueRef a, LLVMValueRef c)
    {
        if (t is KType.F32 or KType.F64)
        {
            var p = pred switch
            {
                "lt" => LLVMRealPredicate.OLT,
                "le" => LLVMRealPredicate.OLE,
                "gt" => LLVMRealPredicate.OGT,
                "ge" => LLVMRealPredicate.OGE,
                "eq" => LLVMRealPredicate.OEQ,
                "ne" => LLVMRealPredicate.UNE,
                _ => throw new IRException($"no comparison {pred}"),
            };
            return LLVM.BuildFCmp(_b, p, a, c, "");
        }
        var ip = pred switch
        {
            "lt" => LLVMIntPredicate.SLT,
            "le" => LLVMIntPredicate.SLE,
            "gt" => LLVMIntPredicate.SGT,
            "ge" => LLVMIntPredicate.SGE,
            "eq" => LLVMIntPredicate.EQ,
            "ne" => LLVMIntPredicate.NE,
            _ => throw new IRException($"no comparison {pred}"),
        };
        return LLVM.BuildICmp(_b, ip, a, c, "");
    }

    /// <summary>Rounds an f32 to f16 (through LLVM's half) or bf16 (round to nearest even on the bits, NaN
    /// kept).</summary>
    private LLVMValueRef Round(DType to, LLVMValueRef x)
    {
        if (to == DType.F16)
            return LLVM.BuildFPExt(_b, LLVM.BuildFPTrunc(_b, x, LLVM.HalfTypeInContext(_ctx), ""), _f32, "");
        var bits = LLVM.BuildBitCast(_b, x, _i32, "");
        var lsb = LLVM.BuildAnd(
            _b,
            LLVM.BuildLShr(_b, bits, LLVM.ConstInt(_i32, 16, 0), ""),
            LLVM.ConstInt(_i32, 1, 0),
            ""
        );
        var rounded = LLVM.BuildAnd(
            _b,
            LLVM.BuildAdd(_b, bits, LLVM.BuildAdd(_b, lsb, LLVM.ConstInt(_i32, 0x7FFF, 0), ""), ""),
            LLVM.ConstInt(_i32, 0xFFFF0000, 0),
            ""
        );
        var r = LLVM.BuildBitCast(_b, rounded, _f32, "");
        return LLVM.BuildSelect(_b, LLVM.BuildFCmp(_b, LLVMRealPredicate.UNO, x, x, ""), x, r, "");
    }

    // ---- small helpers over the builder ----

    /// <summary>The larger of <paramref name="v"/> and <paramref name="acc"/>; a NaN wins and then stays (v is taken
    /// when larger or NaN).</summary>
    private LLVMValueRef Max(LLVMValueRef v, LLVMValueRef acc, bool isInt)
    {
        var better = isInt
            ? LLVM.BuildICmp(_b, LLVMIntPredicate.SGT, v, acc, "")
            : LLVM.BuildOr(
                _b,
                LLVM.BuildFCmp(_b, LLVMRealPredicate.OGT, v, acc, ""),
                LLVM.BuildFCmp(_b, LLVMRealPredicate.UNO, v, v, ""),
                ""
            );
        return LLVM.BuildSelect(_b, better, v, acc, "");
    }
}
