using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Cost;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Pipeline;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Planner;

/// <summary>What the user asks the planner for.</summary>
/// <param name="Cluster">The cluster the plan runs on.</param>
/// <param name="Gpus">How many of its GPUs the plan uses.</param>
/// <param name="Batch">The global batch (null: the model's batch const).</param>
/// <param name="TimeLimitSeconds">Candidates are no longer evaluated after this long.</param>
/// <param name="Compile">-D and --entry, as for the other commands.</param>
public sealed record PlanRequest(
    Cluster Cluster,
    int Gpus,
    long? Batch,
    double TimeLimitSeconds,
    CompileOptions Compile
);

/// <summary>One candidate as the planner rated it (a row of the exported dataset).</summary>
public sealed record RatedPlan(
    Plan Plan,
    long MicrobatchSize,
    string Layouts,
    double StepSeconds,
    double ComputeSeconds,
    double TensorParallelSeconds,
    double PipelineTransferSeconds,
    double BubbleSeconds,
    double DataParallelSeconds,
    double OptimizerSeconds,
    double PeakBytes,
    double FlopsPerGpu,
    int[] LayersPerStage,
    string? Pruned
)
{
    /// <summary>True when it was rated and fits the GPU.</summary>
    public bool Viable => Pruned == null;
}

/// <summary>The planner's answer: every candidate, best first, and what the search did.</summary>
public sealed record PlanResult(
    ModelSource Model,
    PlanRequest Request,
    IReadOnlyList<RatedPlan> Candidates,
    int Profiles,
    double SearchSeconds,
    bool TimedOut
)
{
    /// <summary>The viable candidates, fastest first.</summary>
    public IEnumerable<RatedPlan> Ranked => Candidates.Where(c => c.Viable).OrderBy(c => c.StepSeconds);
}

/// <summary>
/// The automatic planner (docs/planner.md). Inter-operator: every mesh <c>[pp, dp, tp]</c> of the GPUs with tp inside
/// a node, microbatch size and count, schedule (gpipe, 1f1b, interleaved with its chunks), full recomputation of the
/// repeated layer or none, ZeRO-1 or none. Intra-operator: per tp, the sharding of every parameter from <see
/// cref="IntraOpSolver"/> (twice: fastest, and leanest in memory). Each candidate is rated by the cost model: the
/// model compiled with one and with two repeated layers at the candidate's tp, microbatch size and recomputation gives
/// a layer's forward, backward, optimizer and memory, and the rest of the model's; the stack is composed from them
/// (one layer solved, reused for every layer), stages balanced, the compiled schedule played on the stage times
/// (<see cref="Timeline"/>), gradient synchronisation over dp costed on the links its group spans. Profiles are
/// cached; candidates that cannot fit are pruned before any simulation.
/// </summary>
public sealed partial class PlanSearch
{
    private readonly ModelSource _model;
    private readonly PlanRequest _request;
    private readonly PassRegistry _registry;
    private readonly Dictionary<string, Profile> _profiles = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IntraOpChoice[]> _layouts = new(StringComparer.Ordinal);
    private readonly double _stateFactor;
    private readonly HashSet<string> _layerDecls;

    /// <summary>The per-microbatch costs of a compiled variant (one stage, one microbatch).</summary>
    private sealed record Profile(
        double Forward,
        double Backward,
        double Step,
        double Sync,
        double Peak,
        double Flops,
        double ModelFlops
    )
    {
        public static Profile operator -(Profile a, Profile b) =>
            new(
                a.Forward - b.Forward,
                a.Backward - b.Backward,
                a.Step - b.Step,
                a.Sync - b.Sync,
                a.Peak - b.Peak,
                a.Flops - b.Flops,
                a.ModelFlops - b.ModelFlops
            );
    }

    private PlanSearch(ModelSource model, PlanRequest request, PassRegistry registry)
    {
        _model = model;
        _request = request;
        _registry = registry;
        var train = model.Program.Decls.OfType<TrainDecl>().FirstOrDefault(t => t.Name == model.Model.Name);
        // Parameter, gradient and optimizer state, in the parameter's type (the optimizer keeps no master copy).
        _stateFactor =
            train == null ? 1
            : train.Optimizer == "adam" ? 4
            : train.Args.Any(a => a.Name == "momentum") ? 3
            : 2;
        _layerDecls = LayersOfTheStack(model);
    }

