using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.Kernels;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>
/// The GPU side of code generation: launch bounds for ptxas, which dimensions go to threads, grid-stride loops
/// (elementwise kernels four elements a trip), the stretches of a block's threads between barriers, and the special
/// registers (thread and block indices), read from PTX or, on the host grid, from the registers argument.
/// </summary>
public sealed unsafe partial class KernelCodegen
{
    /// <summary>Threads per block of the GPU kernels that are not tiled matmuls (and of the collective
    /// kernels).</summary>
    public const int GpuThreads = Runtime.Gpu.CollectiveKernels.BlockThreads;

    /// <summary>
    /// Tells ptxas the kernel's block size (<c>.maxntid</c>: it is never launched with more threads) and, when
    /// given, the blocks an SM must hold at once (<c>.minnctapersm</c>: registers are capped to fit them).
    /// </summary>
    private void LaunchBounds(int x, int y, int minBlocksPerSm = 0)
    {
        void Annotate(string key, int value)
        {
            var operands = stackalloc LLVMValueRef[]
            {
                _fn,
                LLVM.MDStringInContext(_ctx, key, (uint)key.Length),
                LLVM.ConstInt(_i32, (ulong)value, 0),
            };
            LLVM.AddNamedMetadataOperand(Module, "nvvm.annotations", LLVM.MDNodeInContext(_ctx, operands, 3));
        }
        Annotate("maxntidx", x);
        Annotate("maxntidy", y);
        Annotate("maxntidz", 1);
        if (minBlocksPerSm > 0)
            Annotate("minctasm", minBlocksPerSm);
    }

    /// <summary>
    /// The number of leading output dimensions the GPU spreads over threads: all of them, unless some reduction
    /// depends on fewer (a row statistic), in which case each thread takes whole rows.
    /// </summary>
    public static int ParallelDims(KernelSpec spec) => new KernelLevels(spec).ParallelDims;

    /// <summary>Elements one thread of an elementwise GPU kernel takes per trip of its grid-stride loop.</summary>
    public const int GpuUnroll = 4;

    /// <summary>
    /// The elements a thread of <paramref name="spec"/>'s GPU kernel takes at a time (its launch gives each thread
    /// that many): <see cref="GpuUnroll"/> for elementwise kernels, 1 for the rest (a thread per row or element).
    /// </summary>
    public static int ElementsPerThread(KernelSpec spec) =>
        spec.Matmul == null && ParallelDims(spec) == spec.Output.Shape.Length && !KernelLevels.HasReduction(spec.Body)
            ? GpuUnroll
            : 1;

    private void EmitGpu(int rank)
    {
        int p = ParallelDims(_spec);
        long total = _spec.Output.Shape.Take(p).Aggregate(1L, (a, x) => a * x);
        if (ElementsPerThread(_spec) > 1)
        {
            EmitGpuElementwise(rank, total);
            return;
        }
        GridStride(
            Const64(total),
            flat =>
            {
                var outer = _spec.Output.Shape.Take(p).ToArray();
                var scope = new Scope(null, 0);
                var parts = K.Unflatten(new KVar(-1), outer);
                _vars[-1] = flat;
                for (int d = 0; d < p; d++)
                    _vars[d] = Emit(parts[d], scope);
                var inner = new Scope(scope, p);
                for (int level = 0; level < p; level++)
                    EmitReductionsAt(level, _spec.Body, inner);
                EmitLoops(p, rank, inner);
            }
        );
    }

