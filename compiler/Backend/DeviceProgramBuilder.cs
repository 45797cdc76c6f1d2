using ParallelCompiler.Dialects.Dist;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Backend;

/// <summary>
/// Turns a per-device function (after spmdize) into the runtime's <see cref="DeviceProgram"/>: every
/// <c>kernel.launch</c> becomes a launch of its compiled kernel (host library or GPU) or, without one, of the
/// reference interpreter over its kernel function; a bare tensor op an interpreted kernel; every dist op a
/// collective or transfer.
/// </summary>
public static class DeviceProgramBuilder
{
    /// <summary>
    /// The device program of <paramref name="func"/>; <paramref name="kernels"/> gives the compiled kernel of a
    /// <c>kernel.launch</c> (by default the reference interpreter runs the kernel function).
    /// </summary>
    public static DeviceProgram Build(Operation func, Func<Operation, IKernel>? kernels = null)
    {
        var slots = new Dictionary<Value, int>(ReferenceEqualityComparer.Instance);
        int Slot(Value v) => slots.TryGetValue(v, out int s) ? s : slots[v] = slots.Count;
        var code = new List<Instruction>();
        var entry = func.Regions[0].Entry;
        foreach (var a in entry.Arguments)
            code.Add(new InputInstr("argument", a.NameHint ?? $"#{a.Index}", a.Index, Slot(a)));
        int[] results = [];
        foreach (var op in entry.Operations)
        {
            int before = code.Count;
            string where = op.Location.IsUnknown ? "" : $"{op.Location.File}:{op.Location.Line}:{op.Location.Column}";
            int Out() => Slot(op.Result);
            TensorType T() => op.Result.TensorType;
            CollectiveInstr Coll(CollectiveKind kind, int dim = 0, int dim2 = 0) =>
                new(
                    op.Name,
                    where,
                    kind,
                    ((ArrayAttr)op.GetAttr("axes")!).AsStrings(),
                    dim,
                    dim2,
                    op.GetAttr("reduction") is StringAttr { Value: "max" } ? ReduceKind.Max : ReduceKind.Sum,
                    [],
                    Slot(op.Operands[0]),
                    Out()
                );
            switch (op.Name)
            {
                case "func.return":
                    results = op.Operands.Select(Slot).ToArray();
                    break;
                case "pipe.boundary" or "pipe.schedule":
                    break;
                case "tensor.param":
                    code.Add(new ParamInstr(op.Name, where, op.StringAttr("path"), T().DType, T().ShapeArray, Out()));
                    break;
                case "dist.all_reduce":
                    code.Add(Coll(CollectiveKind.AllReduce));
                    break;
                case "dist.all_reduce_start" or "dist.reduce_scatter_start" or "dist.all_gather_start":
                    code.Add(
                        new StartInstr(
                            op.Name,
                            where,
                            op.Name switch
                            {
                                "dist.all_reduce_start" => CollectiveKind.AllReduce,
                                "dist.reduce_scatter_start" => CollectiveKind.ReduceScatter,
                                _ => CollectiveKind.AllGather,
                            },
                            ((ArrayAttr)op.GetAttr("axes")!).AsStrings(),
                            op.GetAttr("dim") is IntAttr dim ? (int)dim.Value : 0,
                            op.GetAttr("reduction") is StringAttr { Value: "max" } ? ReduceKind.Max : ReduceKind.Sum,
                            op.Operands.Select(Slot).ToArray(),
                            Slot(op.Results[0])
                        )
                    );
                    break;
                case "dist.wait":
                    var started = WaitOpDef.StartOf(op);
                    code.Add(
                        new WaitInstr(
                            op.Name,
                            where,
                            Slot(started.Results[0]),
                            started.Operands.Select(Slot).ToArray(),
                            op.Results.Select(Slot).ToArray()
                        )
                    );
                    break;
                case "dist.all_gather":
                    code.Add(Coll(CollectiveKind.AllGather, (int)op.IntAttr("dim")));
                    break;
                case "dist.all_slice":
                    code.Add(Coll(CollectiveKind.AllSlice, (int)op.IntAttr("dim")));
                    break;
                case "dist.reduce_scatter":
                    code.Add(Coll(CollectiveKind.ReduceScatter, (int)op.IntAttr("dim")));
                    break;
                case "dist.all_to_all":
                    code.Add(
                        Coll(CollectiveKind.AllToAll, (int)op.IntAttr("split_dim"), (int)op.IntAttr("concat_dim"))
                    );
                    break;
                case "dist.collective_permute":
                    code.Add(
                        new CollectiveInstr(
                            op.Name,
                            where,
                            CollectiveKind.CollectivePermute,
                            [],
                            0,
                            0,
                            ReduceKind.Sum,
                            CollectivePermuteOpDef.Pairs(op.GetAttr("pairs"), m => new IRException(m)),
                            Slot(op.Operands[0]),
                            Out()
                        )
                    );
                    break;
                case "dist.send":
                    code.Add(
                        new SendInstr(
                            op.Name,
                            where,
                            op.StringAttr("axis"),
                            (int)op.IntAttr("shift"),
                            Slot(op.Operands[0])
                        )
                    );
                    break;
                case "dist.recv":
                    code.Add(
                        new RecvInstr(
                            op.Name,
                            where,
                            op.StringAttr("axis"),
                            (int)op.IntAttr("shift"),
                            T().DType,
                            T().ShapeArray,
                            Out()
                        )
                    );
                    break;
                case "train.update":
                    code.Add(
                        new UpdateInstr(
                            op.Name,
                            where,
                            Dialects.Train.ParameterEffectOpDef.PathOf(op),
                            Slot(op.Operands[1])
                        )
                    );
                    break;
                case "train.grad":
                    throw new IRException("a device program cannot hold train.grad: run the optimizer " + "pass first");
                case "pipe.recv_start":
                    // Nothing to post: the receive happens at its wait.
                    break;
                case Dialects.Pipe.WaitOpDef.OpName when op.Results.Count == 0:
                    // A send returns at once on every back end (its message is copied or queued): nothing to wait for.
                    break;
                case "pipe.send":
                case "pipe.send_start":
                    code.Add(
                        new PipeSendInstr(
                            op.Name,
                            where,
                            (int)op.IntAttr("from"),
                            (int)op.IntAttr("to"),
                            (int)op.IntAttr("channel"),
                            Slot(op.Operands[0])
                        )
                    );
                    break;
                case "pipe.recv":
                case Dialects.Pipe.WaitOpDef.OpName:
                    // A started receive happens at its wait, with its start's channel and stages.
                    var posted = op.Name == "pipe.recv" ? op : Dialects.Pipe.WaitOpDef.StartOf(op);
                    code.Add(
                        new PipeRecvInstr(
                            posted.Name,
                            where,
                            (int)posted.IntAttr("from"),
                            (int)posted.IntAttr("to"),
                            (int)posted.IntAttr("channel"),
                            T().DType,
                            T().ShapeArray,
                            Out()
                        )
                    );
                    break;
                case "pipe.transfer":
                    throw new IRException(
                        "a device program cannot hold pipe.transfer: run " + "pipeline-schedule first"
                    );
                case "dist.reshard":
                    throw new IRException("a device program cannot hold dist.reshard: run spmdize " + "first");
                case "kernel.launch":
                    var callee = op.StringAttr("callee");
                    var kernel = kernels?.Invoke(op) ?? new InterpretedFunctionKernel(func.ParentOp!.Function(callee)!);
                    code.Add(
                        new LaunchInstr(
                            $"kernel {callee}",
                            where,
                            kernel,
                            op.Operands.Select(Slot).ToArray(),
                            T().DType,
                            T().ShapeArray,
                            Out()
                        )
                    );
                    break;
                default:
                    if (op.Results.Count != 1)
                        throw new IRException($"no device instruction for {op.Name}");
                    code.Add(
                        new LaunchInstr(
                            op.Name,
                            where,
                            new InterpretedKernel(op),
                            op.Operands.Select(Slot).ToArray(),
                            T().DType,
                            T().ShapeArray,
                            Out()
                        )
                    );
                    break;
            }
            // pipeline-schedule gave every op of a pipelined program its stage and phase.
            int stage = op.GetAttr("stage") is IntAttr st ? (int)st.Value : -1;
            string phase = op.GetAttr("phase") is StringAttr ph ? ph.Value : "forward";
            for (int k = before; k < code.Count; k++)
                code[k] = code[k] with
                {
                    Stage = stage,
                    Backward = phase == "backward",
                    Weight = phase == "weight",
                    PerStep = phase == "step",
                    Setup = phase == "setup",
                };
        }
        var schedule = entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule");
        if (schedule == null)
            return entry.Operations.Any(o => o.GetAttr("stage") != null)
                ? throw new IRException(
                    "a pipelined device program needs its pipe.schedule: run pipeline-schedule " + "first"
                )
                : new DeviceProgram(func.StringAttr("sym_name"), slots.Count, code, results);
        var pipe = ((DictAttr)func.GetAttr("pipeline")!).Entries.ToDictionary(e => e.Key, e => e.Value);
        var module = func.ParentOp;
        string? mb = module?.GetAttr("microbatch_axis") is StringAttr m ? m.Value : null;
        int microbatches = (int)schedule.IntAttr("microbatches");
        if (microbatches != (mb == null ? 1 : module!.DeviceMesh().Size(mb)))
            throw new IRException(
                $"the schedule has {microbatches} microbatches but the mesh's microbatch axis has "
                    + $"{(mb == null ? 1 : module!.DeviceMesh().Size(mb))}"
            );
        return new DeviceProgram(
            func.StringAttr("sym_name"),
            slots.Count,
            code,
            results,
            ((StringAttr)pipe["axis"]).Value
        )
        {
            MicrobatchAxis = mb,
            Microbatches = microbatches,
            Schedule = Dialects.Pipe.ScheduleOpDef.Order(
                schedule.GetAttr("order"),
                microbatches,
                (int)schedule.IntAttr("chunks"),
                msg => new IRException(msg)
            ),
        };
    }
}