    /// <summary>Searches the plans of <paramref name="source"/>; <paramref name="progress"/> hears (done, total)
    /// as candidates are rated.</summary>
    public static PlanResult Search(
        SourceText source,
        PlanRequest request,
        PassRegistry registry,
        Action<int, int>? progress = null
    )
    {
        var model = ModelSource.Read(source, request.Compile);
        if (request.Gpus < 1)
            throw new UserErrorException($"--gpus must be at least 1, got {request.Gpus}");
        if (request.Gpus > request.Cluster.Gpus)
            throw new UserErrorException(
                $"--gpus {request.Gpus}: cluster '{request.Cluster.Name}' has {request.Cluster.Gpus} GPUs "
                    + $"({request.Cluster.Nodes} nodes of {request.Cluster.GpusPerNode})"
            );
        var planner = new PlanSearch(model, request, registry);
        var result = planner.Run(request.Gpus, progress);
        if (result.Ranked.Any())
            return result;
        // Nothing fits: the smallest power-of-two multiple of the GPUs that does, within the cluster.
        for (long gpus = 2L * request.Gpus; gpus <= request.Cluster.Gpus; gpus *= 2)
        {
            var more = planner.Run((int)gpus, null);
            if (more.Ranked.Any())
                throw new UserErrorException(
                    $"model '{model.Model.Name}' does not fit on {request.Gpus} GPUs of {request.Cluster.Name} under "
                        + $"any plan; the smallest that fits is {gpus} GPUs ({more.Ranked.First().Plan.Summary})"
                );
        }
        throw new UserErrorException(
            $"model '{model.Model.Name}' does not fit on {request.Gpus} GPUs of {request.Cluster.Name} under any plan, "
                + $"nor on all {request.Cluster.Gpus} of its GPUs"
        );
    }

    private long Batch => _request.Batch ?? _model.Batch;

    private PlanResult Run(int gpus, Action<int, int>? progress)
    {
        var clock = Stopwatch.StartNew();
        int n = gpus,
            perNode = _request.Cluster.GpusPerNode;
        long layers = _model.Layers;
        var candidates = new List<(Plan Plan, long Mbs)>();
        foreach (int tp in Divisors(n).Where(t => t <= perNode))
        foreach (int pp in Divisors(n / tp).Where(p => _model.Loop != null ? p <= layers : p == 1))
        {
            int dp = n / (tp * pp);
            if (Batch % dp != 0)
                continue;
            long perReplica = Batch / dp;
            foreach (long mbs in Divisors(perReplica).Where(b => b <= 64))
            {
                int m = (int)(perReplica / mbs);
                var schedules = new List<(string, int)>();
                if (pp == 1)
                    schedules.Add(("1f1b", 1));
                else
                {
                    schedules.Add(("1f1b", 1));
                    schedules.Add(("gpipe", 1));
                    foreach (int v in new[] { 2, 3, 4 })
                        if (pp * v <= layers && m % pp == 0)
                            schedules.Add(("interleaved", v));
                }
                foreach (var (schedule, chunks) in schedules)
                foreach (bool remat in new[] { false, true })
                foreach (int zero in dp > 1 ? new[] { 0, 1 } : new[] { 0 })
                    candidates.Add((new Plan(tp, pp, dp, m, schedule, chunks, remat, zero, EmptyDims), mbs));
            }
        }
        if (candidates.Count == 0)
            throw new UserErrorException(
                $"no mesh of {n} GPUs splits the batch of {Batch} (it must be a multiple of the data-parallel size)"
            );
        // Cheapest-looking first (the model's FLOPs over the GPUs and the bubble), so that the time limit cuts the
        // least promising.
        var ordered = candidates.OrderBy(c => Estimate(c.Plan, c.Mbs)).ToList();
        var rated = new List<RatedPlan>();
        bool timedOut = false;
        for (int i = 0; i < ordered.Count; i++)
        {
            if (clock.Elapsed.TotalSeconds > _request.TimeLimitSeconds)
            {
                timedOut = true;
                foreach (var (plan, mbs) in ordered.Skip(i))
                    rated.Add(Unrated(plan, mbs, "not rated: the search reached its time limit"));
                break;
            }
            var (p, b) = ordered[i];
            rated.AddRange(Rate(p, b));
            progress?.Invoke(i + 1, ordered.Count);
        }
        return new PlanResult(
            _model,
            _request with
            {
                Gpus = gpus,
            },
            rated,
            _profiles.Count,
            clock.Elapsed.TotalSeconds,
            timedOut
        );
    }

    private static readonly IReadOnlyDictionary<string, int> EmptyDims = new Dictionary<string, int>();

    private static RatedPlan Unrated(Plan plan, long mbs, string why) =>
        new(plan, mbs, "", 0, 0, 0, 0, 0, 0, 0, 0, 0, [], why);