    /// <summary>
    /// An elementwise kernel (every output element on its own, no reduction): a grid-stride loop in which each
    /// thread takes <see cref="GpuUnroll"/> elements a grid apart per trip, computing all their values (their loads
    /// in flight together: one 4-byte load at a time per thread leaves a GPU's memory mostly idle) before storing
    /// them. Elements past the end are computed at the last index, so every load stays in bounds, and not stored.
    /// </summary>
    private void EmitGpuElementwise(int rank, long total)
    {
        var shape = _spec.Output.Shape;
        Threads(
            Sreg("ntid.x"),
            Const64(1),
            () =>
            {
                var (start, stride) = GridPosition();
                StridedLoop(
                    start,
                    Const64(total),
                    LLVM.BuildMul(_b, stride, Const64(GpuUnroll), ""),
                    first =>
                    {
                        var flats = new LLVMValueRef[GpuUnroll];
                        var values = new LLVMValueRef[GpuUnroll];
                        for (int u = 0; u < GpuUnroll; u++)
                        {
                            flats[u] =
                                u == 0
                                    ? first
                                    : LLVM.BuildAdd(_b, first, LLVM.BuildMul(_b, stride, Const64(u), ""), "");
                            var at =
                                u == 0
                                    ? first
                                    : LLVM.BuildSelect(
                                        _b,
                                        LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, flats[u], Const64(total), ""),
                                        flats[u],
                                        Const64(total - 1),
                                        ""
                                    );
                            var scope = new Scope(null, 0);
                            var parts = K.Unflatten(new KVar(-1), shape);
                            _vars[-1] = at;
                            for (int d = 0; d < rank; d++)
                                _vars[d] = Emit(parts[d], scope);
                            values[u] = Convert(
                                Emit(_spec.Body, new Scope(scope, rank)),
                                _spec.Body.Type,
                                _spec.Output.ElementType
                            );
                        }
                        var element = ElementType(_spec.Output.ElementType);
                        Store(values[0], Gep(element, _output, first));
                        for (int u = 1; u < GpuUnroll; u++)
                        {
                            var (store, next) = (Block("store"), Block("next"));
                            LLVM.BuildCondBr(
                                _b,
                                LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, flats[u], Const64(total), ""),
                                store,
                                next
                            );
                            Position(store);
                            Store(values[u], Gep(element, _output, flats[u]));
                            LLVM.BuildBr(_b, next);
                            Position(next);
                        }
                    }
                );
            }
        );
    }

    private LLVMValueRef _registers;
    private (LLVMValueRef X, LLVMValueRef Y)? _thread;

    /// <summary>
    /// Code every thread of a block runs, up to a barrier when <paramref name="barrier"/> (bar.sync after it on the
    /// GPU): on the GPU, <paramref name="body"/> once (each thread runs it); on the host grid, a loop over the
    /// block's <paramref name="nx"/> x <paramref name="ny"/> threads, so that the end of the loop is the barrier.
    /// In a kernel whose threads share memory every boundary between stretches is a barrier, so the host grid runs
    /// a schedule the GPU may run (the PTX tests check each bar.sync sits between its stretches). Values a stretch
    /// computes are per thread and do not outlive it.
    /// </summary>
    private void Threads(LLVMValueRef nx, LLVMValueRef ny, Action body, bool barrier = false)
    {
        if (_target != KernelTarget.HostGrid)
        {
            body();
            if (barrier)
                Call("llvm.nvvm.barrier0", _void, []);
            return;
        }
        if (_thread != null)
            throw new InvalidOperationException("thread loops do not nest");
        Loop(
            Const64(0),
            ny,
            y =>
                Loop(
                    Const64(0),
                    nx,
                    x =>
                    {
                        _thread = (x, y);
                        try
                        {
                            body();
                        }
                        finally
                        {
                            _thread = null;
                        }
                    }
                )
        );
    }

    private LLVMValueRef Sreg(string name)
    {
        if (_target == KernelTarget.HostGrid && name.StartsWith("tid.", StringComparison.Ordinal))
        {
            var t = _thread ?? throw new InvalidOperationException($"{name} read outside the threads of a block");
            return name == "tid.x" ? t.X
                : name == "tid.y" ? t.Y
                : Const64(0);
        }
        if (_target == KernelTarget.HostGrid)
            return Load(_i64, Gep(_i64, _registers, Const64(Runtime.Gpu.EmulatedGpu.Registers.ToList().IndexOf(name))));
        var v = Call($"llvm.nvvm.read.ptx.sreg.{name}", _i32, []);
        return LLVM.BuildZExt(_b, v, _i64, "");
    }

    /// <summary>for (i = blockIdx * blockDim + threadIdx; i &lt; n; i += gridDim * blockDim) body(i).</summary>
    private void GridStride(LLVMValueRef n, Action<LLVMValueRef> body) =>
        Threads(
            Sreg("ntid.x"),
            Const64(1),
            () =>
            {
                var (start, stride) = GridPosition();
                StridedLoop(start, n, stride, body);
            }
        );

    /// <summary>The thread's position in a one-dimensional grid (blockIdx * blockDim + threadIdx) and the grid's size
    /// in threads.</summary>
    private (LLVMValueRef Start, LLVMValueRef Stride) GridPosition() =>
        (
            LLVM.BuildAdd(_b, LLVM.BuildMul(_b, Sreg("ctaid.x"), Sreg("ntid.x"), ""), Sreg("tid.x"), ""),
            LLVM.BuildMul(_b, Sreg("nctaid.x"), Sreg("ntid.x"), "")
        );
}
