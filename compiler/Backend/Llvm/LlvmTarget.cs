using System.Runtime.InteropServices;
using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Backend.Llvm;

/// <summary>
/// A target machine for kernels: the host CPU (its own CPU name and features, position-independent code for a
/// shared library) or NVPTX (the newest sm and PTX version the loaded LLVM supports, or the one asked for).
/// Optimises modules with the new pass manager's <c>default&lt;O3&gt;</c> and emits assembly or object code.
/// </summary>
public sealed class LlvmTarget : IDisposable
{
    private static readonly Lock InitLock = new();
    private static bool _initialised;
    private readonly LLVMTargetMachineRef _tm;

    /// <summary>The target triple.</summary>
    public string Triple { get; }

    /// <summary>The CPU (x86 model, or sm_XX).</summary>
    public string Cpu { get; }

    /// <summary>The data layout string modules get.</summary>
    public string DataLayout { get; }

    private LlvmTarget(string triple, string cpu, string features, int reloc)
    {
        Init();
        Triple = triple;
        Cpu = cpu;
        if (LLVM.GetTargetFromTriple(triple, out var target, out var err) != 0)
            throw new IRException($"LLVM has no target for {triple}: {LLVM.TakeMessage(err)}");
        _tm = LLVM.CreateTargetMachine(target, triple, cpu, features, 3, reloc, 0);
        var td = LLVM.CreateTargetDataLayout(_tm);
        DataLayout = LLVM.TakeMessage(LLVM.CopyStringRepOfTargetData(td));
        LLVM.DisposeTargetData(td);
    }

    /// <summary>
    /// The host, for a shared library of kernels: this machine's CPU and features (<paramref name="cpu"/> null or
    /// <c>native</c>) or an x86-64 level (<see cref="HostCpu.Levels"/>), whose code runs on any CPU of that level.
    /// </summary>
    public static LlvmTarget Host(string? cpu = null)
    {
        string triple = LLVM.TakeMessage(LLVM.GetDefaultTargetTriple());
        return IsNative(cpu)
            ? new(
                triple,
                LLVM.TakeMessage(LLVM.GetHostCPUName()),
                LLVM.TakeMessage(LLVM.GetHostCPUFeatures()),
                reloc: 2
            )
            : new(triple, cpu!, "", reloc: 2);
    }

    // Whether cpu names this machine's CPU; otherwise it must be an x86-64 level.
    private static bool IsNative(string? cpu)
    {
        if (cpu is null or "native")
            return true;
        if (!HostCpu.Levels.ContainsKey(cpu))
            throw new UserErrorException(
                $"--cpu expects native or one of {string.Join(", ", HostCpu.Levels.Keys)}, " + $"got '{cpu}'"
            );
        return false;
    }

    /// <summary>What code compiled for <see cref="Host(string?)"/> of <paramref name="cpu"/> requires of the CPU it
    /// runs on.</summary>
    public static HostCpu HostRequirements(string? cpu)
    {
        LLVM.EnsureLoaded();
        return IsNative(cpu)
            ? HostCpu.FromLlvm(LLVM.TakeMessage(LLVM.GetHostCPUName()), LLVM.TakeMessage(LLVM.GetHostCPUFeatures()))
            : HostCpu.Level(cpu!);
    }

    /// <summary>NVPTX for <paramref name="sm"/> (e.g. "sm_80"), or the newest the loaded LLVM knows.</summary>
    public static LlvmTarget Nvptx(string? sm = null)
    {
        LLVM.EnsureLoaded();
        var (newestSm, ptx) = LLVM.LoadedVersion >= 16 ? ("sm_90", "+ptx78") : ("sm_86", "+ptx75");
        sm ??= newestSm;
        if (!System.Text.RegularExpressions.Regex.IsMatch(sm, "^sm_[0-9]{2,3}a?$"))
            throw new UserErrorException($"--gpu expects sm_XX (e.g. sm_80), got '{sm}'");
        if (
            int.Parse(sm[3..].TrimEnd('a'), System.Globalization.CultureInfo.InvariantCulture)
            > int.Parse(newestSm[3..], System.Globalization.CultureInfo.InvariantCulture)
        )
            throw new UserErrorException($"--gpu {sm}: the loaded LLVM {LLVM.LoadedVersion} emits at most {newestSm}");
        return new LlvmTarget("nvptx64-nvidia-cuda", sm, ptx, reloc: 0);
    }

    private static void Init()
    {
        lock (InitLock)
        {
            if (_initialised)
                return;
            LLVM.InitializeX86TargetInfo();
            LLVM.InitializeX86Target();
            LLVM.InitializeX86TargetMC();
            LLVM.InitializeX86AsmPrinter();
            LLVM.InitializeNVPTXTargetInfo();
            LLVM.InitializeNVPTXTarget();
            LLVM.InitializeNVPTXTargetMC();
            LLVM.InitializeNVPTXAsmPrinter();
            _initialised = true;
        }
    }

    /// <summary>Sets the module's triple and data layout.</summary>
    public void Prepare(LLVMModuleRef module)
    {
        LLVM.SetTarget(module, Triple);
        LLVM.SetDataLayout(module, DataLayout);
    }

    /// <summary>Runs <c>default&lt;O3&gt;</c> (or another pipeline) on the module.</summary>
    public void Optimize(LLVMModuleRef module, string passes = "default<O3>")
    {
        var options = LLVM.CreatePassBuilderOptions();
        try
        {
            var err = LLVM.RunPasses(module, passes, _tm, options);
            if (err.Handle != IntPtr.Zero)
            {
                var msg = LLVM.GetErrorMessage(err);
                string text = Marshal.PtrToStringUTF8(msg) ?? "";
                LLVM.DisposeErrorMessage(msg);
                throw new IRException($"LLVM passes '{passes}': {text}");
            }
        }
        finally
        {
            LLVM.DisposePassBuilderOptions(options);
        }
    }

    /// <summary>Assembly text (PTX for NVPTX).</summary>
    public string EmitAssembly(LLVMModuleRef module) => System.Text.Encoding.UTF8.GetString(Emit(module, 0));

    /// <summary>An object file.</summary>
    public byte[] EmitObject(LLVMModuleRef module) => Emit(module, 1);

    private byte[] Emit(LLVMModuleRef module, int fileType)
    {
        if (LLVM.TargetMachineEmitToMemoryBuffer(_tm, module, fileType, out var err, out var buffer) != 0)
            throw new IRException($"LLVM could not emit code for {Triple}: {LLVM.TakeMessage(err)}");
        try
        {
            var bytes = new byte[(int)LLVM.GetBufferSize(buffer)];
            Marshal.Copy(LLVM.GetBufferStart(buffer), bytes, 0, bytes.Length);
            return bytes;
        }
        finally
        {
            LLVM.DisposeMemoryBuffer(buffer);
        }
    }

    /// <inheritdoc/>
    public void Dispose() => LLVM.DisposeTargetMachine(_tm);
}