    /// <summary>A rough time to order the search by: compute at peak, stretched by the bubble.</summary>
    private double Estimate(Plan p, long mbs)
    {
        double bubble = p.Pp == 1 ? 0 : (p.Pp - 1.0) / (p.Microbatches * p.Chunks);
        double small = 1 + 64.0 / (mbs * 64) + (p.Tp - 1) * 0.02;
        return (1 + bubble) * small * (p.Remat ? 4.0 / 3 : 1);
    }

    /// <summary>Rates a candidate with each intra-operator layout of its tp.</summary>
    private IEnumerable<RatedPlan> Rate(Plan shape, long mbs)
    {
        IntraOpChoice[] choices;
        try
        {
            choices = Layouts(shape.Tp, mbs);
        }
        catch (InvalidOperationException e)
        {
            return [Unrated(shape, mbs, $"no intra-operator plan: {e.Message}")];
        }
        return choices.Select(c => Compose(shape with { ParamDims = c.ParamDims }, mbs));
    }

    /// <summary>The fastest and the leanest parameter shardings for tp at microbatch size <paramref
    /// name="mbs"/>.</summary>
    private IntraOpChoice[] Layouts(int tp, long mbs)
    {
        string key = $"{tp}|{mbs}";
        if (_layouts.TryGetValue(key, out var have))
            return have;
        if (tp == 1)
            return _layouts[key] = [new IntraOpChoice(EmptyDims, 0, 0)];
        var plan = new Plan(1, 1, 1, 1, "1f1b", 1, false, 0, EmptyDims);
        var module = Elaborate(_model.Write(plan, layers: 1, batch: mbs), "ilp");
        double weight = _model.Layers;
        var fast = Solve(module, tp, weight, 0);
        // A byte of state per device is worth as much as moving it once over HBM... a thousand times over: enough
        // to prefer split weights whenever time allows.
        var lean = Solve(module, tp, weight, 1000 / _request.Cluster.HbmBytesPerSecond);
        return _layouts[key] = fast.ParamDims.SequenceEqual(lean.ParamDims) ? [fast] : [fast, lean];
    }

    private IntraOpChoice Solve(Operation module, int tp, double weight, double memoryWeight) =>
        IntraOpSolver.Solve(
            module,
            tp,
            _request.Cluster,
            DeclOf,
            op => InStack(op),
            weight,
            _stateFactor,
            memoryWeight,
            Math.Max(1, Math.Min(10, _request.TimeLimitSeconds / 20))
        );

    /// <summary>The declaration (<c>layer.param</c>) of a parameter path such as
    /// <c>gpt.block.0.attention.wq</c>.</summary>
    private static string DeclOf(string path)
    {
        var parts = path.Split('.').Where(p => !p.All(char.IsDigit)).ToArray();
        return parts.Length >= 2 ? $"{parts[^2]}.{parts[^1]}" : path;
    }

    /// <summary>True for an op of the repeated layer (or a layer only it calls).</summary>
    private bool InStack(Operation op)
    {
        if (op.Name == "tensor.param")
            return _layerDecls.Contains(DeclOf(op.StringAttr("path")).Split('.')[0]);
        if (op.Location.IsUnknown)
            return false;
        foreach (var b in _model.Program.Decls.OfType<BlockDecl>().Where(b => _layerDecls.Contains(b.Name)))
        {
            int first = _model.Source.LineColumn(b.Span.Start).Line,
                last = _model.Source.LineColumn(b.Span.End).Line;
            if (op.Location.Line >= first && op.Location.Line <= last)
                return true;
        }
        return false;
    }

    private Operation Elaborate(string text, string what)
    {
        var diags = new DiagnosticBag();
        var src = new SourceText(_model.Source.Path, text);
        var options = new CompileOptions { Entry = _request.Compile.Entry };
        foreach (var (k, v) in _request.Compile.Defines)
            if (k != _model.BatchConst)
                options.Defines[k] = v;
        var program = MplSyntax.Parse(src, diags) ?? throw new CompilationFailedException(diags);
        return Elaborator.Lower(program, diags, options)
            ?? throw new UserErrorException(
                $"the planner's {what} variant of the model does not compile:\n{diags.Render()}"
            );
    }

    /// <summary>Compiles the model with the plan through the default pipeline and kernel formation.</summary>
    public Operation Compile(Plan plan, long? layers, long batch, bool pipeline = false)
    {
        var module = Elaborate(_model.Write(plan, layers, batch, pipeline: pipeline), "profiled");
        var passes = Pipelines.Create().Add(Pipelines.Backend);
        if (plan.Zero > 0)
            passes.Set("optimizer", "zero", plan.Zero);
        new PassManager(passes.Build(_registry), new IRPrintingOptions()).Run(module);
        return module;
    }

