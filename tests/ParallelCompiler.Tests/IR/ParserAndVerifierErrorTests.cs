using ParallelCompiler.IR;
using Xunit;

namespace ParallelCompiler.Tests.IR;

/// <summary>Each message of the IR parser and the verifier, asserted exactly with its location.</summary>
public class ParserAndVerifierErrorTests
{
    private static string Func(string body, string args = "%x: tensor<4xf32>", string ret = "tensor<4xf32>") =>
        $"module {{\n  func.func @f({args}) -> {ret} {{\n{body}\n  }}\n}}\n";

    private static string ParseError(string text)
    {
        var e = Assert.Throws<IRException>(() => IRParser.ParseModule(text, "t.mplir"));
        return e.Message;
    }

    [Theory]
    [InlineData(
        "    %0 = tensor.exp %y : (tensor<4xf32>) -> tensor<4xf32>\n    func.return %0 : tensor<4xf32>",
        "t.mplir:3:21: error: use of undefined value %y"
    )]
    [InlineData(
        "    %0 = tensor.frobnicate %x : (tensor<4xf32>) -> tensor<4xf32>\n    func.return %0 : tensor<4xf32>",
        "t.mplir:3:10: error: unknown operation 'tensor.frobnicate'"
    )]
    [InlineData(
        "    %0 = tensor.exp %x : (tensor<4xf64>) -> tensor<4xf32>\n    func.return %0 : tensor<4xf32>",
        "unknown element type 'f64'"
    )]
    [InlineData(
        "    %0 = tensor.exp %x : (tensor<4xf32>) -> tensor<5xf32>\n    func.return %0 : tensor<4xf32>",
        "exp: result 0 has type tensor<5xf32> but the operands give tensor<4xf32>"
    )]
    [InlineData(
        "    %0 = tensor.exp %x : (tensor<4xf32>) -> tensor<4xf32>\n    %0 = tensor.exp %x : (tensor<4xf32>) "
            + "-> tensor<4xf32>\n    func.return %0 : tensor<4xf32>",
        "redefinition of %0"
    )]
    [InlineData(
        "    %0 = tensor.add %x : (tensor<4xf32>) -> tensor<4xf32>\n    func.return %0 : tensor<4xf32>",
        "add: expects 2 operand(s), got 1"
    )]
    [InlineData(
        "    %0 = tensor.sum %x {axes = [3]} : (tensor<4xf32>) -> tensor<f32>\n    func.return %0 : " + "tensor<4xf32>",
        "sum: axis 3 is out of range for a tensor of rank 1"
    )]
    [InlineData(
        "    %0 = tensor.exp %x : (tensor<4xf32>) -> tensor<4xf32>\n    func.return %0 : tensor<4xi32>",
        "type tensor<4xi32> does not match the value's type tensor<4xf32>"
    )]
    [InlineData("    %0 = tensor.exp %x {a = } : (tensor<4xf32>) -> tensor<4xf32>", "expected an attribute")]
    public void ParserErrors(string body, string message) => Assert.Contains(message, ParseError(Func(body)));

    [Fact]
    public void ErrorShowsSourceLineAndCaret()
    {
        var lines = ParseError(Func("    %0 = tensor.exp %y : (tensor<4xf32>) -> tensor<4xf32>")).Split('\n');
        Assert.Equal("    %0 = tensor.exp %y : (tensor<4xf32>) -> tensor<4xf32>", lines[1]);
        Assert.Equal("                    ^", lines[2]);
    }

    [Fact]
    public void VerifierNamesOpAndProblem()
    {
        var m = IRParser.ParseModule(
            Func("    %0 = tensor.exp %x : (tensor<4xf32>) -> tensor<4xf32>\n    func.return " + "%0 : tensor<4xf32>")
        );
        var exp = m.EntryFunction()!.Regions[0].Entry.First!;
        exp.Results[0].Type = new TensorType(DType.F32, [7]);
        Assert.Equal(
            "'tensor.exp': exp: result 0 has type tensor<7xf32> but the operands give tensor<4xf32>",
            Verifier.Check(m)
        );

        var m2 = IRParser.ParseModule(Func("    func.return %x : tensor<4xf32>"));
        m2.EntryFunction()!.SetResultTypes([new TensorType(DType.F32, [2])]);
        Assert.Equal(
            "'func.return': return: value 0 has type tensor<4xf32> but the function returns tensor<2xf32>",
            Verifier.Check(m2)
        );

        var m3 = IRParser.ParseModule(
            Func(
                "    %0 = tensor.exp %x : (tensor<4xf32>) -> tensor<4xf32>\n    %1 = "
                    + "tensor.exp %0 : (tensor<4xf32>) -> tensor<4xf32>\n    func.return %1 : tensor<4xf32>"
            )
        );
        var first = m3.EntryFunction()!.Regions[0].Entry.First!;
        var second = first.Next!;
        first.Block!.Unlink(first);
        second.Block!.InsertBefore(first, second.Next); // now %0 is used before it is defined
        Assert.Equal(
            "'tensor.exp': operand 0 is used before it is defined (or is defined in another function)",
            Verifier.Check(m3)
        );
    }
}
