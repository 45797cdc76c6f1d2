using ParallelCompiler.IR;
using Xunit;

namespace ParallelCompiler.Tests.IR;

/// <summary>The start/wait pairs of asynchronous collectives: their text form and each message of their
/// checks.</summary>
public class AsyncCollectiveTests
{
    private static string Module(string body) =>
        "module attributes {spmd = true} {\n"
        + "  dist.mesh {axes = [\"dp\", \"tp\"], shape = [2, 2], sym_name = \"grid\"} : () -> ()\n"
        + "  func.func @f(%a: tensor<4x6xf32>, %b: tensor<8xf32>) -> tensor<4x6xf32> {\n"
        + body
        + "\n  }\n}\n";

    private const string Pair =
        "    %0, %1 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"} : "
        + "(tensor<4x6xf32>, tensor<8xf32>) -> (tensor<4x6xf32>, tensor<8xf32>)\n"
        + "    %2, %3 = dist.wait %0, %1 : (tensor<4x6xf32>, tensor<8xf32>) -> (tensor<4x6xf32>, tensor<8xf32>)\n"
        + "    func.return %2 : tensor<4x6xf32>";

    [Fact]
    public void StartAndWaitPrintAndParseBack()
    {
        var m = IRParser.ParseModule(Module(Pair));
        Assert.Null(Verifier.Check(m));
        string printed = Printer.Print(m);
        Assert.Contains("%0, %1 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"}", printed);
        Assert.Contains("%2, %3 = dist.wait %0, %1 :", printed);
        Assert.Equal(printed, Printer.Print(IRParser.ParseModule(printed)));
    }

    [Fact]
    public void ReduceScatterStartChecksEachOperandsShape()
    {
        string body =
            "    %0 = dist.reduce_scatter_start %a {axes = [\"tp\"], dim = 1} : (tensor<4x6xf32>) -> tensor<4x3xf32>\n"
            + "    %1 = dist.wait %0 : (tensor<4x3xf32>) -> tensor<4x3xf32>\n"
            + "    func.return %a : tensor<4x6xf32>";
        Assert.Null(Verifier.Check(IRParser.ParseModule(Module(body))));
        var wrong = IRParser.ParseModule(Module(body.Replace("4x3xf32", "4x2xf32")));
        Assert.Equal(
            "'dist.reduce_scatter_start': reduce_scatter_start: over [tp] (2 devices) a tensor<4x6xf32> gives "
                + "tensor<4x3xf32>, not tensor<4x2xf32>",
            Verifier.Check(wrong)
        );
    }

    [Theory]
    [InlineData(
        "    %0 = dist.all_reduce_start %a {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>) -> tensor<4x6xf32>"
            + "\n    func.return %a : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: result 0 is never waited for (every start needs one dist.wait)"
    )]
    [InlineData(
        "    %0 = dist.all_reduce_start %a {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>) -> tensor<4x6xf32>"
            + "\n    %1 = dist.wait %0 : (tensor<4x6xf32>) -> tensor<4x6xf32>"
            + "\n    %2 = dist.wait %0 : (tensor<4x6xf32>) -> tensor<4x6xf32>\n    func.return %a : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: result 0 has 2 uses; its only use must be a dist.wait"
    )]
    [InlineData(
        "    %0 = dist.all_reduce_start %a {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>) -> tensor<4x6xf32>"
            + "\n    func.return %0 : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: result 0 is read by func.return; only a dist.wait may read it"
    )]
    [InlineData(
        "    %0, %1 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>, tensor<8xf32>) -> (tensor<4x6xf32>, tensor<8xf32>)\n"
            + "    %2 = dist.wait %0 : (tensor<4x6xf32>) -> tensor<4x6xf32>\n"
            + "    %3 = dist.wait %1 : (tensor<8xf32>) -> tensor<8xf32>\n    func.return %2 : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: one dist.wait must wait for all 2 results, in order"
    )]
    [InlineData(
        "    %0, %1 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>, tensor<8xf32>) -> (tensor<4x6xf32>, tensor<8xf32>)\n"
            + "    %2, %3 = dist.wait %1, %0 : (tensor<8xf32>, tensor<4x6xf32>) -> (tensor<8xf32>, tensor<4x6xf32>)\n"
            + "    func.return %3 : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: one dist.wait must wait for all 2 results, in order"
    )]
    [InlineData(
        "    %0 = tensor.exp %a : (tensor<4x6xf32>) -> tensor<4x6xf32>\n"
            + "    %1 = dist.wait %0 : (tensor<4x6xf32>) -> tensor<4x6xf32>\n    func.return %1 : tensor<4x6xf32>",
        "'dist.wait': wait: operand 0 is not the result of a collective start (dist.*_start)"
    )]
    [InlineData(
        "    %0 = dist.all_reduce_start %a {axes = [\"pp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>) -> tensor<4x6xf32>"
            + "\n    %1 = dist.wait %0 : (tensor<4x6xf32>) -> tensor<4x6xf32>\n    func.return %1 : tensor<4x6xf32>",
        "'dist.all_reduce_start': all_reduce_start: mesh axis 'pp' is not an axis of the mesh (dp=2,tp=2)"
    )]
    public void VerifierMessages(string body, string message) =>
        Assert.Equal(message, Verifier.Check(IRParser.ParseModule(Module(body))));

    [Fact]
    public void WaitBeforeItsStartIsAUseBeforeTheDefinition()
    {
        var m = IRParser.ParseModule(Module(Pair));
        var start = m.EntryFunction()!.Regions[0].Entry.First!;
        start.MoveBefore(start.Next!.Next!); // after the wait
        Assert.Equal(
            "'dist.wait': operand 0 is used before it is defined (or is defined in another function)",
            Verifier.Check(m)
        );
    }

    [Theory]
    [InlineData(
        "%0 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>, tensor<8xf32>) -> tensor<4x6xf32>",
        "all_reduce_start: needs one result type per operand (2)"
    )]
    [InlineData(
        "%0, %1 = dist.all_reduce_start %a, %b {axes = [\"dp\"], reduction = \"sum\"} : "
            + "(tensor<4x6xf32>, tensor<8xf32>) -> (tensor<4x6xf32>, tensor<8xi32>)",
        "all_reduce_start: operand 1: result tensor<8xi32> must have the element type and rank of the operand "
            + "tensor<8xf32>"
    )]
    public void StartTypesAreCheckedWhenBuilt(string op, string message)
    {
        string body = $"    {op}\n    func.return %a : tensor<4x6xf32>";
        var e = Assert.Throws<IRException>(() => IRParser.ParseModule(Module(body), "t.mplir"));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
