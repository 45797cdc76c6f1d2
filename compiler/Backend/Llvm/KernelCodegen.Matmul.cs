using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.Kernels;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>Tiled matmul kernels: register tiles on the CPU; shared-memory tiles and register tiles on the
/// GPU.</summary>
public sealed unsafe partial class KernelCodegen
{
    /// <summary>Columns of C one CPU register tile covers: two 8-wide vectors.</summary>
    public const int CpuTileN = 16;

    /// <summary>Rows of C one CPU register tile covers.</summary>
    public const int CpuTileM = 4;

    /// <summary>Threads per side of a GPU matmul block (16x16 threads).</summary>
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
        const long kc = 256,
            nc = 256;
        var vec = LLVM.VectorType(_f32, Lanes);
        // Accumulators live in entry-block allocas, which SROA turns into registers.
        var acc = new LLVMValueRef[CpuTileM * 2];
        for (int i = 0; i < acc.Length; i++)
            acc[i] = LLVM.BuildAlloca(_b, vec, "acc");
        var zeroVec = LLVM.ConstNull(vec);
        var splatMask = LLVM.ConstNull(LLVM.VectorType(_i32, Lanes));
        var (aPtr, bPtr, cPtr) = (_inputs[0], _inputs[^1], _output);
        long batches = mm.Batch.Aggregate(1L, (x, y) => x * y);
        long fullRows = mm.M / CpuTileM * CpuTileM;
        LLVMValueRef Min(LLVMValueRef a, long b) =>
            LLVM.BuildSelect(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, a, Const64(b), ""), a, Const64(b), "");
        Loop(
            Const64(0),
            Const64(batches),
            bi =>
            {
                var (aOff, bOff, cOff) = BatchOffsets(mm, bi);
                StridedLoop(
                    Const64(0),
                    Const64(mm.K),
                    Const64(kc),
                    kb =>
                    {
                        var kEnd = Min(LLVM.BuildAdd(_b, kb, Const64(kc), ""), mm.K);
                        var first = LLVM.BuildICmp(_b, LLVMIntPredicate.EQ, kb, Const64(0), "");
                        StridedLoop(
                            Const64(0),
                            Const64(mm.N),
                            Const64(nc),
                            jb =>
                            {
                                var jEnd = Min(LLVM.BuildAdd(_b, jb, Const64(nc), ""), mm.N);
                                void Tiles(LLVMValueRef rowStart, LLVMValueRef rowEnd, int rows) =>
                                    StridedLoop(
                                        rowStart,
                                        rowEnd,
                                        Const64(rows),
                                        i0 =>
                                            StridedLoop(
                                                jb,
                                                jEnd,
                                                Const64(CpuTileN),
                                                j0 =>
                                                {
                                                    LLVMValueRef CIndex(int r, int h) =>
                                                        LLVM.BuildAdd(
                                                            _b,
                                                            cOff,
                                                            LLVM.BuildAdd(
                                                                _b,
                                                                LLVM.BuildMul(
                                                                    _b,
                                                                    LLVM.BuildAdd(_b, i0, Const64(r), ""),
                                                                    Const64(mm.N),
                                                                    ""
                                                                ),
                                                                LLVM.BuildAdd(_b, j0, Const64(h * Lanes), ""),
                                                                ""
                                                            ),
                                                            ""
                                                        );
                                                    for (int r = 0; r < rows; r++)
                                                    for (int h = 0; h < 2; h++)
                                                        Store(
                                                            LLVM.BuildSelect(
                                                                _b,
                                                                first,
                                                                zeroVec,
                                                                VecLoad(vec, cPtr, CIndex(r, h)),
                                                                ""
                                                            ),
                                                            acc[r * 2 + h]
                                                        );
                                                    StridedLoop(
                                                        kb,
                                                        kEnd,
                                                        Const64(1),
                                                        k =>
                                                        {
                                                            var bRow = LLVM.BuildAdd(
                                                                _b,
                                                                bOff,
                                                                LLVM.BuildAdd(
                                                                    _b,
                                                                    LLVM.BuildMul(_b, k, Const64(mm.N), ""),
                                                                    j0,
                                                                    ""
                                                                ),
                                                                ""
                                                            );
                                                            var b0 = VecLoad(vec, bPtr, bRow);
                                                            var b1 = VecLoad(
                                                                vec,
                                                                bPtr,
                                                                LLVM.BuildAdd(_b, bRow, Const64(Lanes), "")
                                                            );
                                                            for (int r = 0; r < rows; r++)
                                                            {
                                                                var row = LLVM.BuildAdd(_b, i0, Const64(r), "");
                                                                var aIdx = LLVM.BuildAdd(
                                                                    _b,
                                                                    aOff,
                                                                    LLVM.BuildAdd(
                                                                        _b,
                                                                        LLVM.BuildMul(_b, row, Const64(mm.K), ""),
                                                                        k,
                                                                        ""
                                                                    ),
                                                                    ""
                                                                );
                                                                var a = Load(_f32, Gep(_f32, aPtr, aIdx));
                                                                var splat = LLVM.BuildShuffleVector(
                                                                    _b,
                                                                    LLVM.BuildInsertElement(
                                                                        _b,
                                                                        LLVM.GetUndef(vec),
                                                                        a,
                                                                        LLVM.ConstInt(_i32, 0, 0),
                                                                        ""
                                                                    ),
                                                                    LLVM.GetUndef(vec),
                                                                    splatMask,
                                                                    ""
                                                                );
                                                                for (int h = 0; h < 2; h++)
                                                                {
                                                                    var slot = acc[r * 2 + h];
                                                                    Store(
                                                                        Call(
                                                                            "llvm.fmuladd.v8f32",
                                                                            vec,
                                                                            [splat, h == 0 ? b0 : b1, Load(vec, slot)]
                                                                        ),
                                                                        slot
                                                                    );
                                                                }
                                                            }
                                                        }
                                                    );
                                                    for (int r = 0; r < rows; r++)
                                                    for (int h = 0; h < 2; h++)
                                                        VecStore(Load(vec, acc[r * 2 + h]), cPtr, CIndex(r, h));
                                                }
                                            )
                                    );
                                Tiles(Const64(0), Const64(fullRows), CpuTileM);
                                if (fullRows < mm.M)
                                    Tiles(Const64(fullRows), Const64(mm.M), 1);
                            }
                        );
                    }
                );
            }
        );
    }

    /// <summary>Where batch <paramref name="batch"/>'s matrices start in A, B and C (batch dimensions of size 1
    /// broadcast).</summary>
    private (LLVMValueRef A, LLVMValueRef B, LLVMValueRef C) BatchOffsets(MatmulShape mm, LLVMValueRef batch)
    {
        LLVMValueRef aOff = Const64(0),
            bOff = Const64(0);
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

    /// <summary>Elements of A's (and of B's) tile per step of a whole-tile GPU matmul: 128x16 and 16x128, or 64x32 and
    /// 32x64.</summary>
    public const int WholeTileElements = 2048;

    /// <summary>
    /// The per-thread tile of a GPU matmul: 8x8 outputs (block tile 128x128, steps of 8 along k) when both sides
    /// of C are at least 128, else 4x4 (64x64, steps of 16).
    /// </summary>
    public static int GpuThreadTile(MatmulShape mm) => mm.M >= 128 && mm.N >= 128 ? 8 : 4;

    /// <summary>
    /// C[b] = A[b] @ B[b] with register blocking: a block of 16x16 threads (blockIdx.z the batch) computes a tile of
    /// 16T x 16T outputs, each thread a T x T square held in registers. Per step along k the block stages a 16T x BK
    /// tile of A (stored transposed, k major) and a BK x 16T tile of B in shared memory (BK = 1024 / 16T), and every
    /// thread accumulates its square from T contiguous values of A and T of B per k (vector loads from shared
    /// memory, fused multiply-adds as on the host). Whole tiles (M and N multiples of 16T, K of their step, twice BK)
    /// load two aligned 16-byte vectors of A and two of B per thread and step, with no bounds checks, into two buffers
    /// taken in turn (one barrier a step), and store C as vectors; partial tiles load element by element, reading zero
    /// outside A
    /// or B, into one buffer (two barriers a step), and threads outside C store nothing.
    /// </summary>
    private void EmitGpuMatmul(MatmulShape mm)
    {
        // Whole tiles (every side of C a multiple of the block's, K of the step) take the fast path below, with
        // steps twice as deep: tiles of 2,048 elements, two vectors a thread, half the barriers per product.
        int t = GpuThreadTile(mm),
            bm = GpuTile * t;
        bool exact = mm.M % bm == 0 && mm.N % bm == 0 && mm.K % (WholeTileElements / bm) == 0;
        int tile = exact ? WholeTileElements : 1024,
            bk = tile / bm;
        // Whole tiles keep two blocks on an SM (registers capped at 128 a thread). Partial ones get no bounds:
        // their k loops unroll when K is small, and a block size alone makes ptxas cap registers for more blocks
        // and spill.
        if (_target == KernelTarget.Ptx && exact)
            LaunchBounds(GpuTile, GpuTile, minBlocksPerSm: 2);
        var tileType = LLVM.ArrayType(_f32, exact ? 2u * WholeTileElements : 1024u);
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
        LLVMValueRef C(long v) => Const64(v);
        LLVMValueRef Add(LLVMValueRef a, LLVMValueRef b) => LLVM.BuildAdd(_b, a, b, "");
        LLVMValueRef Mul(LLVMValueRef a, LLVMValueRef b) => LLVM.BuildMul(_b, a, b, "");
        LLVMValueRef Below(LLVMValueRef a, long n) => LLVM.BuildICmp(_b, LLVMIntPredicate.ULT, a, C(n), "");
        // Each thread's t x t accumulators: zeroed entry-block allocas on the GPU, which SROA turns into registers;
        // on the host grid, where the threads take turns, a zeroed global holding every thread's, zeroed again by
        // the stretch that stores them (so that every boundary between stretches is a barrier).
        int tt = t * t;
        var acc =
            _target == KernelTarget.Ptx
                ? Enumerable.Range(0, tt).Select(_ => LLVM.BuildAlloca(_b, _f32, "acc")).ToArray()
                : [];
        foreach (var a in acc)
            Store(LLVM.ConstReal(_f32, 0), a);
        var accAll = _target == KernelTarget.Ptx ? default : AccumulatorGlobal(GpuTile * GpuTile * tt);
        LLVMValueRef Thread() => Add(Mul(Sreg("tid.y"), C(GpuTile)), Sreg("tid.x"));
        LLVMValueRef Acc(int i) =>
            _target == KernelTarget.Ptx ? acc[i] : Gep(_f32, accAll, Add(Mul(Thread(), C(tt)), C(i)));
        var block = C(GpuTile);
        var (bx, by, bz) = (Sreg("ctaid.x"), Sreg("ctaid.y"), Sreg("ctaid.z"));
        var rowBase = Mul(by, C(bm));
        var colBase = Mul(bx, C(bm));
        var (aOff, bOff, cOff) = BatchOffsets(mm, bz);
        LLVMValueRef Guarded(LLVMValueRef inRange, LLVMValueRef ptr, LLVMValueRef index)
        {
            // Reads only in range; the index is clamped so no out-of-bounds address is formed.
            var v = Load(_f32, Gep(_f32, ptr, LLVM.BuildSelect(_b, inRange, index, C(0), "")));
            return LLVM.BuildSelect(_b, inRange, v, LLVM.ConstReal(_f32, 0), "");
        }
        uint global = _target == KernelTarget.Ptx ? 1u : 0u,
            shared = _target == KernelTarget.Ptx ? 3u : 0u;
        var vec4 = LLVM.VectorType(_f32, 4);
        // Every thread adds the products of one staged step (A and B at element offset buf of their buffers) to its
        // square.
        void Accumulate(LLVMValueRef buf)
        {
            var (tx, ty) = (Sreg("tid.x"), Sreg("tid.y"));
            var ptrs = Enumerable.Range(0, tt).Select(Acc).ToArray();
            var (aRow, bCol) = (Add(buf, Mul(ty, C(t))), Add(buf, Mul(tx, C(t))));
            for (int kk = 0; kk < bk; kk++)
            {
                var av = Enumerable
                    .Range(0, t)
                    .Select(i => Load(_f32, Gep(_f32, sa, Add(aRow, C(kk * bm + i)))))
                    .ToArray();
                var bv = Enumerable
                    .Range(0, t)
                    .Select(j => Load(_f32, Gep(_f32, sb, Add(bCol, C(kk * bm + j)))))
                    .ToArray();
                for (int i = 0; i < t; i++)
                for (int j = 0; j < t; j++)
                    Store(Call("llvm.fmuladd.f32", _f32, [av[i], bv[j], Load(_f32, ptrs[i * t + j])]), ptrs[i * t + j]);
            }
        }
        if (exact)
        {
            // Whole tiles: no bounds checks; each thread moves aligned 16-byte vectors, two of A and two of B per
            // step (the pool's blocks are 256-byte aligned). Vector v of thread x is number x + 256 v of its tile: of
            // A, row n / (bk/4) from k = 4 (n % (bk/4)), stored k major element by element; of B, row n / (bm/4) from
            // column 4 (n % (bm/4)), stored as it is. Two buffers: while a step's products are summed from one, the
            // next step's tiles are stored into the other; one barrier a step.
            const int vectors = WholeTileElements / 4 / 256;
            LLVMValueRef Number(int v) => Add(Thread(), C(v * 256));
            (LLVMValueRef[] A, LLVMValueRef[] B) LoadStep(LLVMValueRef k0) =>
                (
                    Enumerable
                        .Range(0, vectors)
                        .Select(v =>
                        {
                            var (ar, ac) = (
                                LLVM.BuildUDiv(_b, Number(v), C(bk / 4), ""),
                                Mul(LLVM.BuildURem(_b, Number(v), C(bk / 4), ""), C(4))
                            );
                            return AlignedLoad(
                                vec4,
                                _inputs[0],
                                global,
                                Add(aOff, Add(Mul(Add(rowBase, ar), C(mm.K)), Add(k0, ac)))
                            );
                        })
                        .ToArray(),
                    Enumerable
                        .Range(0, vectors)
                        .Select(v =>
                        {
                            var (br, bc) = (
                                LLVM.BuildUDiv(_b, Number(v), C(bm / 4), ""),
                                Mul(LLVM.BuildURem(_b, Number(v), C(bm / 4), ""), C(4))
                            );
                            return AlignedLoad(
                                vec4,
                                _inputs[^1],
                                global,
                                Add(bOff, Add(Mul(Add(k0, br), C(mm.N)), Add(colBase, bc)))
                            );
                        })
                        .ToArray()
                );
            void StoreStep((LLVMValueRef[] A, LLVMValueRef[] B) step, LLVMValueRef buf)
            {
                for (int v = 0; v < vectors; v++)
                {
                    var (ar, ac) = (
                        LLVM.BuildUDiv(_b, Number(v), C(bk / 4), ""),
                        Mul(LLVM.BuildURem(_b, Number(v), C(bk / 4), ""), C(4))
                    );
                    for (int i = 0; i < 4; i++)
                        Store(
                            LLVM.BuildExtractElement(_b, step.A[v], LLVM.ConstInt(_i32, (ulong)i, 0), ""),
                            Gep(_f32, sa, Add(buf, Add(Mul(Add(ac, C(i)), C(bm)), ar)))
                        );
                    var (br, bc) = (
                        LLVM.BuildUDiv(_b, Number(v), C(bm / 4), ""),
                        Mul(LLVM.BuildURem(_b, Number(v), C(bm / 4), ""), C(4))
                    );
                    AlignedStore(step.B[v], sb, shared, Add(buf, Add(Mul(br, C(bm)), bc)));
                }
            }
            Threads(block, block, () => StoreStep(LoadStep(C(0)), C(0)), barrier: true);
            StridedLoop(
                C(0),
                C(mm.K),
                C(bk),
                k0 =>
                {
                    Threads(
                        block,
                        block,
                        () =>
                        {
                            var odd = LLVM.BuildAnd(_b, LLVM.BuildUDiv(_b, k0, C(bk), ""), C(1), "");
                            // The last step loads its own tiles again (into the buffer no one reads)
                            // rather than branch.
                            var next = LLVM.BuildSelect(_b, Below(k0, mm.K - bk), Add(k0, C(bk)), k0, "");
                            StoreStep(LoadStep(next), Mul(LLVM.BuildXor(_b, odd, C(1), ""), C(tile)));
                            Accumulate(Mul(odd, C(tile)));
                        },
                        barrier: true
                    );
                }
            );
        }
        else
        {
            // Elements outside A or B read as zero.
            StridedLoop(
                C(0),
                C(mm.K),
                C(bk),
                k0 =>
                {
                    Threads(
                        block,
                        block,
                        () =>
                        {
                            var thread = Thread();
                            for (int e = 0; e < 4; e++)
                            {
                                var idx = Add(thread, C(e * 256));
                                // A tile: bm rows of bk; B tile: bk rows of bm.
                                var (ar, ac) = (LLVM.BuildUDiv(_b, idx, C(bk), ""), LLVM.BuildURem(_b, idx, C(bk), ""));
                                var (row, ak) = (Add(rowBase, ar), Add(k0, ac));
                                var aIn = LLVM.BuildAnd(_b, Below(row, mm.M), Below(ak, mm.K), "");
                                // Stored transposed (k major), so that a thread reads its T rows of A for one k
                                // as contiguous
                                // vectors.
                                Store(
                                    Guarded(aIn, _inputs[0], Add(aOff, Add(Mul(row, C(mm.K)), ak))),
                                    Gep(_f32, sa, Add(Mul(ac, C(bm)), ar))
                                );
                                var (br, bc) = (LLVM.BuildUDiv(_b, idx, C(bm), ""), LLVM.BuildURem(_b, idx, C(bm), ""));
                                var (bkk, col) = (Add(k0, br), Add(colBase, bc));
                                var bIn = LLVM.BuildAnd(_b, Below(bkk, mm.K), Below(col, mm.N), "");
                                Store(
                                    Guarded(bIn, _inputs[^1], Add(bOff, Add(Mul(bkk, C(mm.N)), col))),
                                    Gep(_f32, sb, idx)
                                );
                            }
                        },
                        barrier: true
                    );
                    Threads(block, block, () => Accumulate(C(0)), barrier: true);
                }
            );
        }
        Threads(
            block,
            block,
            () =>
            {
                var (tx, ty) = (Sreg("tid.x"), Sreg("tid.y"));
                // The thread's square from one corner (constant offsets from it: one address kept through the k loop).
                var corner = Gep(
                    _f32,
                    _output,
                    Add(cOff, Add(Mul(Add(rowBase, Mul(ty, C(t))), C(mm.N)), Add(colBase, Mul(tx, C(t)))))
                );
                for (int i = 0; i < t; i++)
                {
                    var row = Add(rowBase, Add(Mul(ty, C(t)), C(i)));
                    if (exact)
                    {
                        // A row of the square: t / 4 aligned vectors.
                        for (int j = 0; j < t; j += 4)
                        {
                            var v = LLVM.GetUndef(vec4);
                            for (int e = 0; e < 4; e++)
                                v = LLVM.BuildInsertElement(
                                    _b,
                                    v,
                                    Load(_f32, Acc(i * t + j + e)),
                                    LLVM.ConstInt(_i32, (ulong)e, 0),
                                    ""
                                );
                            AlignedStore(v, corner, global, C(i * mm.N + j));
                        }
                        continue;
                    }
                    for (int j = 0; j < t; j++)
                    {
                        var col = Add(colBase, Add(Mul(tx, C(t)), C(j)));
                        var (store, next) = (Block("store"), Block("next"));
                        LLVM.BuildCondBr(_b, LLVM.BuildAnd(_b, Below(row, mm.M), Below(col, mm.N), ""), store, next);
                        Position(store);
                        Store(Load(_f32, Acc(i * t + j)), Gep(_f32, _output, Add(cOff, Add(Mul(row, C(mm.N)), col))));
                        LLVM.BuildBr(_b, next);
                        Position(next);
                    }
                }
                if (_target == KernelTarget.HostGrid)
                    for (int i = 0; i < tt; i++)
                        Store(LLVM.ConstReal(_f32, 0), Acc(i));
            }
        );
    }

    /// <summary>
    /// The alignment of the GPU matmul's 4-float vectors: 16 bytes on the GPU (one 128-bit access); on the host grid
    /// only the element's, since its callers' arrays need not be 16-byte aligned there.
    /// </summary>
    private uint VectorAlignment => _target == KernelTarget.Ptx ? 16u : 4u;

    /// <summary>A vector load of <paramref name="vec"/> from element <paramref name="index"/> of a float buffer in
    /// <paramref name="space"/>.</summary>
    private LLVMValueRef AlignedLoad(LLVMTypeRef vec, LLVMValueRef basePtr, uint space, LLVMValueRef index)
    {
        var v = LLVM.BuildLoad2(
            _b,
            vec,
            LLVM.BuildBitCast(_b, Gep(_f32, basePtr, index), LLVM.PointerType(vec, space), ""),
            ""
        );
        LLVM.SetAlignment(v, VectorAlignment);
        return v;
    }

    /// <summary>A vector store at element <paramref name="index"/> of a float buffer in <paramref
    /// name="space"/>.</summary>
    private void AlignedStore(LLVMValueRef value, LLVMValueRef basePtr, uint space, LLVMValueRef index)
    {
        var p = LLVM.BuildBitCast(_b, Gep(_f32, basePtr, index), LLVM.PointerType(LLVM.TypeOf(value), space), "");
        LLVM.SetAlignment(LLVM.BuildStore(_b, value, p), VectorAlignment);
    }

    /// <summary>A zeroed internal global of <paramref name="n"/> floats for the host grid's per-thread
    /// accumulators.</summary>
    private LLVMValueRef AccumulatorGlobal(int n)
    {
        var type = LLVM.ArrayType(_f32, (uint)n);
        var g = LLVM.AddGlobalInAddressSpace(Module, type, $"{_spec.Name}_acc", 0);
        LLVM.SetInitializer(g, LLVM.ConstNull(type));
        LLVM.SetLinkage(g, LLVMLinkage.Internal);
        LLVM.SetAlignment(g, 16);
        return LLVM.BuildBitCast(_b, g, LLVM.PointerType(_f32, 0), "");
    }
}
