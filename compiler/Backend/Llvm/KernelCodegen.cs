using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>What the kernels are compiled for.</summary>
public enum KernelTarget
{
    /// <summary>The host CPU: <c>void k(ptr* buffers)</c>, loops over every output element.</summary>
    Cpu,

    /// <summary>NVPTX: <c>void k(ptr addrspace(1) in0, ..., out)</c>, a kernel entry; threads over the parallel
    /// dimensions.</summary>
    Ptx,

    /// <summary>
    /// The GPU kernels' thread structure compiled for the host, <c>void k(ptr* buffers, i64* registers)</c> called once
    /// per block with its block indices and the launch's block and grid sizes: the block's threads run in turn
    /// between barriers (each stretch of code between two barriers is a loop over the threads; shared memory and
    /// the threads' accumulators are globals), which is one schedule a GPU may pick. The indexing and tiling of
    /// the GPU code are tested, and GPUs emulated, without one. Math is the host's.
    /// </summary>
    HostGrid,
}

/// <summary>
/// Lowers <see cref="KernelSpec"/>s to LLVM IR in one module. Loops run over the output dimensions (on the GPU the
/// outer, parallel ones are spread over threads with a grid-stride loop); every reduction is computed at the
/// outermost loop level its indices allow, once per iteration there, and equal subexpressions once per scope.
/// Single f32 matmuls get tiled loops instead: register tiles of the output with a vectorisable inner loop on
/// the CPU, shared-memory tiles on the GPU.
/// </summary>
public sealed unsafe partial class KernelCodegen : IDisposable
{
    private readonly LLVMContextRef _ctx;
    private readonly LLVMBuilderRef _b;
    private readonly KernelTarget _target;
    private readonly LLVMTypeRef _f32,
        _f64,
        _i1,
        _i8,
        _i16,
        _i32,
        _i64,
        _void,
        _ptr;

    /// <summary>The module the kernels go into (owned by this object).</summary>
    public LLVMModuleRef Module { get; }

    /// <summary>A generator for <paramref name="target"/> writing into a new module named <paramref
    /// name="name"/>.</summary>
    public KernelCodegen(string name, KernelTarget target)
    {
        LLVM.EnsureLoaded();
        _target = target;
        _ctx = LLVM.ContextCreate();
        Module = LLVM.ModuleCreateWithNameInContext(name, _ctx);
        _b = LLVM.CreateBuilderInContext(_ctx);
        _f32 = LLVM.FloatTypeInContext(_ctx);
        _f64 = LLVM.DoubleTypeInContext(_ctx);
        _i1 = LLVM.Int1TypeInContext(_ctx);
        _i8 = LLVM.Int8TypeInContext(_ctx);
        _i16 = LLVM.Int16TypeInContext(_ctx);
        _i32 = LLVM.Int32TypeInContext(_ctx);
        _i64 = LLVM.Int64TypeInContext(_ctx);
        _void = LLVM.VoidTypeInContext(_ctx);
        _ptr = LLVM.PointerType(_i8, 0);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        LLVM.DisposeBuilder(_b);
        LLVM.DisposeModule(Module);
        LLVM.ContextDispose(_ctx);
    }

    /// <summary>The module as LLVM IR text.</summary>
    public string Print() => LLVM.TakeMessage(LLVM.PrintModuleToString(Module));

    /// <summary>Runs the LLVM verifier; throws naming the problem.</summary>
    public void Verify()
    {
        if (LLVM.VerifyModule(Module, 2, out var msg) != 0)
            throw new IRException($"LLVM verifier: {LLVM.TakeMessage(msg)}");
        LLVM.DisposeMessage(msg);
    }

    // ---- state of the function being emitted ----
    private LLVMValueRef _fn;
    private LLVMValueRef[] _inputs = [];
    private LLVMValueRef _output;
    private KernelSpec _spec = null!;
    private readonly Dictionary<int, LLVMValueRef> _vars = [];
    private KernelLevels _levels = null!;

    /// <summary>A scope of values computed at one loop level (or inside one branch), visible to inner scopes.</summary>
    private sealed class Scope(Scope? parent, int depth)
    {
        public Scope? Parent { get; } = parent;
        public int Depth { get; } = depth;
        public Dictionary<KExpr, LLVMValueRef> Values { get; } = [];

        public bool TryGet(KExpr e, out LLVMValueRef v)
        {
            for (var s = this; s != null; s = s.Parent)
                if (s.Values.TryGetValue(e, out v))
                    return true;
            v = default;
            return false;
        }
    }

