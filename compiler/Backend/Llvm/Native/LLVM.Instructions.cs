using System.Runtime.InteropServices;

namespace ParallelCompiler.Backend.Llvm.Native;

#pragma warning disable CS1591 // named as in the LLVM C API; its documentation applies

/// <summary>The LLVM C API's instruction builders: arithmetic, comparisons, casts, calls and control flow.</summary>
public static unsafe partial class LLVM
{
    [DllImport(Lib, EntryPoint = "LLVMBuildAdd")]
    public static extern LLVMValueRef BuildAdd(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildNSWAdd")]
    public static extern LLVMValueRef BuildNSWAdd(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSub")]
    public static extern LLVMValueRef BuildSub(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildMul")]
    public static extern LLVMValueRef BuildMul(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildNSWMul")]
    public static extern LLVMValueRef BuildNSWMul(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSDiv")]
    public static extern LLVMValueRef BuildSDiv(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSRem")]
    public static extern LLVMValueRef BuildSRem(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildUDiv")]
    public static extern LLVMValueRef BuildUDiv(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildURem")]
    public static extern LLVMValueRef BuildURem(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFAdd")]
    public static extern LLVMValueRef BuildFAdd(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFSub")]
    public static extern LLVMValueRef BuildFSub(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFMul")]
    public static extern LLVMValueRef BuildFMul(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFDiv")]
    public static extern LLVMValueRef BuildFDiv(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFRem")]
    public static extern LLVMValueRef BuildFRem(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFNeg")]
    public static extern LLVMValueRef BuildFNeg(
        LLVMBuilderRef b,
        LLVMValueRef v,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildNeg")]
    public static extern LLVMValueRef BuildNeg(
        LLVMBuilderRef b,
        LLVMValueRef v,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildAnd")]
    public static extern LLVMValueRef BuildAnd(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildOr")]
    public static extern LLVMValueRef BuildOr(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildXor")]
    public static extern LLVMValueRef BuildXor(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildShl")]
    public static extern LLVMValueRef BuildShl(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildLShr")]
    public static extern LLVMValueRef BuildLShr(
        LLVMBuilderRef b,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildICmp")]
    public static extern LLVMValueRef BuildICmp(
        LLVMBuilderRef b,
        LLVMIntPredicate op,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFCmp")]
    public static extern LLVMValueRef BuildFCmp(
        LLVMBuilderRef b,
        LLVMRealPredicate op,
        LLVMValueRef l,
        LLVMValueRef r,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSelect")]
    public static extern LLVMValueRef BuildSelect(
        LLVMBuilderRef b,
        LLVMValueRef cond,
        LLVMValueRef then,
        LLVMValueRef otherwise,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSIToFP")]
    public static extern LLVMValueRef BuildSIToFP(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFPToSI")]
    public static extern LLVMValueRef BuildFPToSI(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildSExt")]
    public static extern LLVMValueRef BuildSExt(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildZExt")]
    public static extern LLVMValueRef BuildZExt(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildTrunc")]
    public static extern LLVMValueRef BuildTrunc(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFPTrunc")]
    public static extern LLVMValueRef BuildFPTrunc(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildFPExt")]
    public static extern LLVMValueRef BuildFPExt(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildIntToPtr")]
    public static extern LLVMValueRef BuildIntToPtr(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildBitCast")]
    public static extern LLVMValueRef BuildBitCast(
        LLVMBuilderRef b,
        LLVMValueRef v,
        LLVMTypeRef type,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildCall2")]
    public static extern LLVMValueRef BuildCall2(
        LLVMBuilderRef b,
        LLVMTypeRef fnType,
        LLVMValueRef fn,
        LLVMValueRef* args,
        uint count,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildInsertElement")]
    public static extern LLVMValueRef BuildInsertElement(
        LLVMBuilderRef b,
        LLVMValueRef vector,
        LLVMValueRef element,
        LLVMValueRef index,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildExtractElement")]
    public static extern LLVMValueRef BuildExtractElement(
        LLVMBuilderRef b,
        LLVMValueRef vector,
        LLVMValueRef index,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMBuildShuffleVector")]
    public static extern LLVMValueRef BuildShuffleVector(
        LLVMBuilderRef b,
        LLVMValueRef v1,
        LLVMValueRef v2,
        LLVMValueRef mask,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name
    );

    [DllImport(Lib, EntryPoint = "LLVMMDStringInContext")]
    public static extern LLVMValueRef MDStringInContext(
        LLVMContextRef c,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string text,
        uint length
    );

    [DllImport(Lib, EntryPoint = "LLVMMDNodeInContext")]
    public static extern LLVMValueRef MDNodeInContext(LLVMContextRef c, LLVMValueRef* values, uint count);

    [DllImport(Lib, EntryPoint = "LLVMAddNamedMetadataOperand")]
    public static extern void AddNamedMetadataOperand(
        LLVMModuleRef m,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string name,
        LLVMValueRef value
    );

    [DllImport(Lib, EntryPoint = "LLVMGetDefaultTargetTriple")]
    public static extern IntPtr GetDefaultTargetTriple();

    [DllImport(Lib, EntryPoint = "LLVMGetHostCPUName")]
    public static extern IntPtr GetHostCPUName();

    [DllImport(Lib, EntryPoint = "LLVMGetHostCPUFeatures")]
    public static extern IntPtr GetHostCPUFeatures();

    [DllImport(Lib, EntryPoint = "LLVMGetTargetFromTriple")]
    public static extern int GetTargetFromTriple(
        [MarshalAs(UnmanagedType.LPUTF8Str)] string triple,
        out LLVMTargetRef target,
        out IntPtr error
    );

    [DllImport(Lib, EntryPoint = "LLVMCreateTargetMachine")]
    public static extern LLVMTargetMachineRef CreateTargetMachine(
        LLVMTargetRef target,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string triple,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string cpu,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string features,
        int level,
        int reloc,
        int codeModel
    );

    [DllImport(Lib, EntryPoint = "LLVMDisposeTargetMachine")]
    public static extern void DisposeTargetMachine(LLVMTargetMachineRef tm);

    [DllImport(Lib, EntryPoint = "LLVMCreateTargetDataLayout")]
    public static extern LLVMTargetDataRef CreateTargetDataLayout(LLVMTargetMachineRef tm);

    [DllImport(Lib, EntryPoint = "LLVMCopyStringRepOfTargetData")]
    public static extern IntPtr CopyStringRepOfTargetData(LLVMTargetDataRef td);

    [DllImport(Lib, EntryPoint = "LLVMDisposeTargetData")]
    public static extern void DisposeTargetData(LLVMTargetDataRef td);

    [DllImport(Lib, EntryPoint = "LLVMTargetMachineEmitToMemoryBuffer")]
    public static extern int TargetMachineEmitToMemoryBuffer(
        LLVMTargetMachineRef tm,
        LLVMModuleRef m,
        int fileType,
        out IntPtr error,
        out LLVMMemoryBufferRef buffer
    );

    [DllImport(Lib, EntryPoint = "LLVMGetBufferStart")]
    public static extern IntPtr GetBufferStart(LLVMMemoryBufferRef buffer);

    [DllImport(Lib, EntryPoint = "LLVMGetBufferSize")]
    public static extern nuint GetBufferSize(LLVMMemoryBufferRef buffer);

    [DllImport(Lib, EntryPoint = "LLVMDisposeMemoryBuffer")]
    public static extern void DisposeMemoryBuffer(LLVMMemoryBufferRef buffer);

    [DllImport(Lib, EntryPoint = "LLVMCreatePassBuilderOptions")]
    public static extern LLVMPassBuilderOptionsRef CreatePassBuilderOptions();

    [DllImport(Lib, EntryPoint = "LLVMDisposePassBuilderOptions")]
    public static extern void DisposePassBuilderOptions(LLVMPassBuilderOptionsRef options);

    [DllImport(Lib, EntryPoint = "LLVMRunPasses")]
    public static extern LLVMErrorRef RunPasses(
        LLVMModuleRef m,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string passes,
        LLVMTargetMachineRef tm,
        LLVMPassBuilderOptionsRef options
    );

    [DllImport(Lib, EntryPoint = "LLVMGetErrorMessage")]
    public static extern IntPtr GetErrorMessage(LLVMErrorRef error);

    [DllImport(Lib, EntryPoint = "LLVMDisposeErrorMessage")]
    public static extern void DisposeErrorMessage(IntPtr message);

    [DllImport(Lib, EntryPoint = "LLVMInitializeX86TargetInfo")]
    public static extern void InitializeX86TargetInfo();

    [DllImport(Lib, EntryPoint = "LLVMInitializeX86Target")]
    public static extern void InitializeX86Target();

    [DllImport(Lib, EntryPoint = "LLVMInitializeX86TargetMC")]
    public static extern void InitializeX86TargetMC();

    [DllImport(Lib, EntryPoint = "LLVMInitializeX86AsmPrinter")]
    public static extern void InitializeX86AsmPrinter();

    [DllImport(Lib, EntryPoint = "LLVMInitializeNVPTXTargetInfo")]
    public static extern void InitializeNVPTXTargetInfo();

    [DllImport(Lib, EntryPoint = "LLVMInitializeNVPTXTarget")]
    public static extern void InitializeNVPTXTarget();

    [DllImport(Lib, EntryPoint = "LLVMInitializeNVPTXTargetMC")]
    public static extern void InitializeNVPTXTargetMC();

    [DllImport(Lib, EntryPoint = "LLVMInitializeNVPTXAsmPrinter")]
    public static extern void InitializeNVPTXAsmPrinter();
}
