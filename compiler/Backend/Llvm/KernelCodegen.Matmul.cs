using ParallelCompiler.Backend.Kernels;
using ParallelCompiler.Backend.Llvm.Native;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>Tiled matmul kernels: register tiles on the CPU, shared-memory tiles on the GPU.</summary>
public sealed unsafe partial class KernelCodegen
{
    /// <summary>Columns of C one CPU register tile covers: two 8-wide vectors.</summary>
    public const int CpuTileN = 16;
    /// <summary>Rows of C one CPU register tile covers.</summary>
    public const int CpuTileM = 4;
    /// <summary>The side of a GPU tile (threads per block dimension and shared-memory tile).</summary>
    public const int GpuTile = 16;
    private const int Lanes = 8;

    /// <summary>
    /// C[b] = A[b] @ B[b] with C held in registers 4 rows by 16 columns at a time: for every k, two vectors of
    /// B's row k are multiplied by each row's A[i, k] and added (fused) into the tile; rows past the last
    /// multiple of 4 take one-row tiles. Blocks of 256 along k and of 256 columns keep the part of B in use in
    /// the caches while every row of A passes over it; a tile continues from C after the first k block, so the sum
    /// over k still runs in order, as in the reference.
    /// </summary>
    private void EmitCpuMatmul(MatmulShape mm)
    {
        const long kc = 256, nc = 256;
        var vec = LLVM.VectorType(_f32, Lanes);
        // Accumulators live in entry-block allocas, which SROA turns into registers.
        var acc = new LLVMValueRef[CpuTileM * 2];
        for (int i = 0; i < acc.Length; i++) acc[i] = LLVM.BuildAlloca(_b, vec, "acc");
        var zeroVec = LLVM.ConstNull(vec);
        var splatMask = LLVM.ConstNull(LLVM.VectorType(_i32, Lanes));
        var (aPtr, bPtr, cPtr) = (_inputs[0], _inputs[^1], _output);
        long batches = mm.Batch.Aggregate(1L, (x, y) => x * y);
        long fullRows = mm.M / CpuTileM * CpuTileM;
        LLVMValueRef Min(LLVMValueRef a, long b) => LLVM.BuildSelect(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, a, Const64(b), ""), a, Const64(b), "");
        Loop(Const64(0), Const64(batches), bi =>
        {
            var (aOff, bOff, cOff) = BatchOffsets(mm, bi);
            StridedLoop(Const64(0), Const64(mm.K), Const64(kc), kb =>
            {
                var kEnd = Min(LLVM.BuildAdd(_b, kb, Const64(kc), ""), mm.K);
                var first = LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, kb, Const64(0), "");
                StridedLoop(Const64(0), Const64(mm.N), Const64(nc), jb =>
                {
                    var jEnd = Min(LLVM.BuildAdd(_b, jb, Const64(nc), ""), mm.N);
                    void Tiles(LLVMValueRef rowStart, LLVMValueRef rowEnd, int rows) => StridedLoop(rowStart, rowEnd, Const64(rows), i0 =>
                        StridedLoop(jb, jEnd, Const64(CpuTileN), j0 =>
                        {
                            LLVMValueRef CIndex(int r, int h) => LLVM.BuildAdd(_b, cOff, LLVM.BuildAdd(_b,
                                LLVM.BuildMul(_b, LLVM.BuildAdd(_b, i0, Const64(r), ""), Const64(mm.N), ""), LLVM.BuildAdd(_b, j0, Const64(h * Lanes), ""), ""), "");
                            for (int r = 0; r < rows; r++)
                                for (int h = 0; h < 2; h++)
                                    Store(LLVM.BuildSelect(_b, first, zeroVec, VecLoad(vec, cPtr, CIndex(r, h)), ""), acc[r * 2 + h]);
                            StridedLoop(kb, kEnd, Const64(1), k =>
                            {
                                var bRow = LLVM.BuildAdd(_b, bOff, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, k, Const64(mm.N), ""), j0, ""), "");
                                var b0 = VecLoad(vec, bPtr, bRow);
                                var b1 = VecLoad(vec, bPtr, LLVM.BuildAdd(_b, bRow, Const64(Lanes), ""));
                                for (int r = 0; r < rows; r++)
                                {
                                    var row = LLVM.BuildAdd(_b, i0, Const64(r), "");
                                    var aIdx = LLVM.BuildAdd(_b, aOff, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, row, Const64(mm.K), ""), k, ""), "");
                                    var a = Load(_f32, Gep(_f32, aPtr, aIdx));
                                    var splat = LLVM.BuildShuffleVector(_b, LLVM.BuildInsertElement(_b, LLVM.GetUndef(vec), a, LLVM.ConstInt(_i32, 0, 0), ""),
                                        LLVM.GetUndef(vec), splatMask, "");
                                    for (int h = 0; h < 2; h++)
                                    {
                                        var slot = acc[r * 2 + h];
                                        Store(Call("llvm.fmuladd.v8f32", vec, [splat, h == 0 ? b0 : b1, Load(vec, slot)]), slot);
                                    }
                                }
                            });
                            for (int r = 0; r < rows; r++)
                                for (int h = 0; h < 2; h++)
                                    VecStore(Load(vec, acc[r * 2 + h]), cPtr, CIndex(r, h));
                        }));
                    Tiles(Const64(0), Const64(fullRows), CpuTileM);
                    if (fullRows < mm.M) Tiles(Const64(fullRows), Const64(mm.M), 1);
                });
            });
        });
    }

    /// <summary>Where batch <paramref name="batch"/>'s matrices start in A, B and C (batch dimensions of size 1 broadcast).</summary>
    private (LLVMValueRef A, LLVMValueRef B, LLVMValueRef C) BatchOffsets(MatmulShape mm, LLVMValueRef batch)
    {
        LLVMValueRef aOff = Const64(0), bOff = Const64(0);
        var rest = batch;
        for (int d = mm.Batch.Length - 1; d >= 0; d--)
        {
            var idx = LLVM.BuildURem(_b, rest, Const64(mm.Batch[d]), "");
            rest = LLVM.BuildUDiv(_b, rest, Const64(mm.Batch[d]), "");
            aOff = LLVM.BuildAdd(_b, aOff, LLVM.BuildMul(_b, idx, Const64(mm.BatchStrideA[d]), ""), "");
            bOff = LLVM.BuildAdd(_b, bOff, LLVM.BuildMul(_b, idx, Const64(mm.BatchStrideB[d]), ""), "");
        }
        return (aOff, bOff, LLVM.BuildMul(_b, batch, Const64(mm.M * mm.N), ""));
    }

    private LLVMValueRef VecLoad(LLVMTypeRef vec, LLVMValueRef basePtr, LLVMValueRef index)
    {
        var p = LLVM.BuildBitCast(_b, Gep(_f32, basePtr, index), LLVM.PointerType(vec, 0), "");
        var v = LLVM.BuildLoad2(_b, vec, p, "");
        LLVM.SetAlignment(v, 4);
        return v;
    }

    private void VecStore(LLVMValueRef value, LLVMValueRef basePtr, LLVMValueRef index)
    {
        var p = LLVM.BuildBitCast(_b, Gep(_f32, basePtr, index), LLVM.PointerType(LLVM.TypeOf(value), 0), "");
        LLVM.SetAlignment(LLVM.BuildStore(_b, value, p), 4);
    }

    /// <summary>
    /// C[b] = A[b] @ B[b] in 16x16 tiles: a block of 16x16 threads (blockIdx.z the batch) stages a tile of A and
    /// of B in shared memory per step of 16 along k, synchronises, and each thread accumulates its element.
    /// Out-of-range elements of partial tiles read as zero; threads outside C store nothing.
    /// </summary>
    private void EmitGpuMatmul(MatmulShape mm)
    {
        var tileType = LLVM.ArrayType(_f32, GpuTile * GpuTile);
        LLVMValueRef Shared(string name)
        {
            uint space = _target == KernelTarget.Ptx ? 3u : 0u; // shared memory on the GPU, a global on the host grid
            var g = LLVM.AddGlobalInAddressSpace(Module, tileType, $"{_spec.Name}_{name}", space);
            LLVM.SetInitializer(g, _target == KernelTarget.Ptx ? LLVM.GetUndef(tileType) : LLVM.ConstNull(tileType));
            LLVM.SetLinkage(g, LLVMLinkage.Internal);
            LLVM.SetAlignment(g, 16);
            return LLVM.BuildBitCast(_b, g, LLVM.PointerType(_f32, space), "");
        }
        var (sa, sb) = (Shared("a"), Shared("b"));
        var (tx, ty) = (Sreg("tid.x"), Sreg("tid.y"));
        var (bx, by, bz) = (Sreg("ctaid.x"), Sreg("ctaid.y"), Sreg("ctaid.z"));
        var row = LLVM.BuildAdd(_b, LLVM.BuildMul(_b, by, Const64(GpuTile), ""), ty, "");
        var col = LLVM.BuildAdd(_b, LLVM.BuildMul(_b, bx, Const64(GpuTile), ""), tx, "");
        var (aOff, bOff, cOff) = BatchOffsets(mm, bz);
        var slot = LLVM.BuildAdd(_b, LLVM.BuildMul(_b, ty, Const64(GpuTile), ""), tx, "");
        LLVMValueRef Guarded(LLVMValueRef inRange, LLVMValueRef ptr, LLVMValueRef index)
        {
            // Reads only in range; the index is clamped so no out-of-bounds address is formed.
            var safe = LLVM.BuildSelect(_b, inRange, index, Const64(0), "");
            var v = Load(_f32, Gep(_f32, ptr, safe));
            return LLVM.BuildSelect(_b, inRange, v, LLVM.ConstReal(_f32, 0), "");
        }
        long steps = (mm.K + GpuTile - 1) / GpuTile;
        var total = Accumulate(LLVM.ConstReal(_f32, 0), _f32, Const64(steps), (t, acc) =>
        {
            var k0 = LLVM.BuildMul(_b, t, Const64(GpuTile), "");
            var ak = LLVM.BuildAdd(_b, k0, tx, "");
            var bk = LLVM.BuildAdd(_b, k0, ty, "");
            var aIn = LLVM.BuildAnd(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, row, Const64(mm.M), ""), LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, ak, Const64(mm.K), ""), "");
            var bIn = LLVM.BuildAnd(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, bk, Const64(mm.K), ""), LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, col, Const64(mm.N), ""), "");
            var aVal = Guarded(aIn, _inputs[0], LLVM.BuildAdd(_b, aOff, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, row, Const64(mm.K), ""), ak, ""), ""));
            var bVal = Guarded(bIn, _inputs[^1], LLVM.BuildAdd(_b, bOff, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, bk, Const64(mm.N), ""), col, ""), ""));
            Store(aVal, Gep(_f32, sa, slot));
            Store(bVal, Gep(_f32, sb, slot));
            Barrier();
            var sum = Accumulate(acc, _f32, Const64(GpuTile), (kk, inner) =>
            {
                var a = Load(_f32, Gep(_f32, sa, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, ty, Const64(GpuTile), ""), kk, "")));
                var b = Load(_f32, Gep(_f32, sb, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, kk, Const64(GpuTile), ""), tx, "")));
                return LLVM.BuildFAdd(_b, inner, LLVM.BuildFMul(_b, a, b, ""), "");
            });
            Barrier();
            return sum;
        });
        var inC = LLVM.BuildAnd(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, row, Const64(mm.M), ""), LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, col, Const64(mm.N), ""), "");
        var (store, done) = (Block("store"), Block("done"));
        LLVM.BuildCondBr(_b, inC, store, done);
        Position(store);
        Store(total, Gep(_f32, _output, LLVM.BuildAdd(_b, cOff, LLVM.BuildAdd(_b, LLVM.BuildMul(_b, row, Const64(mm.N), ""), col, ""), "")));
        LLVM.BuildBr(_b, done);
        Position(done);
    }
}
