using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>sharding-propagation</c>: gives every tensor a sharding. Shardings the program states are fixed: arguments
/// and parameters (replicated when they carry none), <c>dist.reshard</c> results and any value already sharded.
/// Every other value starts open and is refined through the ops' sharding rules, forward then backward, until
/// nothing changes. Refinement only ever splits a dimension that is not yet split, so it terminates. Conflicts
/// follow <see cref="FactorSharding.Resolve"/>: the larger tensor keeps its layout and the smaller one is
/// resharded. Values nothing splits end replicated; results of split reductions are marked partial.
/// </summary>
public sealed class ShardingPropagation : IPass
{
    /// <inheritdoc/>
    public string Name => "sharding-propagation";

    /// <inheritdoc/>
    public string Description => "propagate user shardings to every tensor through the ops' sharding rules";

    /// <summary>Most forward-and-backward sweeps (a fixpoint is normally reached in two or three).</summary>
    [PassOption("max-sweeps", "most forward-and-backward sweeps over the program")]
    public int MaxSweeps { get; set; } = 64;

    /// <summary>
    /// Who wins where an activation and a sharded parameter split the same mesh axis along different factors:
    /// <c>activations</c> (the larger tensor keeps its layout), <c>parameters</c> (the parameter keeps its layout
    /// and the activation is moved to it: sequence parallelism's gathers before and reduce-scatters after the
    /// weights), or <c>auto</c> (both, keeping the one whose reshards move fewer bytes per device).
    /// </summary>
    [PassOption("priority", "auto, activations or parameters: who keeps its layout where they disagree")]
    public string Priority { get; set; } = "auto";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.IsSpmd())
            return false; // already per-device: layouts are fixed in the types
        switch (Priority)
        {
            case "activations":
                return Propagate(module, false);
            case "parameters":
                return Propagate(module, true);
            case "auto":
                break;
            default:
                throw new PassInputException(
                    module.Location,
                    $"sharding-propagation: option priority must be auto, activations or parameters, got '{Priority}'"
                );
        }
        // Priority to parameters can only change the program where an activation won over a parameter: when no
        // parameter has to move, the activations' propagation stands (a Megatron program is propagated once).
        // Otherwise each priority is costed by the reshards insert-reshards then adds, and the cheaper one is kept.
        var before = Values(module).Select(v => v.Type).ToList();
        bool changed = Propagate(module, false);
        if (!MovesParameter(module))
            return changed;
        var activations = Values(module).Select(v => v.Type).ToList();
        double activationBytes = ReshardBytes(module.Clone());
        Restore(module, before);
        var copy = module.Clone();
        Propagate(copy, true);
        var parameters = Values(copy).Select(v => v.Type).ToList();
        Restore(module, ReshardBytes(copy) < activationBytes ? parameters : activations);
        return true;
    }

    /// <summary>True when some op needs a parameter (or its transposed view) in another layout than its own.</summary>
    private static bool MovesParameter(Operation module)
    {
        var mesh = module.DeviceMesh();
        foreach (var func in module.Functions())
        foreach (var op in func.Regions[0].Entry.Operations)
        {
            if (
                op.Dialect == "dist"
                || !op.Operands.Any(InsertReshards.IsParameter)
                || FactorSharding.RuleOf(op) is not { } rule
            )
                continue;
            var (needed, _) = InsertReshards.Layout(op, rule, mesh);
            for (int i = 0; i < op.Operands.Count; i++)
                if (
                    InsertReshards.IsParameter(op.Operands[i])
                    && op.Operands[i].TensorType.Sharding is { } have
                    && !have.Equals(needed[i])
                )
                    return true;
        }
        return false;
    }

    /// <summary>Bytes a device sends for the reshards insert-reshards adds to a propagated module (which it
    /// changes).</summary>
    private static double ReshardBytes(Operation module)
    {
        new InsertReshards().Run(module);
        var mesh = module.DeviceMesh();
        return module
            .Walk()
            .Where(o => o.Name == "dist.reshard")
            .Sum(o =>
                ReshardLowering.Cost(
                    o.Operands[0].TensorType,
                    o.Operands[0].TensorType.Sharding!,
                    o.Result.TensorType.Sharding!,
                    mesh
                )
            );
    }

    /// <summary>Gives every value the type recorded for it (in <see cref="Values"/> order) and the functions their
    /// result types.</summary>
    private static void Restore(Operation module, List<MplType> types)
    {
        int i = 0;
        foreach (var v in Values(module).ToList())
            v.Type = types[i++];
        foreach (var func in module.Functions())
            func.SetResultTypes(func.Regions[0].Entry.Operations.Last().Operands.Select(o => o.Type));
    }

    private bool Propagate(Operation module, bool parameterPriority)
    {
        var mesh = module.DeviceMesh();
        bool changed = false;
        foreach (var func in module.Functions())
            changed |= new FunctionState(func, mesh, parameterPriority).Propagate(MaxSweeps);
        return changed;
    }

    /// <summary>Every value of the module in a fixed order (block arguments, then results, op by op), the same for a
    /// clone.</summary>
    private static IEnumerable<Value> Values(Operation module)
    {
        foreach (var op in module.Walk())
        {
            foreach (var r in op.Regions)
            foreach (var b in r.Blocks)
            foreach (var a in b.Arguments)
                yield return a;
            foreach (var r in op.Results)
                yield return r;
        }
    }

    /// <summary>Added to a prioritised parameter's vote: more elements than any tensor has, less than a held
    /// result.</summary>
    private const long PriorityWeight = 1L << 48;

    private sealed class FunctionState
    {
        private readonly DeviceMesh _mesh;
        private readonly Dictionary<Value, Sharding?> _current = new(ReferenceEqualityComparer.Instance);
        private readonly HashSet<Value> _fixed = new(ReferenceEqualityComparer.Instance);
        private readonly List<(Operation Op, ShardingRule Rule)> _ops = new();
        private readonly Operation _func;
        private readonly HashSet<Value> _priority = new(ReferenceEqualityComparer.Instance);

        // A visit depends only on the layouts of the op's tensors: an op none of whose tensors changed since its last
        // visit began would propose what it proposed then, so it is skipped. Every change is stamped.
        private readonly Dictionary<Value, int> _changedAt = new(ReferenceEqualityComparer.Instance);
        private int[] _visitedAt = [];
        private int _stamp;

        public FunctionState(Operation func, DeviceMesh mesh, bool parameterPriority)
        {
            _func = func;
            _mesh = mesh;
            foreach (var a in func.Regions[0].Entry.Arguments)
                Fix(a);
            foreach (var op in func.Regions[0].Entry.Operations)
            {
                // Collectives and transfers only exist in per-device form: their values are local and stay unsharded.
                if (op.Dialect == "dist" && op.Name != "dist.reshard")
                    continue;
                bool userFixed = op.Name is "tensor.param" or "dist.reshard";
                foreach (var r in op.Results)
                    if (userFixed || r.TensorType.Sharding != null)
                        Fix(r);
                    else
                        _current[r] = null;
                // A sharded parameter has priority, and so has its view through a shape op (a backward matmul's
                // transposed weight).
                if (
                    parameterPriority
                    && (
                        op.Name == "tensor.param" && op.Result.TensorType.Sharding is { IsReplicated: false }
                        || op.Name is "tensor.transpose" or "tensor.reshape" && _priority.Contains(op.Operands[0])
                    )
                )
                    _priority.Add(op.Result);
                // A reshard is a constraint: it also pulls its still-open operand towards its layout.
                var rule =
                    op.Name == "dist.reshard"
                        ? Dialects.Tensor.ShardingRules.Pointwise(op.Result.TensorType.Shape)
                        : FactorSharding.RuleOf(op);
                if (rule != null)
                    _ops.Add((op, rule));
            }
        }

        private void Fix(Value v)
        {
            _fixed.Add(v);
            _current[v] = v.TensorType.Sharding ?? Sharding.Replicated(v.TensorType.Rank);
        }

        public bool Propagate(int maxSweeps)
        {
            bool any = false;
            _visitedAt = Enumerable.Repeat(-1, _ops.Count).ToArray();
            for (int sweep = 0; sweep < maxSweeps; sweep++)
            {
                bool changed = false;
                for (int i = 0; i < _ops.Count; i++)
                    changed |= Visit(i);
                for (int i = _ops.Count - 1; i >= 0; i--)
                    changed |= Visit(i);
                if (!changed)
                    break;
                any = true;
            }
            return Finish() || any;
        }

        private IEnumerable<Value> Tensors(Operation op) => op.Operands.Concat<Value>(op.Results);

        private bool Visit(int i)
        {
            var (op, rule) = _ops[i];
            if (_visitedAt[i] >= 0 && !Tensors(op).Any(v => _changedAt.GetValueOrDefault(v) > _visitedAt[i]))
                return false;
            _visitedAt[i] = _stamp;
            // A parameter with priority outweighs every activation; among themselves size still decides.
            var votes = Tensors(op)
                .Select(v => new FactorSharding.Vote(
                    _current[v],
                    v.TensorType.NumElements + (_priority.Contains(v) ? PriorityWeight : 0)
                ))
                .ToArray();
            // The value written to a parameter takes the parameter's layout; it has no say in it.
            if (op.Name == "train.update")
                votes[1] = new FactorSharding.Vote(null, 0);
            var assign = FactorSharding.Resolve(rule, votes, _mesh);
            bool changed = false;
            var tensors = Tensors(op).ToArray();
            var dims = rule.Tensors.ToArray();
            for (int t = 0; t < tensors.Length; t++)
                if (!_fixed.Contains(tensors[t]))
                    changed |= Refine(tensors[t], FactorSharding.Project(rule, dims[t], assign, _mesh));
            return changed;
        }

        /// <summary>Splits the dimensions of <paramref name="v"/> that are not split yet as <paramref name="proposal"/>
        /// says.</summary>
        private bool Refine(Value v, Sharding proposal)
        {
            var cur = _current[v] ?? Sharding.Replicated(v.TensorType.Rank);
            var used = new HashSet<string>(cur.Axes);
            var dims = cur.Dims.Select(d => d.ToList()).ToArray();
            bool changed = _current[v] == null;
            for (int d = 0; d < dims.Length; d++)
            {
                if (dims[d].Count > 0 || proposal.Dims[d].Count == 0 || proposal.Dims[d].Any(used.Contains))
                    continue;
                dims[d].AddRange(proposal.Dims[d]);
                used.UnionWith(proposal.Dims[d]);
                changed = true;
            }
            if (changed)
            {
                _current[v] = new Sharding(dims, cur.Partial);
                _changedAt[v] = ++_stamp;
            }
            return changed;
        }

        /// <summary>Writes the shardings into the types; results of split reductions become partial sums.</summary>
        private bool Finish()
        {
            bool changed = false;
            foreach (var (v, s) in _current)
            {
                var sharding = s ?? Sharding.Replicated(v.TensorType.Rank);
                if (!_fixed.Contains(v) && v is OpResult { Owner: var op } && FactorSharding.RuleOf(op) is { } rule)
                {
                    var votes = Tensors(op)
                        .Select(x => new FactorSharding.Vote(
                            _current[x] ?? Sharding.Replicated(x.TensorType.Rank),
                            op.Results.Contains(x) ? long.MaxValue : x.TensorType.NumElements
                        ))
                        .ToArray();
                    var partial = FactorSharding
                        .PartialAxes(rule, FactorSharding.Resolve(rule, votes, _mesh), _mesh)
                        .Where(a => !sharding.Axes.Contains(a));
                    sharding = new Sharding(sharding.Dims, partial);
                }
                if (!Equals(v.TensorType.Sharding, sharding))
                {
                    v.Type = v.TensorType.WithSharding(sharding);
                    changed = true;
                }
            }
            _func.SetResultTypes(_func.Regions[0].Entry.Operations.Last().Operands.Select(o => o.Type));
            return changed;
        }
    }
}