    /// <summary>A one-stage, one-microbatch variant with <paramref name="layers"/> repeated layers.</summary>
    private Profile ProfileOf(Plan plan, long mbs, long layers)
    {
        string key = $"{plan.Tp}|{mbs}|{plan.Remat}|{plan.Splits}|{layers}";
        if (_profiles.TryGetValue(key, out var have))
            return have;
        var variant = plan with { Pp = 1, Dp = 1, Microbatches = 1, Schedule = "1f1b", Chunks = 1, Zero = 0 };
        // One stage of one microbatch, still pipelined: the cost model then tells the forward from the backward.
        var module = Compile(variant, _model.Loop != null ? layers : null, mbs, pipeline: true);
        var cost = CostModel.Of(module, _request.Cluster);
        double fwd = cost.StageForwardSeconds.Sum(),
            bwd = cost.StageBackwardSeconds.Sum();
        return _profiles[key] = new Profile(
            fwd,
            bwd,
            cost.StepPhaseSeconds,
            cost.SyncSeconds,
            cost.PeakBytes,
            cost.FlopsPerDevice,
            cost.ModelFlopsPerDevice
        );
    }

    /// <summary>Rates one candidate from the profiles of its layer (docs/planner.md, "Rating a candidate").</summary>
    private RatedPlan Compose(Plan plan, long mbs)
    {
        var cluster = _request.Cluster;
        long layers = _model.Layers;
        int stages = plan.Pp * plan.Chunks;
        if (stages > layers)
            return Unrated(plan, mbs, $"pruned: {stages} stages for {layers} layers");
        Profile one,
            layer,
            rest;
        try
        {
            one = ProfileOf(plan, mbs, 1);
            if (_model.Loop != null)
            {
                layer = ProfileOf(plan, mbs, 2) - one;
                rest = one - layer;
            }
            else
            {
                layer = new Profile(0, 0, 0, 0, 0, 0, 0);
                rest = one;
            }
        }
        catch (Exception e) when (e is PassInputException or PassFailureException or UserErrorException)
        {
            return Unrated(plan, mbs, $"does not compile: {e.Message.Split('\n')[0]}");
        }
        // Memory first: parameter state per layer from the profile's parameters, activations the rest.
        var split = SplitLayers(layers, stages, layer.Forward + layer.Backward, rest.Forward + rest.Backward);
        int m = plan.Microbatches,
            p = plan.Pp;
        double stateShare = plan.Zero > 0 ? (2 + (_stateFactor - 2) / plan.Dp) / _stateFactor : 1;
        double layerState = LayerStateBytes(plan) * stateShare;
        double layerAct = Math.Max(0, layer.Peak - LayerStateBytes(plan));
        double peak = 0;
        for (int d = 0; d < p; d++)
        {
            double bytes = 0;
            for (int c = 0; c < plan.Chunks; c++)
            {
                int s = c * p + d;
                bytes += split[s] * (layerState + Held(plan, d) * layerAct / plan.Chunks);
            }
            if (d == p - 1 || d == 0)
                bytes += rest.Peak * (d == p - 1 ? 1 : 0.25) * stateShare;
            peak = Math.Max(peak, bytes);
        }
        double flops = (layers * layer.Flops + rest.Flops) * m / p;
        if (peak > cluster.HbmBytes)
            return new RatedPlan(
                plan,
                mbs,
                plan.Splits,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                peak,
                0,
                split,
                $"pruned: does not fit ({peak / (1L << 30):F1} GiB a device, {cluster.HbmBytes / (1L << 30):F0} GiB "
                    + "a GPU)"
            );
        // Stage times per microbatch; a stage sends its output on (and the gradient back) on the link to the next.
        double sendBytes = _model.LayerInputBytes(mbs) / plan.Tp;
        bool sameNode = plan.Dp * plan.Tp < cluster.GpusPerNode;
        double send = p > 1 ? CostModel.PointToPointSeconds(sendBytes, sameNode, cluster) : 0;
        var fwd = new double[stages];
        var bwd = new double[stages];
        for (int s = 0; s < stages; s++)
        {
            fwd[s] = split[s] * layer.Forward + (s == stages - 1 ? rest.Forward : 0) + (s < stages - 1 ? send : 0);
            bwd[s] = split[s] * layer.Backward + (s == stages - 1 ? rest.Backward : 0) + (s > 0 ? send : 0);
        }
        double makespan;
        if (p == 1)
            makespan = m * (fwd[0] + bwd[0]);
        else
        {
            var order = Schedule.Build(plan.Chunks > 1 ? "interleaved" : plan.Schedule, p, m, plan.Chunks, true);
            makespan = Timeline.Simulate(order, (s, ph) => ph == Phase.Forward ? fwd[s] : bwd[s]).Makespan;
        }
        double busiest = Enumerable
            .Range(0, p)
            .Max(d => Enumerable.Range(0, plan.Chunks).Sum(c => fwd[c * p + d] + bwd[c * p + d]));
        double bubble = Math.Max(0, makespan - m * busiest);
        // Once a step: the optimizer on the fullest device, the tp gradient reductions, the dp synchronisation.
        int maxLayers = Enumerable.Range(0, p).Max(d => Enumerable.Range(0, plan.Chunks).Sum(c => split[c * p + d]));
        double optimizer = (maxLayers * layer.Step + rest.Step) / (plan.Zero > 0 ? plan.Dp : 1);
        double tpSync = maxLayers * layer.Sync + rest.Sync;
        double gradBytes = maxLayers * LayerStateBytes(plan) / _stateFactor + RestParamBytes(plan);
        var group = Enumerable.Range(0, plan.Dp).Select(i => i * plan.Tp).ToArray();
        double dpSync =
            plan.Zero > 0
                ? CostModel.CollectiveSeconds("reduce_scatter", gradBytes, group, cluster)
                    + CostModel.CollectiveSeconds("all_gather", gradBytes / plan.Dp, group, cluster)
                : CostModel.CollectiveSeconds("all_reduce", gradBytes, group, cluster);
        // Gradient synchronisation under the optimizer's compute that follows it, as the cost model overlaps it.
        double sync = tpSync + dpSync;
        double exposedSync = sync - Math.Min(sync, optimizer);
        double step = makespan + optimizer + exposedSync;
        double tpComm = m * maxLayers * Math.Max(0, layer.Forward + layer.Backward - ComputeOnly(plan, mbs));
        return new RatedPlan(
            plan,
            mbs,
            plan.Splits,
            step,
            m * busiest,
            Math.Min(tpComm, m * busiest),
            m * send * 2 * (p > 1 ? 1 : 0),
            bubble,
            exposedSync,
            optimizer,
            peak,
            flops / step,
            split,
            null
        );
    }

