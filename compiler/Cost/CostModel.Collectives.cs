using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Cost;

// Communication: alpha-beta over the links a collective's group spans (docs/cost-model.md,
// "Communication").
public static partial class CostModel
{
    /// <summary>
    /// A collective's kind, the bytes one device sends and its alpha-beta time over the links of its group
    /// (docs/cost-model.md); kind null for what moves nothing (a slice, a group of one, the microbatch axis).
    /// </summary>
    public static (string? Kind, double Bytes, double Seconds) Collective(
        Operation op,
        DeviceMesh mesh,
        Cluster cluster
    )
    {
        if (
            op.Operands.Count == 0
            || op.Name
                is "dist.all_slice"
                    or "pipe.recv"
                    or "pipe.recv_start"
                    or "pipe.wait"
                    or "pipe.schedule"
                    or "dist.recv"
                    or "dist.wait"
        )
            return (null, 0, 0);
        // A started bucket is one collective of all its operands.
        var start = op.Def as Dialects.Dist.CollectiveStartOpDef;
        double m =
            start == null
                ? (double)op.OperandType(0).NumElements * op.OperandType(0).DType.Size()
                : op.Operands.Sum(v => (double)((TensorType)v.Type).NumElements * ((TensorType)v.Type).DType.Size());
        if (op.Name is "pipe.send" or "pipe.send_start" or "dist.send" or "dist.collective_permute")
        {
            // Point to point: one message on the link between the two devices (across nodes unless the peer is in this
            // one).
            string? axisName = op.GetAttr("axis") is StringAttr a ? a.Value : PipelineAxis(op.ParentOp);
            bool sameNode =
                axisName != null && mesh.AxisNames.Contains(axisName) && SpansOneNode(mesh, [axisName], cluster);
            return (
                op.Name.StartsWith("pipe.", StringComparison.Ordinal) ? "pipe send" : op.Name[5..],
                m,
                PointToPointSeconds(m, sameNode, cluster)
            );
        }
        var axes = op.GetAttr("axes") is ArrayAttr arr
            ? arr.AsStrings().Where(x => x != ModuleOp.MicrobatchAxis).ToArray()
            : [];
        int n = (int)mesh.Product(axes);
        if (n <= 1)
            return (null, 0, 0);
        string name = start?.SyncName ?? op.Name;
        string kind = name[5..];
        double sent = DeviceStats.RingBytesSent(name, n, m);
        return (kind, sent, CollectiveSeconds(kind, m, mesh.Group(0, axes), cluster));
    }

    /// <summary>
    /// The alpha-beta time of one collective of <paramref name="kind"/> (all_reduce, all_gather, reduce_scatter,
    /// all_to_all) whose operand is <paramref name="bytes"/> a device, over the devices <paramref name="group"/>
    /// (global ranks, 8 a node in rank order): a ring inside one node on NVLink; across nodes an all-reduce is
    /// hierarchical or a tree, whichever is faster, and the other kinds a ring on InfiniBand.
    /// </summary>
    public static double CollectiveSeconds(string kind, double bytes, IReadOnlyList<int> group, Cluster cluster)
    {
        int n = group.Count;
        if (n <= 1)
            return 0;
        double m = bytes;
        int nodes = group.Select(r => r / cluster.GpusPerNode).Distinct().Count();
        int perNode = n / nodes;
        double eff = cluster.Efficiency.Network;
        double Ring(string k, double size, int members, Link l)
        {
            if (members <= 1)
                return 0;
            double bw = l.BytesPerSecond * eff,
                share = (members - 1.0) / members;
            return k switch
            {
                "all_reduce" => 2 * share * size / bw + 2 * (members - 1) * l.LatencySeconds,
                _ => share * size / bw + (members - 1) * l.LatencySeconds,
            };
        }
        // The message size each kind moves: a gather's whole result, a scatter's or all-to-all's input.
        double size = kind == "all_gather" ? m * n : m;
        if (nodes == 1)
            return Ring(kind, size, n, cluster.IntraNode);
        if (kind != "all_reduce")
            return Ring(kind, size, n, cluster.InterNode);
        // Hierarchical: reduce-scatter inside each node, all-reduce of one node's share across nodes, all-gather
        // back; or a tree across all GPUs (NCCL picks it for small messages): whichever is faster.
        double hier =
            Ring("reduce_scatter", m, perNode, cluster.IntraNode)
            + Ring("all_reduce", m / perNode, nodes, cluster.InterNode)
            + Ring("all_gather", m, perNode, cluster.IntraNode);
        double tree =
            2 * Math.Ceiling(Math.Log2(n)) * cluster.InterNode.LatencySeconds
            + 2 * m / (cluster.InterNode.BytesPerSecond * eff);
        return Math.Min(hier, tree);
    }

    /// <summary>One message of <paramref name="bytes"/> between two GPUs, on NVLink when they share a node.</summary>
    public static double PointToPointSeconds(double bytes, bool sameNode, Cluster cluster)
    {
        var link = sameNode ? cluster.IntraNode : cluster.InterNode;
        return bytes / (link.BytesPerSecond * cluster.Efficiency.Network) + link.LatencySeconds;
    }

    /// <summary>True when every group over <paramref name="axes"/> lies inside one node (ranks are row-major over the
    /// mesh).</summary>
    private static bool SpansOneNode(DeviceMesh mesh, string[] axes, Cluster cluster) =>
        mesh.Group(0, axes).Select(r => r / cluster.GpusPerNode).Distinct().Count() == 1;
}
