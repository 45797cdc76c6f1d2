using System.Reflection;
using System.Runtime.InteropServices;

namespace ParallelCompiler.Backend.Llvm.Native;

#pragma warning disable CS1591 // the handles and entry points are named as in the LLVM C API; its documentation applies

public readonly record struct LLVMContextRef(IntPtr Handle);

public readonly record struct LLVMModuleRef(IntPtr Handle);

public readonly record struct LLVMTypeRef(IntPtr Handle);

public readonly record struct LLVMValueRef(IntPtr Handle);

public readonly record struct LLVMBasicBlockRef(IntPtr Handle);

public readonly record struct LLVMBuilderRef(IntPtr Handle);

public readonly record struct LLVMTargetRef(IntPtr Handle);

public readonly record struct LLVMTargetMachineRef(IntPtr Handle);

public readonly record struct LLVMTargetDataRef(IntPtr Handle);

public readonly record struct LLVMMemoryBufferRef(IntPtr Handle);

public readonly record struct LLVMPassBuilderOptionsRef(IntPtr Handle);

public readonly record struct LLVMErrorRef(IntPtr Handle);

/// <summary>Integer comparison predicates (LLVMIntPredicate).</summary>
public enum LLVMIntPredicate
{
    EQ = 32,
    NE,
    UGT,
    UGE,
    ULT,
    ULE,
    SGT,
    SGE,
    SLT,
    SLE,
}

/// <summary>Float comparison predicates (LLVMRealPredicate).</summary>
public enum LLVMRealPredicate
{
    False,
    OEQ,
    OGT,
    OGE,
    OLT,
    OLE,
    ONE,
    ORD,
    UNO,
    UEQ,
    UGT,
    UGE,
    ULT,
    ULE,
    UNE,
    True,
}

/// <summary>Linkage kinds used here (LLVMLinkage).</summary>
public enum LLVMLinkage
{
    External = 0,
    Internal = 8,
    Private = 9,
}

/// <summary>
/// The LLVM C API entry points the code generator uses, bound by P/Invoke to the newest libLLVM found (18 down to 14),
/// named and typed as in LLVMSharp.Interop so that package could replace this file. Strings returned by LLVM are
/// copied and freed here.
/// </summary>
public static unsafe partial class LLVM
{
    private const string Lib = "LLVM";
    private static readonly (int Version, string Name)[] Candidates =
    [
        .. Enumerable
            .Range(14, 5)
            .Reverse()
            .SelectMany(v =>
                new[]
                {
                    $"libLLVM.so.{v}",
                    $"libLLVM-{v}.so.1",
                    $"libLLVM-{v}.so",
                    $"/usr/lib/llvm-{v}/lib/libLLVM.so",
                }.Select(n => (v, n))
            ),
    ];
    private static IntPtr _handle;

    /// <summary>The major version of the loaded libLLVM (0 until loaded).</summary>
    public static int LoadedVersion { get; private set; }

