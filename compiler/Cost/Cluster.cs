using System.Globalization;
using System.Text.Json;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Cost;

/// <summary>A network link as the cost model sees it: bandwidth one GPU can send at, and the latency of one
/// message.</summary>
/// <param name="BytesPerSecond">Unidirectional bandwidth a GPU gets on this link, in bytes per second.</param>
/// <param name="LatencySeconds">The fixed cost of one step of a collective (one message), in seconds.</param>
public sealed record Link(double BytesPerSecond, double LatencySeconds);

/// <summary>How far real kernels and collectives fall short of the hardware's peaks (all in (0, 1]).</summary>
/// <param name="Matmul">The share of peak FLOP/s a large matmul reaches.</param>
/// <param name="MatmulHalfDim">The size at which a matmul dimension reaches half its efficiency (see
/// docs/cost-model.md).</param>
/// <param name="Memory">The share of HBM bandwidth a memory-bound kernel reaches.</param>
/// <param name="Network">The share of a link's bandwidth a collective reaches.</param>
/// <param name="KernelLaunchSeconds">The fixed cost of one kernel launch.</param>
public sealed record Efficiencies(
    double Matmul,
    double MatmulHalfDim,
    double Memory,
    double Network,
    double KernelLaunchSeconds
);

/// <summary>
/// A described cluster: nodes of identical GPUs, the GPUs of a node joined by NVLink/NVSwitch, the nodes by
/// InfiniBand. Built in (<see cref="Presets"/>) or read from a JSON file with the same fields (docs/cost-model.md).
/// </summary>
public sealed record Cluster(
    string Name,
    int Nodes,
    int GpusPerNode,
    IReadOnlyDictionary<string, double> PeakFlops,
    double HbmBytes,
    double HbmBytesPerSecond,
    Link IntraNode,
    int InterNodeLinks,
    double InterNodeLinkBytesPerSecond,
    double InterNodeLatencySeconds,
    Efficiencies Efficiency
)
{
    /// <summary>All GPUs of the cluster.</summary>
    public int Gpus => Nodes * GpusPerNode;

    /// <summary>What one GPU can send across nodes: its node's InfiniBand links shared by the node's GPUs.</summary>
    public Link InterNode => new(InterNodeLinks * InterNodeLinkBytesPerSecond / GpusPerNode, InterNodeLatencySeconds);

    /// <summary>Dense peak FLOP/s for arithmetic in <paramref name="t"/>: f32 on the f32 units, f16 and bf16 on the
    /// tensor cores.</summary>
    public double Peak(DType t) =>
        PeakFlops[
            t switch
            {
                DType.F16 => "fp16",
                DType.BF16 => "bf16",
                _ => "fp32",
            }
        ];

    private const double G = 1e9,
        T = 1e12,
        GiB = 1024.0 * 1024 * 1024;

    /// <summary>Efficiencies calibrated on Megatron-LM's Table 1 (the 1.7B and 39.1B rows on a100-80g-selene,
    /// <c>./build.sh bench table1</c>; docs/cost-model.md says where each comes from). Memory and the launch
    /// overhead are assumptions the fit did not move.</summary>
    private static readonly Efficiencies Default = new(
        Matmul: 0.89,
        MatmulHalfDim: 256,
        Memory: 0.8,
        Network: 1.0,
        KernelLaunchSeconds: 4e-6
    );

    /// <summary>
    /// The built-in clusters. Figures are the vendors' data-sheet numbers (dense, without sparsity):
    /// a100-80g-selene: DGX A100 80 GB nodes as in Narayanan et al. (SC'21), 8 A100 SXM a node on NVSwitch (NVLink 3,
    /// 600 GB/s a GPU both ways, so 300 GB/s each way), 8 HDR InfiniBand links of 200 Gb/s a node; A100: 19.5 TFLOP/s
    /// fp32, 312 TFLOP/s fp16/bf16 tensor cores, 2.039 TB/s HBM2e; 384 nodes (the paper's largest run, 3,072 GPUs).
    /// h100-sxm: DGX H100, 8 H100 SXM5 80 GB on NVSwitch (NVLink 4, 900 GB/s both ways), 8 NDR links of 400 Gb/s;
    /// 67 TFLOP/s fp32, 989 TFLOP/s fp16/bf16, 3.35 TB/s HBM3. h200-sxm: the same node with H200 SXM 141 GB
    /// (HBM3e, 4.8 TB/s), compute as the H100. Latencies are typical NCCL per-step figures (assumed, not data-sheet).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, Cluster> Presets = new Dictionary<string, Cluster>(
        StringComparer.Ordinal
    )
    {
        ["a100-80g-selene"] = new(
            "a100-80g-selene",
            384,
            8,
            Peaks(19.5 * T, 312 * T),
            80 * GiB,
            2039 * G,
            new Link(300 * G, 3e-6),
            8,
            25 * G,
            6e-6,
            Default
        ),
        ["h100-sxm"] = new(
            "h100-sxm",
            128,
            8,
            Peaks(67 * T, 989 * T),
            80 * GiB,
            3350 * G,
            new Link(450 * G, 3e-6),
            8,
            50 * G,
            6e-6,
            Default
        ),
        ["h200-sxm"] = new(
            "h200-sxm",
            128,
            8,
            Peaks(67 * T, 989 * T),
            140 * GiB,
            4800 * G,
            new Link(450 * G, 3e-6),
            8,
            50 * G,
            6e-6,
            Default
        ),
    };

    private static Dictionary<string, double> Peaks(double fp32, double half) =>
        new()
        {
            ["fp32"] = fp32,
            ["fp16"] = half,
            ["bf16"] = half,
        };

    /// <summary>A preset by name, or a JSON file; every problem is a <see cref="ClusterException"/> naming the
    /// field.</summary>
    public static Cluster Load(string nameOrFile)
    {
        if (Presets.TryGetValue(nameOrFile, out var preset))
            return preset;
        if (!nameOrFile.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            throw new ClusterException(
                $"unknown cluster '{nameOrFile}' (presets: {string.Join(", ", Presets.Keys)}; " + $"or a .json file)"
            );
        string text;
        try
        {
            text = File.ReadAllText(nameOrFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ClusterException($"cannot read cluster file '{nameOrFile}': {e.Message}");
        }
        try
        {
            return Parse(text, nameOrFile);
        }
        catch (JsonException e)
        {
            throw new ClusterException($"{nameOrFile}: not valid JSON: {e.Message}");
        }
    }

    /// <summary>
    /// Reads a cluster from JSON: <c>name</c>, <c>nodes</c>, <c>gpus_per_node</c>, <c>peak_tflops</c> (<c>fp32</c>,
    /// <c>fp16</c>, <c>bf16</c>), <c>hbm_gib</c>, <c>hbm_gbps</c>, <c>nvlink_gbps</c>, <c>nvlink_latency_us</c>,
    /// <c>ib_links_per_node</c>, <c>ib_link_gbps</c> (bytes: 200 Gb/s HDR is 25), <c>ib_latency_us</c>, and optionally
    /// <c>efficiency</c> (<c>matmul</c>, <c>matmul_half_dim</c>, <c>memory</c>, <c>network</c>,
    /// <c>kernel_launch_us</c>).
    /// </summary>
    public static Cluster Parse(string json, string file)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
            throw new ClusterException($"{file}: the cluster must be a JSON " + $"object");
        string[] known =
        [
            "name",
            "nodes",
            "gpus_per_node",
            "peak_tflops",
            "hbm_gib",
            "hbm_gbps",
            "nvlink_gbps",
            "nvlink_latency_us",
            "ib_links_per_node",
            "ib_link_gbps",
            "ib_latency_us",
            "efficiency",
        ];
        foreach (var p in root.EnumerateObject())
            if (!known.Contains(p.Name))
                throw new ClusterException(
                    $"{file}: unknown field '{p.Name}' (fields: " + $"{string.Join(", ", known)})"
                );
        double Num(JsonElement obj, string field, string path, double min, double? dflt = null)
        {
            if (!obj.TryGetProperty(field, out var v))
                return dflt ?? throw new ClusterException($"{file}: missing field '{path}'");
            if (v.ValueKind != JsonValueKind.Number)
                throw new ClusterException(
                    $"{file}: field '{path}' must be a " + $"number, got {v.ValueKind.ToString().ToLowerInvariant()}"
                );
            double x = v.GetDouble();
            if (!(x >= min) || double.IsInfinity(x))
                throw new ClusterException(
                    $"{file}: field '{path}' must be at "
                        + $"least {min.ToString(CultureInfo.InvariantCulture)}, got {v.GetRawText()}"
                );
            return x;
        }
        int Int(string field)
        {
            double x = Num(root, field, field, 1);
            return x == Math.Floor(x) && x <= int.MaxValue
                ? (int)x
                : throw new ClusterException(
                    $"{file}: field '{field}' must be a whole number, got "
                        + $"{x.ToString(CultureInfo.InvariantCulture)}"
                );
        }
        if (!root.TryGetProperty("peak_tflops", out var peaks) || peaks.ValueKind != JsonValueKind.Object)
            throw new ClusterException($"{file}: field 'peak_tflops' must be an object with fp32, fp16 and bf16");
        var peak = new Dictionary<string, double>();
        foreach (var k in new[] { "fp32", "fp16", "bf16" })
            peak[k] = Num(peaks, k, $"peak_tflops.{k}", 1e-9) * T;
        var eff = Default;
        if (root.TryGetProperty("efficiency", out var e))
        {
            if (e.ValueKind != JsonValueKind.Object)
                throw new ClusterException($"{file}: field 'efficiency' must be " + $"an object");
            double Share(string f, double d)
            {
                double x = Num(e, f, $"efficiency.{f}", 1e-9, d);
                return x <= 1
                    ? x
                    : throw new ClusterException(
                        $"{file}: field 'efficiency.{f}' is a share of the "
                            + $"peak, at most 1, got {x.ToString(CultureInfo.InvariantCulture)}"
                    );
            }
            eff = new Efficiencies(
                Share("matmul", Default.Matmul),
                Num(e, "matmul_half_dim", "efficiency.matmul_half_dim", 0, Default.MatmulHalfDim),
                Share("memory", Default.Memory),
                Share("network", Default.Network),
                Num(e, "kernel_launch_us", "efficiency.kernel_launch_us", 0, Default.KernelLaunchSeconds * 1e6) * 1e-6
            );
        }
        string name =
            root.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                ? n.GetString()!
                : Path.GetFileNameWithoutExtension(file);
        return new Cluster(
            name,
            Int("nodes"),
            Int("gpus_per_node"),
            peak,
            Num(root, "hbm_gib", "hbm_gib", 1e-9) * GiB,
            Num(root, "hbm_gbps", "hbm_gbps", 1e-9) * G,
            new Link(
                Num(root, "nvlink_gbps", "nvlink_gbps", 1e-9) * G,
                Num(root, "nvlink_latency_us", "nvlink_latency_us", 0) * 1e-6
            ),
            Int("ib_links_per_node"),
            Num(root, "ib_link_gbps", "ib_link_gbps", 1e-9) * G,
            Num(root, "ib_latency_us", "ib_latency_us", 0) * 1e-6,
            eff
        );
    }
}

/// <summary>A cluster that cannot be used: an unknown preset, or a file with a missing or wrong field.</summary>
public sealed class ClusterException(string message) : Exception(message);
