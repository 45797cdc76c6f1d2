using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Xunit;

namespace ParallelCompiler.Tests.Support;

/// <summary>What ptxas reports for one kernel: registers per thread, bytes of static shared memory, stack and
/// spills.</summary>
public sealed record PtxasKernel(
    string Name,
    int Registers,
    int SharedBytes,
    int StackBytes,
    int SpillStores,
    int SpillLoads
);

/// <summary>
/// NVIDIA's PTX assembler and disassembler as an oracle for the generated PTX: <c>./build.sh test</c> unpacks them
/// from Debian's nvidia-cuda-toolkit package into bin/nvidia/ (or <c>MPLC_PTXAS</c> names ptxas). No GPU is needed.
/// </summary>
public static partial class Ptxas
{
    private static readonly Lazy<string?> Found = new(Find);

    /// <summary>The ptxas found, or null.</summary>
    public static string? Path => Found.Value;

    /// <summary>Why the ptxas tests skip, or null when ptxas is here.</summary>
    public static string? Missing =>
        Path == null
            ? "needs NVIDIA's ptxas: ./build.sh test fetches it (Debian non-free, nvidia-cuda-toolkit) "
                + "into bin/nvidia/, "
                + "or set MPLC_PTXAS"
            : null;

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("MPLC_PTXAS") is { Length: > 0 } env)
            return File.Exists(env) ? env : null;
        string local = Repo.Path("bin", "nvidia", "ptxas");
        if (File.Exists(local))
            return local;
        foreach (
            var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(
                ':',
                StringSplitOptions.RemoveEmptyEntries
            )
        )
            if (File.Exists(System.IO.Path.Combine(dir, "ptxas")))
                return System.IO.Path.Combine(dir, "ptxas");
        return null;
    }

    /// <summary>
    /// Assembles <paramref name="ptx"/> for <paramref name="arch"/> (e.g. sm_90) with <c>-v</c>; fails the test with
    /// ptxas's messages if it does not assemble; returns each entry's figures, and the cubin's path when
    /// <paramref name="cubin"/> is given.
    /// </summary>
    public static Dictionary<string, PtxasKernel> Assemble(string ptx, string arch, string? cubin = null)
    {
        string dir = Directory.CreateTempSubdirectory("mplc-ptxas").FullName;
        try
        {
            string input = System.IO.Path.Combine(dir, "kernels.ptx");
            File.WriteAllText(input, ptx);
            var (code, output) = Run(
                Path!,
                [
                    "-arch",
                    arch,
                    "-v",
                    "--warn-on-spills",
                    input,
                    "-o",
                    cubin ?? System.IO.Path.Combine(dir, "kernels.cubin"),
                ]
            );
            Assert.True(code == 0, $"ptxas -arch {arch} rejected the PTX:\n{output}");
            return Parse(output);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>The SASS of a cubin, by nvdisasm (beside ptxas).</summary>
    public static string Disassemble(string cubin)
    {
        string nvdisasm = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(Path!)!, "nvdisasm");
        var (code, output) = Run(nvdisasm, [cubin]);
        Assert.True(code == 0, $"nvdisasm failed:\n{output}");
        return output;
    }

    /// <summary>
    /// The opcodes (predicates dropped, modifiers kept: <c>LDS.128</c>) of the innermost loop of nvdisasm's listing:
    /// the shortest stretch from a label to a branch back to it, other than a branch to itself.
    /// </summary>
    public static List<string> InnermostLoop(string sass)
    {
        var lines = sass.Split('\n');
        List<string>? best = null;
        for (int i = 0; i < lines.Length; i++)
        {
            if (LabelLine().Match(lines[i]) is not { Success: true } label)
                continue;
            var ops = new List<string>();
            for (int j = i + 1; j < lines.Length; j++)
            {
                if (InstructionLine().Match(lines[j]) is not { Success: true } ins)
                    continue;
                ops.Add(ins.Groups[1].Value);
                if (
                    ins.Groups[1].Value.StartsWith("BRA", StringComparison.Ordinal)
                    && lines[j].Contains($"({label.Groups[1].Value})", StringComparison.Ordinal)
                )
                {
                    // A branch to itself (the trap after the exit) is no loop of the kernel's.
                    if (ops.Count > 1 && (best == null || ops.Count < best.Count))
                        best = ops;
                    break;
                }
            }
        }
        return best ?? throw new InvalidOperationException("no loop in the disassembly");
    }

    /// <summary>Parses ptxas -v: "Compiling entry function 'k' for 'sm_90'", "N bytes stack frame, N bytes spill
    /// stores, N bytes spill loads", "Used N registers, N bytes smem".</summary>
    public static Dictionary<string, PtxasKernel> Parse(string output)
    {
        var result = new Dictionary<string, PtxasKernel>();
        string? name = null;
        int stack = 0,
            stores = 0,
            loads = 0;
        foreach (var line in output.Split('\n'))
        {
            if (EntryLine().Match(line) is { Success: true } e)
                (name, stack, stores, loads) = (e.Groups[1].Value, 0, 0, 0);
            else if (FrameLine().Match(line) is { Success: true } f)
                (stack, stores, loads) = (Int(f.Groups[1]), Int(f.Groups[2]), Int(f.Groups[3]));
            else if (UsedLine().Match(line) is { Success: true } u && name != null)
            {
                var smem = SmemPart().Match(line);
                result[name] = new PtxasKernel(
                    name,
                    Int(u.Groups[1]),
                    smem.Success ? Int(smem.Groups[1]) : 0,
                    stack,
                    stores,
                    loads
                );
                name = null;
            }
        }
        return result;
    }

    private static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);

    private static (int Code, string Output) Run(string exe, string[] args)
    {
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }

    [GeneratedRegex(@"^(\.L_x_\d+):")]
    private static partial Regex LabelLine();

    [GeneratedRegex(@"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")]
    private static partial Regex InstructionLine();

    [GeneratedRegex(@"Compiling entry function '([^']+)'")]
    private static partial Regex EntryLine();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex FrameLine();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex UsedLine();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex SmemPart();
}

/// <summary>A fact that skips, saying why, where ptxas is missing.</summary>
public sealed class PtxasFactAttribute : FactAttribute
{
    /// <summary>Skips without ptxas.</summary>
    public PtxasFactAttribute() => Skip = Ptxas.Missing;
}

/// <summary>A theory that skips, saying why, where ptxas is missing.</summary>
public sealed class PtxasTheoryAttribute : TheoryAttribute
{
    /// <summary>Skips without ptxas.</summary>
    public PtxasTheoryAttribute() => Skip = Ptxas.Missing;
}
