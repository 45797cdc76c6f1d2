using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ParallelCompiler.Backend;
using ParallelCompiler.Driver;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Passes;
using ParallelCompiler.Runtime.Cpu;
using ParallelCompiler.Tests.Interp;
using ParallelCompiler.Tests.IR;
using ParallelCompiler.Tests.Sharding;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>Every op case of the interpreter's numpy tests, compiled into one host library (a kernel per
/// case).</summary>
public sealed class CpuKernelsFixture : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mplc-cpuops").FullName;

    /// <summary>The host library with every case's kernels.</summary>
    public HostKernelLibrary Library { get; }

    /// <summary>Each case's module after form-kernels (its kernels renamed apart).</summary>
    public Dictionary<string, Operation> Modules { get; } = [];

    /// <summary>Forms and compiles the kernels of every case.</summary>
    public CpuKernelsFixture()
    {
        var specs = new List<KernelSpec>();
        int n = 0;
        foreach (var c in OpCases.All.Where(c => c.Bug == null))
        {
            var module = IRParser.ParseModule(c.Module);
            new FormKernels().Run(module);
            foreach (var f in module.Functions().Where(f => f.GetAttr("kernel") != null).ToList())
            {
                string name = $"c{n}_{f.StringAttr("sym_name")}";
                foreach (
                    var launch in module
                        .Walk()
                        .Where(o => o.Name == "kernel.launch" && o.StringAttr("callee") == f.StringAttr("sym_name"))
                )
                    launch.SetAttr("callee", Attr.Str(name));
                f.SetAttr("sym_name", Attr.Str(name));
                specs.Add(KernelSpec.FromFunction(f));
            }
            Verifier.Verify(module);
            Modules[c.Name] = module;
            n++;
        }
        string so = Path.Combine(_dir, "libops.so");
        KernelCompiler.BuildHostLibrary(specs, so);
        Library = new HostKernelLibrary(so);
    }

    /// <inheritdoc/>
    public void Dispose() => Directory.Delete(_dir, true);
}

/// <summary>
/// The CPU back end against the reference: every op case (ranks, broadcasting, axes, element types) within 1e-5
/// relative of the interpreter and within the case's tolerance of numpy; and generated programs (FsCheck), fused by
/// form-kernels, within 1e-5 of the interpreter.
/// </summary>
public sealed class CpuOpTests(NumpyOracle oracle, CpuKernelsFixture kernels)
    : IClassFixture<NumpyOracle>,
        IClassFixture<CpuKernelsFixture>
{
    /// <summary>Every case's name.</summary>
    public static IEnumerable<object[]> Names => InterpreterNumpyTests.Names;

    [Theory]
    [MemberData(nameof(Names))]
    public void Op_on_cpu_matches_interpreter_and_numpy(string name)
    {
        var (c, inputs) = oracle.Case(name);
        var module = kernels.Modules[name];
        var reference = Interpreter.Run(
            IRParser.ParseModule(c.Module).EntryFunction()!,
            inputs,
            _ => throw new InvalidOperationException()
        )[0];
        var got = SpmdRunner.Run(
            module,
            module.EntryFunction()!,
            inputs,
            new Dictionary<string, NDArray>(),
            TimeSpan.FromSeconds(30),
            kernels: op => kernels.Library.Kernel(op.StringAttr("callee"))
        )[0];
        double err = Distributed.MaxRelativeError(reference, got);
        Assert.True(err <= 1e-5, $"{name}: cpu differs from the interpreter by {err:G3}\n{c.Module}");
        InterpreterNumpyTests.AssertClose(
            oracle.Expected(name)!,
            got,
            c.Tolerance,
            $"{name} on cpu against numpy\n{c.Module}"
        );
    }
}

/// <summary>Generated programs, fused and compiled, against the interpreter.</summary>
public class CpuPropertyTests
{
    [Property(MaxTest = 60, EndSize = 24)]
    public Property GeneratedProgramsOnCpuEqualTheInterpreter(byte[] steps)
    {
        var module = ProgramGen.Build(steps, 12, 8, 24);
        var (args, parameters) = Layouts.Inputs(module, seed: (ulong)steps.Length * 7 + 1);
        string before = Printer.Print(module);
        var expected = Interpreter.Run(module.EntryFunction()!, args, op => parameters[op.StringAttr("path")])[0];
        new FormKernels().Run(module);
        Verifier.Verify(module);
        string dir = Directory.CreateTempSubdirectory("mplc-prop").FullName;
        try
        {
            string so = Path.Combine(dir, "lib.so");
            KernelCompiler.BuildHostLibrary(module, so);
            using var lib = new HostKernelLibrary(so);
            var got = SpmdRunner.Run(
                module,
                module.EntryFunction()!,
                args,
                parameters,
                TimeSpan.FromSeconds(30),
                kernels: op => lib.Kernel(op.StringAttr("callee"))
            )[0];
            double err = Distributed.MaxRelativeError(expected, got);
            return (err <= 1e-5).Label(
                $"max relative error {err:G3}\n{before}\n--- kernels " + $"---\n{Printer.Print(module)}"
            );
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
