using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Backend;

/// <summary>The <see cref="ProgramManifest"/> of a compiled module: what the runtime needs besides the
/// instructions.</summary>
public static class ManifestBuilder
{
    /// <summary>Inputs, results and parameters of the entry function with their global layouts, the mesh, the kernels
    /// (and the CPU they are for).</summary>
    public static ProgramManifest Build(
        Operation module,
        IReadOnlyList<KernelInfo>? kernels = null,
        IReadOnlyDictionary<string, string>? files = null,
        Runtime.Execution.MemoryPlan? memory = null,
        HostCpu? hostCpu = null
    )
    {
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        var entry = func.Regions[0].Entry;
        var resultTypes = func.GetAttr("result_layouts") is ArrayAttr r
            ? r.Items.Select(i => (TensorType)((TypeAttr)i).Type).ToArray()
            : func.ResultTypes().Cast<TensorType>().ToArray();
        return new ProgramManifest
        {
            Name = func.StringAttr("sym_name"),
            Mesh = module.DeviceMesh(),
            MicrobatchAxis = module.GetAttr("microbatch_axis") is StringAttr mb ? mb.Value : null,
            Inputs = entry
                .Arguments.Select(a =>
                {
                    var t = GlobalType(a);
                    return new TensorInfo(
                        a.NameHint ?? $"arg{a.Index}",
                        t.DType,
                        t.ShapeArray,
                        Layout(t),
                        IntegerBound(a)
                    );
                })
                .ToArray(),
            Results = resultTypes
                .Select(
                    (t, i) =>
                        new TensorInfo(resultTypes.Length == 1 ? "out" : $"out{i}", t.DType, t.ShapeArray, Layout(t))
                )
                .ToArray(),
            // A weight tied across pipeline stages appears once per stage, always in the same layout.
            Params = entry
                .Operations.Where(o => o.Name == "tensor.param")
                .GroupBy(o => o.StringAttr("path"))
                .Select(g =>
                {
                    var op = g.First();
                    var t = GlobalType(op.Result);
                    return new ParamInfo(
                        g.Key,
                        t.DType,
                        t.ShapeArray,
                        Layout(t),
                        op.StringAttr("init"),
                        op.GetAttr("std") is null ? 0 : op.FloatAttr("std")
                    );
                })
                .ToArray(),
            Training = func.Walk().Any(o => o.Name == "train.update"),
            Kernels = kernels ?? [],
            Files = files ?? new Dictionary<string, string>(),
            Memory = memory,
            Schedule = Schedule(func),
            HostCpu = hostCpu,
        };
    }

    /// <summary>The global type of a function argument or parameter (after spmdize its own type is the local
    /// block).</summary>
    public static TensorType GlobalType(Value v)
    {
        if (
            v is BlockArgument a
            && a.Owner.Parent?.Owner is { } func
            && func.GetAttr("arg_layouts") is ArrayAttr layouts
        )
            return (TensorType)((TypeAttr)layouts.Items[a.Index]).Type;
        if (v.DefiningOp is { Name: "tensor.param" } p && p.GetAttr("layout") is TypeAttr t)
            return (TensorType)t.Type;
        return v.TensorType;
    }

    /// <summary>The pipeline schedule of a per-device function (its pipe.schedule op), or null.</summary>
    private static ScheduleInfo? Schedule(Operation func)
    {
        var op = func.Regions[0].Entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule");
        if (op == null || func.GetAttr("pipeline") is not DictAttr pipe)
            return null;
        string axis = pipe.Entries.First(e => e.Key == "axis").Value is StringAttr a ? a.Value : "";
        var order = ((ArrayAttr)op.GetAttr("order")!).Items.Select(d => ((ArrayAttr)d).AsStrings()).ToArray();
        return new ScheduleInfo(
            axis,
            op.StringAttr("kind"),
            (int)op.IntAttr("microbatches"),
            (int)op.IntAttr("chunks"),
            order
        );
    }

    private static string[][] Layout(TensorType t) =>
        t.Sharding?.Dims.Select(d => d.ToArray()).ToArray()
        ?? Enumerable.Range(0, t.Rank).Select(_ => Array.Empty<string>()).ToArray();

    /// <summary>Random integer inputs stay within the tables and classes they index.</summary>
    private static long IntegerBound(Value a) => Bound(a) is var b && b == long.MaxValue ? 10 : b;

    /// <summary>
    /// The smallest table or class count the value indexes, followed through every op that only moves values
    /// (collectives, pipeline transfers, shape ops): on a mesh the ids reach their embedding through a slice.
    /// </summary>
    private static long Bound(Value a)
    {
        long bound = long.MaxValue;
        foreach (var (op, idx) in a.Uses)
        {
            if (MovesValues(op.Name))
                foreach (var r in op.Results)
                    bound = Math.Min(bound, Bound(r));
            if (Dialects.Pipe.PipeTransferOpDef.Sends(op))
                foreach (
                    var recv in op.Block!.Operations.Where(o =>
                        Dialects.Pipe.PipeTransferOpDef.Receives(o) && o.IntAttr("channel") == op.IntAttr("channel")
                    )
                )
                    // A started receive's value is its wait's result.
                    bound = Math.Min(
                        bound,
                        Bound(recv.Name == "pipe.recv" ? recv.Result : recv.Result.Uses[0].Op.Result)
                    );
            if (op.Name is "tensor.embedding" or "tensor.embedding_grad" && idx == 0)
                bound = Math.Min(
                    bound,
                    op.Name == "tensor.embedding" ? op.OperandType(1).Shape[0] : op.IntAttr("rows")
                );
            if (op.Name == "tensor.cross_entropy" && idx == 1)
                bound = Math.Min(bound, op.OperandType(0).Shape[^1]);
            if (op.Name == "tensor.one_hot" && idx == 0)
                bound = Math.Min(bound, op.Operands.Count > 1 ? op.IntAttr("total") : op.IntAttr("classes"));
            // Through a kernel to the ops of its function that read the argument.
            if (op.Name == "kernel.launch" && op.ParentOp?.ParentOp?.Function(op.StringAttr("callee")) is { } k)
                bound = Math.Min(bound, Bound(k.Regions[0].Entry.Arguments[idx]));
        }
        return bound;
    }

    private static bool MovesValues(string op) =>
        op
            is "dist.reshard"
                or "dist.all_gather"
                or "dist.all_slice"
                or "dist.all_to_all"
                or "dist.collective_permute"
                or "pipe.transfer"
                or "tensor.reshape"
                or "tensor.transpose"
                or "tensor.broadcast"
                or "tensor.concat"
                or "tensor.slice";
}
