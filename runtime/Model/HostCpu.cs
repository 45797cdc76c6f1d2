namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// The x86-64 CPU a bundle's host kernels (<c>libkernels.so</c>, <c>libkernels-grid.so</c>) were compiled for: a
/// name (an x86-64 level such as <c>x86-64-v3</c>, which bundles use unless asked otherwise, or the compiling
/// machine's own CPU) and the instruction-set extensions the code may use, by their Linux <c>/proc/cpuinfo</c>
/// names. The runtime checks them before loading the kernels, so that a bundle built on another machine fails with
/// an error naming what this CPU lacks instead of an illegal instruction.
/// </summary>
public sealed record HostCpu(string Name, IReadOnlyList<string> Features)
{
    private static readonly string[] V2 = ["cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"];
    private static readonly string[] V3 =
    [
        .. V2,
        "abm",
        "avx",
        "avx2",
        "bmi1",
        "bmi2",
        "f16c",
        "fma",
        "movbe",
        "xsave",
    ];
    private static readonly string[] V4 = [.. V3, "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"];

    /// <summary>The x86-64 levels (psABI microarchitecture levels) and the extensions each requires.</summary>
    public static IReadOnlyDictionary<string, string[]> Levels { get; } =
        new Dictionary<string, string[]>
        {
            ["x86-64"] = [],
            ["x86-64-v2"] = V2,
            ["x86-64-v3"] = V3,
            ["x86-64-v4"] = V4,
        };

    /// <summary>The level bundles are compiled for unless another CPU is asked for: AVX2 and FMA, any x86-64 server CPU
    /// since 2013-2015.</summary>
    public const string DefaultLevel = "x86-64-v3";

    // LLVM's names of the extensions code generation may use, where /proc/cpuinfo names them otherwise or the same.
    private static readonly Dictionary<string, string> LlvmToCpuinfo = new()
    {
        ["sse3"] = "pni",
        ["ssse3"] = "ssse3",
        ["sse4.1"] = "sse4_1",
        ["sse4.2"] = "sse4_2",
        ["popcnt"] = "popcnt",
        ["avx"] = "avx",
        ["avx2"] = "avx2",
        ["fma"] = "fma",
        ["f16c"] = "f16c",
        ["bmi"] = "bmi1",
        ["bmi2"] = "bmi2",
        ["lzcnt"] = "abm",
        ["movbe"] = "movbe",
        ["avx512f"] = "avx512f",
        ["avx512bw"] = "avx512bw",
        ["avx512dq"] = "avx512dq",
        ["avx512vl"] = "avx512vl",
        ["avx512cd"] = "avx512cd",
        ["avx512vbmi"] = "avx512vbmi",
        ["avx512vbmi2"] = "avx512_vbmi2",
        ["avx512vnni"] = "avx512_vnni",
        ["avx512bf16"] = "avx512_bf16",
        ["avx512fp16"] = "avx512_fp16",
        ["avx512ifma"] = "avx512ifma",
        ["avx512bitalg"] = "avx512_bitalg",
        ["avx512vpopcntdq"] = "avx512_vpopcntdq",
        ["gfni"] = "gfni",
        ["vaes"] = "vaes",
        ["vpclmulqdq"] = "vpclmulqdq",
        ["avxvnni"] = "avx_vnni",
    };

    /// <summary>A level by name.</summary>
    public static HostCpu Level(string name) => new(name, Levels[name]);

    /// <summary>A CPU by LLVM's name and feature string (<c>+avx2,-avx512f,...</c>): the enabled extensions it
    /// knows.</summary>
    public static HostCpu FromLlvm(string name, string features) =>
        new(
            name,
            [
                .. features
                    .Split(',', StringSplitOptions.RemoveEmptyEntries)
                    .Where(f => f.StartsWith('+'))
                    .Select(f => LlvmToCpuinfo.GetValueOrDefault(f[1..]))
                    .OfType<string>()
                    .Distinct()
                    .Order(StringComparer.Ordinal),
            ]
        );

    /// <summary>The extensions of <see cref="Features"/> this machine's CPU lacks (none when its flags cannot be
    /// read).</summary>
    public IReadOnlyList<string> MissingHere()
    {
        var flags = CpuFlags();
        return flags == null ? [] : [.. Features.Where(f => !flags.Contains(f))];
    }

    /// <summary>Throws a <see cref="RunInputException"/> naming what is missing, unless this CPU runs the
    /// code.</summary>
    public void CheckHere(string what)
    {
        var missing = MissingHere();
        if (missing.Count > 0)
            throw new RunInputException(
                $"{what} were compiled for the CPU {Name}, and this machine's lacks "
                    + $"{string.Join(", ", missing)}: "
                    + $"compile the bundle again with --cpu {DefaultLevel} (runs on any x86-64 server CPU of the last "
                    + $"decade) or --cpu native on this machine"
            );
    }

    private static HashSet<string>? CpuFlags()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo")
                .FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            return line == null
                ? null
                : [.. line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)];
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