    /// <summary>Adds <paramref name="spec"/> as a function named after it.</summary>
    public void Emit(KernelSpec spec)
    {
        _spec = spec;
        _vars.Clear();
        _levels = new KernelLevels(spec);
        int rank = spec.Output.Shape.Length;
        if (_target == KernelTarget.Cpu)
        {
            var args = _ptr;
            var argsPtr = LLVM.PointerType(args, 0);
            _fn = AddFunction(spec.Name, _void, [argsPtr]);
            Position(Block("entry"));
            var table = LLVM.GetParam(_fn, 0);
            _inputs = spec
                .Inputs.Select((x, i) => Typed(Load(_ptr, Gep(_ptr, table, Const64(i))), x.ElementType, 0))
                .ToArray();
            _output = Typed(Load(_ptr, Gep(_ptr, table, Const64(spec.Inputs.Count))), spec.Output.ElementType, 0);
            if (spec.Matmul is { } mm && mm.N % CpuTileN == 0)
                EmitCpuMatmul(mm);
            else
                EmitLoops(0, rank, new Scope(null, 0));
            LLVM.BuildRetVoid(_b);
        }
        else if (_target == KernelTarget.HostGrid)
        {
            _fn = AddFunction(spec.Name, _void, [LLVM.PointerType(_ptr, 0), LLVM.PointerType(_i64, 0)]);
            Position(Block("entry"));
            var table = LLVM.GetParam(_fn, 0);
            _registers = LLVM.GetParam(_fn, 1);
            _inputs = spec
                .Inputs.Select((x, i) => Typed(Load(_ptr, Gep(_ptr, table, Const64(i))), x.ElementType, 0))
                .ToArray();
            _output = Typed(Load(_ptr, Gep(_ptr, table, Const64(spec.Inputs.Count))), spec.Output.ElementType, 0);
            if (spec.Matmul is { } mm)
                EmitGpuMatmul(mm);
            else
                EmitGpu(rank);
            LLVM.BuildRetVoid(_b);
        }
        else
        {
            _fn = AddFunction(
                spec.Name,
                _void,
                [.. spec.Inputs.Append(spec.Output).Select(x => LLVM.PointerType(ElementType(x.ElementType), 1))]
            );
            LLVM.SetFunctionCallConv(_fn, 71); // PTX_Kernel: emitted as an .entry
            Position(Block("entry"));
            _inputs = spec.Inputs.Select((_, i) => LLVM.GetParam(_fn, (uint)i)).ToArray();
            _output = LLVM.GetParam(_fn, (uint)spec.Inputs.Count);
            if (spec.Matmul is { } mm)
                EmitGpuMatmul(mm);
            else
            {
                EmitGpu(rank);
                LaunchBounds(GpuThreads, 1);
            }
            LLVM.BuildRetVoid(_b);
        }
    }

    // ---- loops over the output ----

    private void EmitLoops(int d, int rank, Scope scope)
    {
        EmitReductionsAt(scope.Depth, _spec.Body, scope);
        if (d == rank)
        {
            var v = Emit(_spec.Body, scope);
            Store(
                Convert(v, _spec.Body.Type, _spec.Output.ElementType),
                Gep(
                    ElementType(_spec.Output.ElementType),
                    _output,
                    Emit(
                        K.Flatten(
                            Enumerable.Range(0, rank).Select(i => (KExpr)new KVar(i)).ToArray(),
                            _spec.Output.Shape
                        ),
                        scope
                    )
                )
            );
            return;
        }
        Loop(
            Const64(0),
            Const64(_spec.Output.Shape[d]),
            i =>
            {
                _vars[d] = i;
                EmitLoops(d + 1, rank, new Scope(scope, d + 1));
            }
        );
    }

    // ---- reductions at their level ----

    private int Level(KExpr e) => _levels.Level(e);

    private static IEnumerable<KExpr> Children(KExpr e) => KernelLevels.Children(e);

    /// <summary>Computes, in dependency order, every reduction under <paramref name="root"/> whose level is <paramref
    /// name="level"/>.</summary>
    private void EmitReductionsAt(int level, KExpr root, Scope scope)
    {
        var found = new List<KReduce>();
        var seen = new HashSet<KExpr>();
        void Walk(KExpr e)
        {
            foreach (var c in Children(e))
                Walk(c);
            if (e is KReduce r && Level(r) == level && seen.Add(r))
                found.Add(r);
        }
        Walk(root);
        foreach (var r in found)
            if (!scope.TryGet(r, out _))
                scope.Values[r] = EmitReduce(r, scope);
    }

