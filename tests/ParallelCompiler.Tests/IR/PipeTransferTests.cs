using ParallelCompiler.IR;
using Xunit;

namespace ParallelCompiler.Tests.IR;

/// <summary>Pipeline transfers as start/wait pairs: the text form, each message of their checks, and where
/// <c>schedule-collectives</c> puts the waits in a compiled pipeline.</summary>
public class PipeTransferTests
{
    private static string Module(string body) =>
        "module attributes {spmd = true} {\n"
        + "  dist.mesh {axes = [\"pp\"], shape = [2], sym_name = \"grid\"} : () -> ()\n"
        + "  func.func @f(%a: tensor<4x6xf32>) -> tensor<4x6xf32> {\n"
        + body
        + "\n  }\n}\n";

    private const string Pair =
        "    %0 = pipe.send_start %a {channel = 0, from = 0, stage = 0, to = 1} : "
        + "(tensor<4x6xf32>) -> tensor<4x6xf32>\n"
        + "    %1 = pipe.recv_start {channel = 0, from = 0, stage = 1, to = 1} : () -> tensor<4x6xf32>\n"
        + "    pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()\n"
        + "    %2 = pipe.wait %1 {stage = 1} : (tensor<4x6xf32>) -> tensor<4x6xf32>\n"
        + "    func.return %2 : tensor<4x6xf32>";

    [Fact]
    public void StartsAndWaitsPrintAndParseBack()
    {
        var m = IRParser.ParseModule(Module(Pair));
        Assert.Null(Verifier.Check(m));
        string printed = Printer.Print(m);
        Assert.Contains("pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()", printed);
        Assert.Contains("%2 = pipe.wait %1 {stage = 1} : (tensor<4x6xf32>) -> tensor<4x6xf32>", printed);
        Assert.Equal(printed, Printer.Print(IRParser.ParseModule(printed)));
    }

    [Theory]
    [InlineData(
        "    pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()\n",
        "",
        "'pipe.send_start': send_start: its handle must have exactly one use, a pipe.wait (it has 0)"
    )]
    [InlineData(
        "    %2 = pipe.wait %1 {stage = 1} : (tensor<4x6xf32>) -> tensor<4x6xf32>\n    func.return %2",
        "    func.return %1",
        "'pipe.recv_start': recv_start: its handle must have exactly one use, a pipe.wait (it has 1)"
    )]
    [InlineData(
        "    pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()",
        "    %9 = pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> tensor<4x6xf32>",
        "'pipe.wait': wait: the wait of a pipe.send_start has 0 result(s), found 1"
    )]
    [InlineData(
        "    pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()",
        "    pipe.wait %0 {stage = 0} : (tensor<4x6xf32>) -> ()\n    pipe.wait %a : (tensor<4x6xf32>) -> ()",
        "'pipe.wait': wait: its operand is not the handle of a pipe.send_start or pipe.recv_start"
    )]
    [InlineData(
        "{channel = 0, from = 0, stage = 1, to = 1}",
        "{channel = 1, from = 0, stage = 1, to = 1}",
        "'pipe.recv_start': recv: channel 1 needs exactly one pipe.send, found 0"
    )]
    public void VerifierMessages(string replace, string with, string message)
    {
        string body = Pair.Replace(replace, with);
        Assert.NotEqual(Pair, body);
        Assert.Equal(message, Verifier.Check(IRParser.ParseModule(Module(body))));
    }

    /// <summary>In a compiled two-stage gpt, every transfer is a start/wait pair: the backward's receive waits later
    /// than its start, past ops of its task that do not read the gradient, and the first reader follows the wait;
    /// <c>--sync-collectives</c> leaves the blocking send and receive.</summary>
    [Fact]
    public void ScheduleCollectivesStartsTransfersAndWaitsForThemLate()
    {
        string Compile(params string[] extra)
        {
            var r = Support.Mplc.Run([
                "compile",
                Support.Repo.Path("examples", "gpt.mpl"),
                "-D",
                "L=2",
                "--mesh",
                "pp=2,dp=1,tp=1",
                .. extra,
            ]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return r.Stdout;
        }
        var lines = Compile().Split('\n');
        Assert.DoesNotContain(lines, l => l.Contains("pipe.send ") || l.Contains("pipe.recv "));
        int starts = lines.Count(l => l.Contains("= pipe.send_start ")),
            posted = lines.Count(l => l.Contains("= pipe.recv_start "));
        Assert.True(starts > 0 && starts == posted, $"{starts} send starts, {posted} receive starts");
        Assert.Equal(2 * starts, lines.Count(l => l.Contains(" pipe.wait ")));
        // The backward's gradient to stage 0: posted, then stage 0's backward ops that do not need it, then the wait.
        int post = Array.FindIndex(lines, l => l.Contains("pipe.recv_start") && l.Contains("phase = \"backward\""));
        string handle = lines[post].Trim().Split(' ')[0];
        int wait = Array.FindIndex(lines, l => l.Contains($"pipe.wait {handle} "));
        Assert.True(wait > post + 1, $"the wait at line {wait} right after its start at {post}");
        Assert.Contains(
            lines[(post + 1)..wait],
            l => l.Contains("tensor.") && l.Contains("phase = \"backward\", stage = 0")
        );
        string value = lines[wait].Trim().Split(' ')[0];
        Assert.DoesNotContain(lines[..wait], l => l.Contains(value + " ") || l.Contains(value + ","));
        var sync = Compile("--sync-collectives");
        Assert.Contains("pipe.send ", sync);
        Assert.Contains("pipe.recv ", sync);
        Assert.DoesNotContain("_start", sync);
    }
}