    /// <summary>A layer's forward and backward at tp = 1 divided by tp: what tp costs beyond it is
    /// communication.</summary>
    private double ComputeOnly(Plan plan, long mbs)
    {
        if (plan.Tp == 1 || _model.Loop == null)
            return _model.Loop == null ? 0 : Layer(plan with { Tp = 1, ParamDims = EmptyDims }, mbs);
        return Layer(plan with { Tp = 1, ParamDims = EmptyDims }, mbs) / plan.Tp;
    }

    private double Layer(Plan plan, long mbs)
    {
        var d = ProfileOf(plan, mbs, 2) - ProfileOf(plan, mbs, 1);
        return d.Forward + d.Backward;
    }

    /// <summary>Parameter state bytes of one repeated layer on one device under the plan's shardings.</summary>
    private double LayerStateBytes(Plan plan) =>
        _model
            .Params.Where(kv => _layerDecls.Contains(kv.Key.Split('.')[0]))
            .Sum(kv => ParamBytes(kv.Value, plan.ParamDims.GetValueOrDefault(kv.Key, -1) >= 0 ? plan.Tp : 1))
        * _stateFactor;

    private double RestParamBytes(Plan plan) =>
        _model
            .Params.Where(kv => !_layerDecls.Contains(kv.Key.Split('.')[0]))
            .Sum(kv => ParamBytes(kv.Value, plan.ParamDims.GetValueOrDefault(kv.Key, -1) >= 0 ? plan.Tp : 1));

    private static double ParamBytes((ParamStmt Decl, long[] Shape) p, int split) =>
        p.Shape.Aggregate(1.0, (a, d) => a * d) * ModelSource.DTypeBytes(p.Decl.Type.DType) / split;

    private static IEnumerable<int> Divisors(long n) =>
        Enumerable.Range(1, (int)Math.Min(n, int.MaxValue)).Where(d => n % d == 0).Select(d => d);

    /// <summary>Seconds as the reports print them.</summary>
    public static string Seconds(double s) =>
        s >= 1 ? s.ToString("F2", CultureInfo.InvariantCulture) + " s"
        : s >= 1e-3 ? (s * 1e3).ToString("F1", CultureInfo.InvariantCulture) + " ms"
        : (s * 1e6).ToString("F1", CultureInfo.InvariantCulture) + " us";
}
