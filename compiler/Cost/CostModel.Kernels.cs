using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Cost;

// Compute: the roofline of a kernel or a bare tensor op (docs/cost-model.md, "Compute").
public static partial class CostModel
{
    /// <summary>
    /// The roofline time of a kernel launch or a bare tensor op: its FLOPs at the dtype's peak times the matmul
    /// shape efficiency, against the bytes it reads and writes at HBM bandwidth, plus the launch overhead.
    /// </summary>
    public static double KernelSeconds(Operation op, Operation module, Cluster cluster) =>
        Kernel(
            op,
            module
                .Functions()
                .Where(f => f.GetAttr("kernel") != null)
                .ToDictionary(f => f.StringAttr("sym_name"), StringComparer.Ordinal),
            cluster
        ).Seconds;

    /// <summary>A kernel's kind, FLOPs, HBM bytes and roofline time (<see cref="KernelSeconds"/>).</summary>
    private static (string Kind, double Flops, double Bytes, double Seconds, bool MemoryBound) Kernel(
        Operation op,
        IReadOnlyDictionary<string, Operation> kernels,
        Cluster cluster
    )
    {
        if (
            op.Dialect is not ("tensor" or "kernel")
            || op.Name is "tensor.param" or "tensor.constant"
            || op.Results.Count != 1
        )
            return ("", 0, 0, 0, false);
        double flops = DeviceStats.OpFlops(op);
        double bytes = op
            .Operands.Concat<Value>(op.Results)
            .Sum(v => (double)v.TensorType.NumElements * v.TensorType.DType.Size());
        var body = op.Name == "kernel.launch" ? kernels[op.StringAttr("callee")] : null;
        var matmul =
            body != null ? body.Regions[0].Entry.Operations.FirstOrDefault(o => o.Name == "tensor.matmul")
            : op.Name == "tensor.matmul" ? op
            : null;
        double mm = 0,
            n = 0,
            k = 0;
        if (matmul != null)
        {
            // m x k by k x n, batch dimensions folded into m.
            var r = matmul.Result.TensorType;
            n = r.Rank >= 1 && matmul.OperandType(1).Rank >= 2 ? r.Shape[^1] : 1;
            k = matmul.OperandType(0).Shape[^1];
            mm = r.NumElements / Math.Max(1, n);
        }
        // A matmul runs at its operands' peak (a half-precision one may return its f32 accumulator).
        var dtype = matmul != null ? matmul.OperandType(0).DType : op.Result.TensorType.DType;
        var (seconds, memoryBound) = Roofline(flops, bytes, dtype, matmul != null ? (mm, n, k) : null, cluster);
        string kind =
            body?.GetAttr("kernel") is StringAttr ks ? ks.Value
            : matmul != null ? "matmul"
            : "elementwise";
        return (kind, flops, bytes, seconds, memoryBound);
    }

    /// <summary>
    /// One kernel's time: <paramref name="flops"/> at the dtype's peak times the efficiency (for a matmul of
    /// <paramref name="matmul"/> = m, n, k, each dimension d at d / (d + half) of it), against <paramref
    /// name="bytes"/> at HBM bandwidth, plus the launch; and whether memory is the limit.
    /// </summary>
    public static (double Seconds, bool MemoryBound) Roofline(
        double flops,
        double bytes,
        DType dtype,
        (double M, double N, double K)? matmul,
        Cluster cluster
    )
    {
        var e = cluster.Efficiency;
        double eff = e.Matmul;
        if (matmul is var (mm, n, k))
            eff *= Shape(mm, e.MatmulHalfDim) * Shape(n, e.MatmulHalfDim) * Shape(k, e.MatmulHalfDim);
        double computeSeconds = flops / (cluster.Peak(dtype) * eff);
        double memorySeconds = bytes / (cluster.HbmBytesPerSecond * e.Memory);
        return (Math.Max(computeSeconds, memorySeconds) + e.KernelLaunchSeconds, memorySeconds > computeSeconds);
    }

    private static double Shape(double d, double half) => d / (d + half);
}