    private LLVMValueRef EmitReduce(KReduce r, Scope scope)
    {
        var t = r.Type;
        var ty = ElementType(t);
        LLVMValueRef init =
            r.Kind == "max"
                ? (
                    t == KType.I32
                        ? LLVM.ConstInt(_i32, unchecked((ulong)int.MinValue), 1)
                        : LLVM.ConstReal(ty, double.NegativeInfinity)
                )
            : t == KType.I32 ? LLVM.ConstInt(_i32, 0, 0)
            : LLVM.ConstReal(ty, 0);
        return Accumulate(
            init,
            ty,
            Const64(r.Extent),
            (i, acc) =>
            {
                _vars[r.Var] = i;
                var inner = new Scope(scope, _levels.Depth(r.Var));
                EmitReductionsAt(_levels.Depth(r.Var), r.Body, inner);
                var v = Convert(Emit(r.Body, inner), r.Body.Type, t);
                if (r.Kind == "max")
                    return Max(v, acc, t == KType.I32);
                return t == KType.I32 ? LLVM.BuildAdd(_b, acc, v, "") : LLVM.BuildFAdd(_b, acc, v, "");
            }
        );
    }

    // ---- expressions ----

    private LLVMValueRef Emit(KExpr e, Scope scope)
    {
        if (scope.TryGet(e, out var cached))
            return cached;
        LLVMValueRef v = e switch
        {
            KVar x => _vars[x.Id],
            KConst c => Constant(c),
            KBin b => Binary(b.Op, b.A.Type, Emit(b.A, scope), Emit(b.B, scope)),
            KUn u => Unary(u.Op, u.A.Type, Emit(u.A, scope)),
            KCast c => Convert(Emit(c.A, scope), c.A.Type, c.To),
            KCmp c => Compare(c.Pred, c.A.Type, Emit(c.A, scope), Emit(c.B, scope)),
            KSelect s => Select(s, scope),
            KLoad l => Load(ElementType(l.T), Gep(ElementType(l.T), _inputs[l.Input], Emit(l.Flat, scope))),
            KReduce r => EmitReduce(r, scope), // a reduction not hoisted (inside a branch): computed in place
            KRound r => Round(r.To, Emit(r.A, scope)),
            _ => throw new IRException($"no code for {e.GetType().Name}"),
        };
        scope.Values[e] = v;
        return v;
    }

    private LLVMValueRef Select(KSelect s, Scope scope)
    {
        var cond = Emit(s.Cond, scope);
        var (thenB, elseB, join) = (Block("then"), Block("else"), Block("join"));
        LLVM.BuildCondBr(_b, cond, thenB, elseB);
        Position(thenB);
        var tv = Emit(s.Then, new Scope(scope, scope.Depth));
        var thenEnd = LLVM.GetInsertBlock(_b);
        LLVM.BuildBr(_b, join);
        Position(elseB);
        var ev = Emit(s.Else, new Scope(scope, scope.Depth));
        var elseEnd = LLVM.GetInsertBlock(_b);
        LLVM.BuildBr(_b, join);
        Position(join);
        var phi = LLVM.BuildPhi(_b, ElementType(s.Type), "");
        var vals = stackalloc LLVMValueRef[] { tv, ev };
        var blocks = stackalloc LLVMBasicBlockRef[] { thenEnd, elseEnd };
        LLVM.AddIncoming(phi, vals, blocks, 2);
        return phi;
    }

    private LLVMValueRef Constant(KConst c) =>
        c.T switch
        {
            KType.Index => Const64((long)c.Value),
            KType.I32 => LLVM.ConstInt(_i32, unchecked((ulong)(long)c.Value), 1),
            KType.F32 => LLVM.ConstReal(_f32, (float)c.Value),
            KType.F64 => LLVM.ConstReal(_f64, c.Value),
            KType.Bool => LLVM.ConstInt(_i1, c.Value != 0 ? 1UL : 0UL, 0),
            _ => throw new IRException($"no constant of {c.T}"),
        };

    private LLVMTypeRef ElementType(KType t) =>
        t switch
        {
            KType.Index => _i64,
            KType.I32 => _i32,
            KType.F32 => _f32,
            KType.F64 => _f64,
            KType.Bool => _i1,
            _ => throw new IRException($"no type {t}"),
        };

    private LLVMValueRef AddFunction(string name, LLVMTypeRef ret, LLVMTypeRef[] parameters)
    {
        fixed (LLVMTypeRef* p = parameters)
        {
            var fn = LLVM.AddFunction(Module, name, LLVM.FunctionType(ret, p, (uint)parameters.Length, 0));
            var nounwind = LLVM.GetEnumAttributeKindForName("nounwind", 8);
            LLVM.AddAttributeAtIndex(fn, uint.MaxValue, LLVM.CreateEnumAttribute(_ctx, nounwind, 0));
            return fn;
        }
    }