    static LLVM() => NativeLibrary.SetDllImportResolver(typeof(LLVM).Assembly, Resolve);

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Lib)
            return IntPtr.Zero;
        if (_handle != IntPtr.Zero)
            return _handle;
        foreach (var (version, file) in Candidates)
            if (NativeLibrary.TryLoad(file, out var h))
            {
                _handle = h;
                LoadedVersion = version;
                return h;
            }
        throw new DllNotFoundException(
            $"no libLLVM (14 to 18) found; install Debian's libllvm14 (tried "
                + $"{string.Join(", ", Candidates.Take(4).Select(c => c.Name))}, ...)"
        );
    }

    /// <summary>Loads libLLVM now (throws <see cref="DllNotFoundException"/> when absent).</summary>
    public static void EnsureLoaded()
    {
        if (_handle == IntPtr.Zero)
            Resolve(Lib, typeof(LLVM).Assembly, null);
    }

    /// <summary>Copies an LLVM-allocated message and frees it.</summary>
    public static string TakeMessage(IntPtr message)
    {
        if (message == IntPtr.Zero)
            return "";
        string s = Marshal.PtrToStringUTF8(message) ?? "";
        DisposeMessage(message);
        return s;
    }

    [DllImport(Lib, EntryPoint = "LLVMDisposeMessage")]
    public static extern void DisposeMessage(IntPtr message);

    [DllImport(Lib, EntryPoint = "LLVMContextCreate")]
    public static extern LLVMContextRef ContextCreate();

    [DllImport(Lib, EntryPoint = "LLVMContextDispose")]
    public static extern void ContextDispose(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMModuleCreateWithNameInContext")]
    public static extern LLVMModuleRef ModuleCreateWithNameInContext(
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        LLVMContextRef c
    );

    [DllImport(Lib, EntryPoint = "LLVMDisposeModule")]
    public static extern void DisposeModule(LLVMModuleRef m);

    [DllImport(Lib, EntryPoint = "LLVMSetTarget")]
    public static extern void SetTarget(LLVMModuleRef m, [MarshalAs(UnmanagedType.LPUTF8Str)] string triple);

    [DllImport(Lib, EntryPoint = "LLVMSetDataLayout")]
    public static extern void SetDataLayout(LLVMModuleRef m, [MarshalAs(UnmanagedType.LPUTF8Str)] string layout);

    [DllImport(Lib, EntryPoint = "LLVMPrintModuleToString")]
    public static extern IntPtr PrintModuleToString(LLVMModuleRef m);

    [DllImport(Lib, EntryPoint = "LLVMVerifyModule")]
    public static extern int VerifyModule(LLVMModuleRef m, int action, out IntPtr message);

    [DllImport(Lib, EntryPoint = "LLVMFloatTypeInContext")]
    public static extern LLVMTypeRef FloatTypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMDoubleTypeInContext")]
    public static extern LLVMTypeRef DoubleTypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMHalfTypeInContext")]
    public static extern LLVMTypeRef HalfTypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMInt1TypeInContext")]
    public static extern LLVMTypeRef Int1TypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMInt8TypeInContext")]
    public static extern LLVMTypeRef Int8TypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMInt16TypeInContext")]
    public static extern LLVMTypeRef Int16TypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMInt32TypeInContext")]
    public static extern LLVMTypeRef Int32TypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMInt64TypeInContext")]
    public static extern LLVMTypeRef Int64TypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMVoidTypeInContext")]
    public static extern LLVMTypeRef VoidTypeInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMPointerType")]
    public static extern LLVMTypeRef PointerType(LLVMTypeRef element, uint addressSpace);

    [DllImport(Lib, EntryPoint = "LLVMVectorType")]
    public static extern LLVMTypeRef VectorType(LLVMTypeRef element, uint count);

    [DllImport(Lib, EntryPoint = "LLVMArrayType")]
    public static extern LLVMTypeRef ArrayType(LLVMTypeRef element, uint count);

    [DllImport(Lib, EntryPoint = "LLVMFunctionType")]
    public static extern LLVMTypeRef FunctionType(LLVMTypeRef ret, LLVMTypeRef* parameters, uint count, int isVarArg);

    [DllImport(Lib, EntryPoint = "LLVMAddFunction")]
    public static extern LLVMValueRef AddFunction(
        LLVMModuleRef m,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        LLVMTypeRef type
    );

    [DllImport(Lib, EntryPoint = "LLVMGetNamedFunction")]
    public static extern LLVMValueRef GetNamedFunction(
        LLVMModuleRef m,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMGetParam")]
    public static extern LLVMValueRef GetParam(LLVMValueRef fn, uint index);

    [DllImport(Lib, EntryPoint = "LLVMSetFunctionCallConv")]
    public static extern void SetFunctionCallConv(LLVMValueRef fn, uint cc);

    [DllImport(Lib, EntryPoint = "LLVMSetLinkage")]
    public static extern void SetLinkage(LLVMValueRef global, LLVMLinkage linkage);

    [DllImport(Lib, EntryPoint = "LLVMSetValueName2")]
    public static extern void SetValueName2(
        LLVMValueRef v,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        nuint length
    );

    [DllImport(Lib, EntryPoint = "LLVMGetEnumAttributeKindForName")]
    public static extern uint GetEnumAttributeKindForName(
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        nuint length
    );

    [DllImport(Lib, EntryPoint = "LLVMCreateEnumAttribute")]
    public static extern IntPtr CreateEnumAttribute(LLVMContextRef c, uint kind, ulong value);

    [DllImport(Lib, EntryPoint = "LLVMAddAttributeAtIndex")]
    public static extern void AddAttributeAtIndex(LLVMValueRef fn, uint index, IntPtr attribute);

    [DllImport(Lib, EntryPoint = "LLVMAppendBasicBlockInContext")]
    public static extern LLVMBasicBlockRef AppendBasicBlockInContext(
        LLVMContextRef c,
        LLVMValueRef fn,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMAddGlobalInAddressSpace")]
    public static extern LLVMValueRef AddGlobalInAddressSpace(
        LLVMModuleRef m,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        uint addressSpace
    );

    [DllImport(Lib, EntryPoint = "LLVMSetInitializer")]
    public static extern void SetInitializer(LLVMValueRef global, LLVMValueRef value);

    [DllImport(Lib, EntryPoint = "LLVMSetAlignment")]
    public static extern void SetAlignment(LLVMValueRef v, uint bytes);

    [DllImport(Lib, EntryPoint = "LLVMTypeOf")]
    public static extern LLVMTypeRef TypeOf(LLVMValueRef v);

    [DllImport(Lib, EntryPoint = "LLVMGetUndef")]
    public static extern LLVMValueRef GetUndef(LLVMTypeRef type);

    [DllImport(Lib, EntryPoint = "LLVMConstReal")]
    public static extern LLVMValueRef ConstReal(LLVMTypeRef type, double value);

    [DllImport(Lib, EntryPoint = "LLVMConstInt")]
    public static extern LLVMValueRef ConstInt(LLVMTypeRef type, ulong value, int signExtend);

    [DllImport(Lib, EntryPoint = "LLVMConstNull")]
    public static extern LLVMValueRef ConstNull(LLVMTypeRef type);

    [DllImport(Lib, EntryPoint = "LLVMCreateBuilderInContext")]
    public static extern LLVMBuilderRef CreateBuilderInContext(LLVMContextRef c);

    [DllImport(Lib, EntryPoint = "LLVMDisposeBuilder")]
    public static extern void DisposeBuilder(LLVMBuilderRef b);

    [DllImport(Lib, EntryPoint = "LLVMPositionBuilderAtEnd")]
    public static extern void PositionBuilderAtEnd(LLVMBuilderRef b, LLVMBasicBlockRef block);

    [DllImport(Lib, EntryPoint = "LLVMGetInsertBlock")]
    public static extern LLVMBasicBlockRef GetInsertBlock(LLVMBuilderRef b);

    [DllImport(Lib, EntryPoint = "LLVMBuildRetVoid")]
    public static extern LLVMValueRef BuildRetVoid(LLVMBuilderRef b);

    [DllImport(Lib, EntryPoint = "LLVMBuildBr")]
    public static extern LLVMValueRef BuildBr(LLVMBuilderRef b, LLVMBasicBlockRef dest);

    [DllImport(Lib, EntryPoint = "LLVMBuildCondBr")]
    public static extern LLVMValueRef BuildCondBr(
        LLVMBuilderRef b,
        LLVMValueRef cond,
        LLVMBasicBlockRef then,
        LLVMBasicBlockRef otherwise
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildPhi")]
    public static extern LLVMValueRef BuildPhi(
        LLVMBuilderRef b,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMAddIncoming")]
    public static extern void AddIncoming(
        LLVMValueRef phi,
        LLVMValueRef* values,
        LLVMBasicBlockRef* blocks,
        uint count
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildGEP2")]
    public static extern LLVMValueRef BuildGEP2(
        LLVMBuilderRef b,
        LLVMTypeRef type,
        LLVMValueRef pointer,
        LLVMValueRef* indices,
        uint count,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildInBoundsGEP2")]
    public static extern LLVMValueRef BuildInBoundsGEP2(
        LLVMBuilderRef b,
        LLVMTypeRef type,
        LLVMValueRef pointer,
        LLVMValueRef* indices,
        uint count,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildLoad2")]
    public static extern LLVMValueRef BuildLoad2(
        LLVMBuilderRef b,
        LLVMTypeRef type,
        LLVMValueRef pointer,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildStore")]
    public static extern LLVMValueRef BuildStore(LLVMBuilderRef b, LLVMValueRef value, LLVMValueRef pointer);

    [DllImport(Lib, EntryPoint = "LLVMBuildAlloca")]
    public static extern LLVMValueRef BuildAlloca(
        LLVMBuilderRef b,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );
}
