using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Gpu;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>
/// The kernels collectives run on a GPU, the same for every program (their sizes are arguments): the elementwise
/// sum or maximum of n arrays of one GPU, whose addresses a table in device memory holds (f16 and bf16 rounded
/// after every addition, as the interpreter rounds a chain of adds), and a strided block copy that slices,
/// concatenates and reorders arrays along any dimension. All use a grid-stride loop over the elements.
/// </summary>
public sealed unsafe partial class KernelCodegen
{
    /// <summary>Adds every collective kernel (<see cref="CollectiveKernels"/>) to the module (GPU and host-grid
    /// targets).</summary>
    public void EmitCollectiveKernels()
    {
        if (_target == KernelTarget.Cpu)
            throw new InvalidOperationException(
                "collective kernels run on GPUs (and " + "their host-grid emulation) only"
            );
        foreach (var dtype in new[] { DType.F32, DType.F16, DType.BF16, DType.I32 })
            EmitReduceKernel(ReduceKind.Sum, dtype);
        EmitReduceKernel(ReduceKind.Max, DType.F32);
        EmitReduceKernel(ReduceKind.Max, DType.I32);
        EmitCopyBlocksKernel();
    }

    /// <summary>out[i] = x0[i] op x1[i] op ... for i &lt; count, the inputs' addresses in a table of n (params: out,
    /// table, n, count).</summary>
    private void EmitReduceKernel(ReduceKind kind, DType dtype)
    {
        bool isInt = dtype == DType.I32;
        var ty = isInt ? _i32 : _f32;
        var (ptrs, ints) = CollectiveParams(CollectiveKernels.Reduce(kind, dtype), 2, 2);
        var (output, table, n, count) = (ptrs[0], ptrs[1], ints[0], ints[1]);
        GridStride(
            count,
            idx =>
            {
                var acc = Load(ty, Gep(ty, TableEntry(table, Const64(0)), idx));
                var sum = Accumulate(
                    acc,
                    ty,
                    LLVM.BuildSub(_b, n, Const64(1), ""),
                    (k, a) =>
                    {
                        var v = Load(ty, Gep(ty, TableEntry(table, LLVM.BuildAdd(_b, k, Const64(1), "")), idx));
                        if (kind == ReduceKind.Max)
                            return Max(v, a, isInt);
                        if (isInt)
                            return LLVM.BuildAdd(_b, a, v, "");
                        var s = LLVM.BuildFAdd(_b, a, v, "");
                        return dtype == DType.F32 ? s : Round(dtype, s);
                    }
                );
                Store(sum, Gep(ty, output, idx));
            }
        );
        LLVM.BuildRetVoid(_b);
    }

    /// <summary>
    /// dst[o * dstStride + dstOffset + i] = src[o * srcStride + srcOffset + i] for o &lt; outer, i &lt; len, on 4-byte
    /// elements (params: dst, src, outer, len, srcStride, srcOffset, dstStride, dstOffset).
    /// </summary>
    private void EmitCopyBlocksKernel()
    {
        var (ptrs, a) = CollectiveParams(CollectiveKernels.CopyBlocks, 2, 6);
        var (dst, src) = (ptrs[0], ptrs[1]);
        var (outer, len, srcStride, srcOffset, dstStride, dstOffset) = (a[0], a[1], a[2], a[3], a[4], a[5]);
        GridStride(
            LLVM.BuildMul(_b, outer, len, ""),
            idx =>
            {
                var o = LLVM.BuildUDiv(_b, idx, len, "");
                var i = LLVM.BuildSub(_b, idx, LLVM.BuildMul(_b, o, len, ""), "");
                var from = LLVM.BuildAdd(
                    _b,
                    LLVM.BuildAdd(_b, LLVM.BuildMul(_b, o, srcStride, ""), srcOffset, ""),
                    i,
                    ""
                );
                var to = LLVM.BuildAdd(
                    _b,
                    LLVM.BuildAdd(_b, LLVM.BuildMul(_b, o, dstStride, ""), dstOffset, ""),
                    i,
                    ""
                );
                Store(Load(_i32, Gep(_i32, src, from)), Gep(_i32, dst, to));
            }
        );
        LLVM.BuildRetVoid(_b);
    }

    /// <summary>
    /// Starts a collective kernel named <paramref name="name"/> taking <paramref name="pointers"/> buffer pointers
    /// then <paramref name="scalars"/> i64 values: on the GPU as kernel parameters, on the host grid as entries
    /// of the argument table (scalars stored in pointer-sized entries).
    /// </summary>
    private (LLVMValueRef[] Pointers, LLVMValueRef[] Scalars) CollectiveParams(string name, int pointers, int scalars)
    {
        var global = LLVM.PointerType(_i8, _target == KernelTarget.Ptx ? 1u : 0u);
        if (_target == KernelTarget.Ptx)
        {
            _fn = AddFunction(
                name,
                _void,
                [.. Enumerable.Repeat(global, pointers), .. Enumerable.Repeat(_i64, scalars)]
            );
            LLVM.SetFunctionCallConv(_fn, 71);
            LaunchBounds(GpuThreads, 1);
            Position(Block("entry"));
            return (
                Enumerable.Range(0, pointers).Select(i => LLVM.GetParam(_fn, (uint)i)).ToArray(),
                Enumerable.Range(pointers, scalars).Select(i => LLVM.GetParam(_fn, (uint)i)).ToArray()
            );
        }
        _fn = AddFunction(name, _void, [LLVM.PointerType(_ptr, 0), LLVM.PointerType(_i64, 0)]);
        Position(Block("entry"));
        var table = LLVM.GetParam(_fn, 0);
        _registers = LLVM.GetParam(_fn, 1);
        return (
            Enumerable.Range(0, pointers).Select(i => Load(_ptr, Gep(_ptr, table, Const64(i)))).ToArray(),
            Enumerable.Range(pointers, scalars).Select(i => Load(_i64, Gep(_i64, table, Const64(i)))).ToArray()
        );
    }

    /// <summary>The buffer whose address is entry <paramref name="k"/> of a table of addresses in device
    /// memory.</summary>
    private LLVMValueRef TableEntry(LLVMValueRef table, LLVMValueRef k) =>
        LLVM.BuildIntToPtr(
            _b,
            Load(_i64, Gep(_i64, table, k)),
            LLVM.PointerType(_i8, _target == KernelTarget.Ptx ? 1u : 0u),
            ""
        );
}