    private LLVMValueRef Call(string name, LLVMTypeRef ret, LLVMValueRef[] args)
    {
        var types = args.Select(LLVM.TypeOf).ToArray();
        LLVMTypeRef fnType;
        fixed (LLVMTypeRef* p = types)
            fnType = LLVM.FunctionType(ret, p, (uint)types.Length, 0);
        var fn = LLVM.GetNamedFunction(Module, name);
        if (fn.Handle == IntPtr.Zero)
            fn = LLVM.AddFunction(Module, name, fnType);
        fixed (LLVMValueRef* a = args)
            return LLVM.BuildCall2(_b, fnType, fn, a, (uint)args.Length, "");
    }

    /// <summary>A buffer pointer as a pointer to its element type (a no-op with opaque pointers).</summary>
    private LLVMValueRef Typed(LLVMValueRef pointer, KType element, uint addressSpace) =>
        LLVM.BuildBitCast(_b, pointer, LLVM.PointerType(ElementType(element), addressSpace), "");

    private LLVMBasicBlockRef Block(string name) => LLVM.AppendBasicBlockInContext(_ctx, _fn, name);

    private void Position(LLVMBasicBlockRef block) => LLVM.PositionBuilderAtEnd(_b, block);

    private LLVMValueRef Const64(long v) => LLVM.ConstInt(_i64, unchecked((ulong)v), 1);

    private LLVMValueRef Gep(LLVMTypeRef element, LLVMValueRef pointer, LLVMValueRef index)
    {
        var idx = stackalloc LLVMValueRef[] { index };
        return LLVM.BuildInBoundsGEP2(_b, element, pointer, idx, 1, "");
    }

    private LLVMValueRef Load(LLVMTypeRef type, LLVMValueRef pointer) => LLVM.BuildLoad2(_b, type, pointer, "");

    private void Store(LLVMValueRef value, LLVMValueRef pointer) => LLVM.BuildStore(_b, value, pointer);

    /// <summary>for (i = 0; i &lt; n; i++) body(i).</summary>
    private void Loop(LLVMValueRef from, LLVMValueRef n, Action<LLVMValueRef> body) =>
        StridedLoop(from, n, Const64(1), body);

    /// <summary>for (i = start; i &lt; n; i += step) body(i).</summary>
    private void StridedLoop(LLVMValueRef start, LLVMValueRef n, LLVMValueRef step, Action<LLVMValueRef> body)
    {
        var pre = LLVM.GetInsertBlock(_b);
        var (head, loop, exit) = (Block("loop.head"), Block("loop.body"), Block("loop.exit"));
        LLVM.BuildBr(_b, head);
        Position(head);
        var i = LLVM.BuildPhi(_b, _i64, "i");
        LLVM.BuildCondBr(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, i, n, ""), loop, exit);
        Position(loop);
        body(i);
        var next = LLVM.BuildAdd(_b, i, step, "");
        var end = LLVM.GetInsertBlock(_b);
        LLVM.BuildBr(_b, head);
        var vals = stackalloc LLVMValueRef[] { start, next };
        var blocks = stackalloc LLVMBasicBlockRef[] { pre, end };
        LLVM.AddIncoming(i, vals, blocks, 2);
        Position(exit);
    }

    /// <summary>acc = init; for (i = 0; i &lt; n; i++) acc = body(i, acc); returns acc.</summary>
    private LLVMValueRef Accumulate(
        LLVMValueRef init,
        LLVMTypeRef type,
        LLVMValueRef n,
        Func<LLVMValueRef, LLVMValueRef, LLVMValueRef> body
    )
    {
        var pre = LLVM.GetInsertBlock(_b);
        var (head, loop, exit) = (Block("acc.head"), Block("acc.body"), Block("acc.exit"));
        LLVM.BuildBr(_b, head);
        Position(head);
        var i = LLVM.BuildPhi(_b, _i64, "i");
        var acc = LLVM.BuildPhi(_b, type, "acc");
        LLVM.BuildCondBr(_b, LLVM.BuildICmp(_b, LLVMIntPredicate.SLT, i, n, ""), loop, exit);
        Position(loop);
        var nextAcc = body(i, acc);
        var next = LLVM.BuildAdd(_b, i, Const64(1), "");
        var end = LLVM.GetInsertBlock(_b);
        LLVM.BuildBr(_b, head);
        var iv = stackalloc LLVMValueRef[] { Const64(0), next };
        var av = stackalloc LLVMValueRef[] { init, nextAcc };
        var blocks = stackalloc LLVMBasicBlockRef[] { pre, end };
        LLVM.AddIncoming(i, iv, blocks, 2);
        LLVM.AddIncoming(acc, av, blocks, 2);
        Position(exit);
        return acc;
    }
}
