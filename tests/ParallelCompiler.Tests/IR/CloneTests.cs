using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Syntax;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.IR;

/// <summary><see cref="Operation.Clone"/> and <see cref="ModuleOp.ResizeMesh"/>: one module, many candidate
/// builds.</summary>
public class CloneTests
{
    private static Operation Gpt(string? mesh = null)
    {
        var options = new CompileOptions();
        options.Defines["L"] = 2;
        if (mesh != null)
            foreach (var part in mesh.Split(','))
                options.Mesh.Add(new(part.Split('=')[0], long.Parse(part.Split('=')[1])));
        return Compilation.FrontEnd(
            Compilation.ReadSource(Repo.Path("examples", "gpt.mpl")),
            options,
            new DiagnosticBag()
        );
    }

    private static IEnumerable<object> Parts(Operation module) =>
        module
            .Walk()
            .SelectMany(op =>
                new object[] { op }
                    .Concat(op.Results)
                    .Concat(op.Regions)
                    .Concat(op.Regions.SelectMany(r => r.Blocks))
                    .Concat(op.Regions.SelectMany(r => r.Blocks).SelectMany(b => b.Arguments))
            );

    [Fact]
    public void AClonePrintsTheSameAndSharesNothing()
    {
        var module = Gpt();
        var clone = module.Clone();
        Assert.Equal(Printer.Print(module, true), Printer.Print(clone, true));
        var mine = new HashSet<object>(Parts(module), ReferenceEqualityComparer.Instance);
        Assert.DoesNotContain(Parts(clone), mine.Contains);
        // Every use inside the clone is of a value of the clone.
        var cloned = new HashSet<object>(Parts(clone), ReferenceEqualityComparer.Instance);
        Assert.All(clone.Walk().SelectMany(o => o.Operands), v => Assert.Contains(v, cloned));
        // Changing the clone leaves the original as it was.
        string before = Printer.Print(module);
        clone.Walk().First(o => o.Name == "tensor.param").SetAttr("init", Attr.Str("zeros"));
        clone.Regions[0].Entry.Operations.First(o => o.Name == "func.func").Regions[0].Entry.Arguments[0].NameHint =
            "renamed";
        Assert.Equal(before, Printer.Print(module));
        Assert.NotEqual(before, Printer.Print(clone));
    }

    [Fact]
    public void AResizedCloneCompilesAsTheSourceWithThatMeshDoes()
    {
        var clone = Gpt().Clone();
        clone.ResizeMesh(new Dictionary<string, int> { ["dp"] = 1, ["tp"] = 4 });
        var fromSource = Gpt("dp=1,tp=4");
        var registry = (ParallelCompiler.Passes.Infrastructure.PassRegistry)
            CompilerServices.Create().GetService(typeof(ParallelCompiler.Passes.Infrastructure.PassRegistry))!;
        foreach (var m in new[] { clone, fromSource })
            Compilation.RunPipeline(
                m,
                Pipelines.Create(),
                new ParallelCompiler.Passes.Infrastructure.IRPrintingOptions(),
                registry
            );
        Assert.Equal(Printer.Print(fromSource), Printer.Print(clone));
        Assert.Equal(
            (2, 1, 4),
            (clone.DeviceMesh().Size("pp"), clone.DeviceMesh().Size("dp"), clone.DeviceMesh().Size("tp"))
        );
    }

    [Fact]
    public void ResizingNamesWhatIsWrong()
    {
        var m = Gpt();
        Assert.Contains(
            "no axis 'xx'",
            Assert.Throws<IRException>(() => m.ResizeMesh(new Dictionary<string, int> { ["xx"] = 2 })).Message
        );
        Assert.Contains(
            "at least one device",
            Assert.Throws<IRException>(() => m.ResizeMesh(new Dictionary<string, int> { ["dp"] = 0 })).Message
        );
    }
}