/// <summary>A kernel that runs one op with the reference interpreter (the simulated CPU device's kernels).</summary>
public sealed class InterpretedKernel(Operation op) : IHostKernel
{
    /// <inheritdoc/>
    public string Name => op.Name;

    /// <inheritdoc/>
    public void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
    {
        var r = Interpreter.Evaluate(
            op,
            inputs.ToArray(),
            _ => throw new InterpreterException("parameters are loaded by the executor")
        )!;
        var o = outputs[0];
        if (r.F != null)
            Array.Copy(r.F, o.F!, r.F.Length);
        else
            Array.Copy(r.I!, o.I!, r.I!.Length);
    }
}

/// <summary>A kernel function (made by form-kernels) run by the reference interpreter.</summary>
public sealed class InterpretedFunctionKernel(Operation func) : IHostKernel
{
    /// <inheritdoc/>
    public string Name => func.StringAttr("sym_name");

    /// <inheritdoc/>
    public void Execute(IReadOnlyList<NDArray> inputs, IReadOnlyList<NDArray> outputs)
    {
        var r = Interpreter.Run(
            func,
            inputs.ToArray(),
            _ => throw new InterpreterException("kernel functions hold no parameters")
        )[0];
        var o = outputs[0];
        if (r.F != null)
            Array.Copy(r.F, o.F!, r.F.Length);
        else
            Array.Copy(r.I!, o.I!, r.I!.Length);
    }
}
