using FsCheck;
using FsCheck.Xunit;
using ParallelCompiler.IR;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.IR;

/// <summary>The text form round-trips: print, parse, print gives identical text.</summary>
public class RoundTripTests
{
    [Property(MaxTest = 200)]
    public bool GeneratedProgramsRoundTrip(byte[] steps)
    {
        var module = ProgramGen.Build(steps);
        Verifier.Verify(module);
        string once = Printer.Print(module);
        var parsed = IRParser.ParseModule(once);
        Verifier.Verify(parsed);
        return Printer.Print(parsed) == once
            && Printer.Print(parsed, locations: true)
                == Printer.Print(IRParser.ParseModule(Printer.Print(parsed, true)), true);
    }

    public static TheoryData<string> Examples()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Repo.Path("examples"), "*.mpl").Order())
            data.Add(Path.GetFileName(f));
        return data;
    }

    /// <summary>Every dump between passes reproduces itself through `mplc opt`, with and without locations.</summary>
    [Theory]
    [MemberData(nameof(Examples))]
    public void IRAfterEveryPassRoundTrips(string example)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-dump").FullName;
        try
        {
            var r = Mplc.Run(
                "compile",
                Repo.Path("examples", example),
                "--dump-dir",
                dir,
                "--print-debuginfo",
                "-o",
                Path.Combine(dir, "final.txt")
            );
            Assert.True(r.ExitCode == 0, r.Stderr);
            var dumps = Directory.GetFiles(dir, "*.mplir").Order().ToList();
            Assert.True(dumps.Count >= 5, $"expected the input and one file per pass, got {dumps.Count}");
            Assert.EndsWith("00-input.mplir", dumps[0]);
            foreach (var d in dumps)
            {
                var again = Mplc.Run("opt", d, "--print-debuginfo");
                Assert.True(again.ExitCode == 0, again.Stderr);
                Assert.Equal(File.ReadAllText(d), again.Stdout);
            }
            Assert.Equal(File.ReadAllText(dumps[^1]), File.ReadAllText(Path.Combine(dir, "final.txt")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(1e-8)]
    [InlineData(-3.5e20)]
    [InlineData(2.0)]
    [InlineData(double.NegativeInfinity)]
    [InlineData(5e-324)]
    public void FloatAttributesAreExact(double v)
    {
        string text =
            $"module attributes {{x = {FloatAttr.Format(v)}, s = {StringAttr.Quote("a\"b\\c\nd\u0001")}}} "
            + $"{{\n}}\n";
        var m = IRParser.ParseModule(text);
        Assert.Equal(v, ((FloatAttr)m.GetAttr("x")!).Value);
        Assert.Equal("a\"b\\c\nd\u0001", ((StringAttr)m.GetAttr("s")!).Value);
        Assert.Equal(Printer.Print(m), Printer.Print(IRParser.ParseModule(Printer.Print(m))));
    }
}
