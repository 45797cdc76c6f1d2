using System.Diagnostics;
using ParallelCompiler.Backend.Llvm;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Backend;

/// <summary>
/// Compiles a module's kernel functions (made by form-kernels) through LLVM: one LLVM module per target, checked
/// by the LLVM verifier, optimised with <c>default&lt;O3&gt;</c>, then printed (LLVM IR), emitted as PTX or host
/// assembly, or emitted as a host object and linked by the system's C compiler driver into a shared library.
/// </summary>
public static class KernelCompiler
{
    /// <summary>The kernel functions of <paramref name="module"/>, as kernels.</summary>
    public static List<KernelSpec> Specs(Operation module)
    {
        var specs = module.Functions().Where(f => f.GetAttr("kernel") != null).Select(KernelSpec.FromFunction).ToList();
        if (specs.Count == 0 && module.EntryFunction()?.Walk().Any(OpCompute.Supports) == true)
            throw new UserErrorException("the program has no kernels: the pipeline must end with form-kernels");
        return specs;
    }

    /// <summary>Runs <paramref name="use"/> on the verified (and, unless <paramref name="optimize"/> is false,
    /// optimised) LLVM module of the kernels.</summary>
    public static T WithModule<T>(
        Operation module,
        KernelTarget target,
        string? gpu,
        bool optimize,
        Func<KernelCodegen, LlvmTarget, T> use
    ) =>
        WithModule(
            Specs(module),
            module.GetAttr("entry") is StringAttr s ? s.Value : "kernels",
            target,
            gpu,
            optimize,
            use
        );

    /// <summary>Runs <paramref name="use"/> on the verified (and optimised) LLVM module of <paramref
    /// name="specs"/>.</summary>
    public static T WithModule<T>(
        IReadOnlyList<KernelSpec> specs,
        string name,
        KernelTarget target,
        string? gpu,
        bool optimize,
        Func<KernelCodegen, LlvmTarget, T> use,
        bool collectives = false,
        string? cpu = null
    )
    {
        using var machine = target == KernelTarget.Ptx ? LlvmTarget.Nvptx(gpu) : LlvmTarget.Host(cpu);
        using var cg = new KernelCodegen(name, target);
        machine.Prepare(cg.Module);
        foreach (var spec in specs)
            cg.Emit(spec);
        if (collectives)
            cg.EmitCollectiveKernels();
        cg.Verify();
        if (optimize)
        {
            machine.Optimize(cg.Module);
            cg.Verify();
        }
        return use(cg, machine);
    }

    /// <summary>The kernels as optimised LLVM IR.</summary>
    public static string LlvmIr(Operation module, KernelTarget target, string? gpu = null) =>
        WithModule(module, target, gpu, optimize: true, (cg, _) => cg.Print());

    /// <summary>The kernels as PTX.</summary>
    public static string Ptx(Operation module, string? gpu = null) => Ptx(Specs(module), gpu);

    /// <summary><paramref name="specs"/> as PTX, with the collective kernels (<see
    /// cref="Runtime.Gpu.CollectiveKernels"/>) when <paramref name="collectives"/>.</summary>
    public static string Ptx(IReadOnlyList<KernelSpec> specs, string? gpu = null, bool collectives = false) =>
        WithModule(
            specs,
            "kernels",
            KernelTarget.Ptx,
            gpu,
            optimize: true,
            (cg, m) => m.EmitAssembly(cg.Module),
            collectives
        );

    /// <summary>The kernels as host assembly, for this machine's CPU or <paramref name="cpu"/>.</summary>
    public static string HostAssembly(Operation module, string? cpu = null) =>
        WithModule(
            Specs(module),
            module.GetAttr("entry") is StringAttr s ? s.Value : "kernels",
            KernelTarget.Cpu,
            null,
            optimize: true,
            (cg, m) => m.EmitAssembly(cg.Module),
            cpu: cpu
        );

    /// <summary>Compiles the host kernels into the shared library <paramref name="path"/>.</summary>
    public static void BuildHostLibrary(Operation module, string path) => BuildHostLibrary(Specs(module), path);

    /// <summary>
    /// Compiles <paramref name="specs"/> into the shared library <paramref name="path"/> for this machine's CPU or
    /// <paramref name="cpu"/>; <paramref name="optimizedIr"/> receives the LLVM IR the object is emitted from, when
    /// asked for. The host-grid build of the GPU kernels (<see cref="KernelTarget.HostGrid"/>, what an emulated GPU
    /// runs) includes the collective kernels.
    /// </summary>
    public static void BuildHostLibrary(
        IReadOnlyList<KernelSpec> specs,
        string path,
        KernelTarget target = KernelTarget.Cpu,
        Action<string>? optimizedIr = null,
        string? cpu = null
    )
    {
        var obj = WithModule(
            specs,
            "kernels",
            target,
            null,
            optimize: true,
            (cg, m) =>
            {
                optimizedIr?.Invoke(cg.Print());
                return m.EmitObject(cg.Module);
            },
            collectives: target == KernelTarget.HostGrid,
            cpu: cpu
        );
        string objPath = path + ".o";
        File.WriteAllBytes(objPath, obj);
        try
        {
            Link(objPath, path);
        }
        finally
        {
            File.Delete(objPath);
        }
    }

    /// <summary>Links an object into a shared library with the system's C compiler driver (libm for exp, log and
    /// tanh).</summary>
    private static void Link(string obj, string so)
    {
        var psi = new ProcessStartInfo("cc")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-shared", "-o", so, obj, "-lm" })
            psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new UserErrorException(
                "the CPU back end links its kernels with the system's C compiler driver "
                    + "'cc', which is missing (install gcc), or use --backend interp"
            );
        }
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new IRException($"linking the kernel library failed: {err.Trim()}");
    }
}
