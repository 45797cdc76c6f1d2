using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Analysis;
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
)
{
    /// <summary>Mesh sizes the user fixed (<c>--mesh tp=8</c>): <c>pp</c>, <c>dp</c> or <c>tp</c>.</summary>
    public IReadOnlyDictionary<string, int> Fixed { get; init; } = new Dictionary<string, int>();
}

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

    /// <summary>Under ZeRO-3: seconds of the step's parameter all-gathers on the busiest device (part of
    /// <see cref="ComputeSeconds"/>, whose tasks they block).</summary>
    public double GatherSeconds { get; init; }

    /// <summary>Compiled whole and costed (the cost model on the whole program): its step seconds, or null when it
    /// was not checked.</summary>
    public double? WholeStepSeconds { get; init; }

    /// <summary>Compiled whole and costed: the peak bytes of its fullest device, or null when it was not
    /// checked.</summary>
    public double? WholePeakBytes { get; init; }
}

/// <summary>Where a search spent its time.</summary>
public sealed record SearchTimes(double IntraOpSeconds, double ProfileSeconds, double ComposeSeconds)
{
    /// <summary>Seconds the best candidates took to compile whole and cost (<c>CheckWhole</c>).</summary>
    public double WholeSeconds { get; init; }
}

/// <summary>The planner's answer: every candidate, best first, and what the search did.</summary>
public sealed record PlanResult(
    ModelSource Model,
    PlanRequest Request,
    IReadOnlyList<RatedPlan> Candidates,
    int Profiles,
    double SearchSeconds,
    bool TimedOut,
    SearchTimes Times
)
{
    /// <summary>The model's parameter elements, every instance of a repeated layer counted.</summary>
    public double Parameters { get; init; }

    /// <summary>The viable candidates, fastest first (ties: fewer devices per replica, then the simpler
    /// plan).</summary>
    public IEnumerable<RatedPlan> Ranked => Rank(Candidates);

    /// <summary><paramref name="candidates"/>' viable ones, fastest first (ties: fewer devices per replica, then
    /// the simpler plan).</summary>
    public static IEnumerable<RatedPlan> Rank(IEnumerable<RatedPlan> candidates) =>
        candidates
            .Where(c => c.Viable)
            .OrderBy(c => c.StepSeconds)
            .ThenBy(c => c.Plan.Tp * c.Plan.Pp)
            .ThenBy(c => (c.Plan.Remat || c.Plan.Selective != null ? 1 : 0) + c.Plan.Zero + c.Plan.Chunks);
}

/// <summary>
/// The automatic planner (docs/planner.md). Inter-operator: every mesh <c>[pp, dp, tp]</c> of the GPUs with tp inside
/// a node, microbatch size and count, schedule (gpipe, 1f1b, zb-h1, zb-h2, interleaved with its chunks), recomputation
/// of the repeated layer (all its instances or the first k of each stage), of one layer it calls, or none, ZeRO-1 or
/// none. Intra-operator: per tp, the sharding of every parameter from <see
/// cref="IntraOpSolver"/> (twice: fastest, and leanest in memory). Each candidate is rated from the cost model's
/// prediction of compiled profiles: the model with one and with two repeated layers, at the candidate's tp, shardings
/// and microbatch size, gives a layer's forward, backward, optimizer, communication and memory, and the rest of the
/// model's; the stack is composed from them (one layer solved, reused for every layer), stages balanced, the compiled
/// schedule played on the stage times, gradient synchronisation over dp costed on the links its group spans
/// (PlanSearch.Compose.cs). Profiles are compiled once each, two at a time; candidates whose parameter state alone
/// cannot fit are pruned before any profile is compiled.
/// </summary>
public sealed partial class PlanSearch
{
    private readonly ModelSource _model;
    private readonly PlanRequest _request;
    private readonly PassRegistry _registry;
    private readonly ConcurrentDictionary<string, Profile> _profiles = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _failed = new(StringComparer.Ordinal);

    /// <summary>Why the weight-gradient profiles of a key did not compile (only its zero-bubble candidates
    /// fail).</summary>
    private readonly ConcurrentDictionary<string, string> _failedWeights = new(StringComparer.Ordinal);

    /// <summary>Weight-gradient seconds (W of a zero-bubble schedule) of a microbatch by profile key: the model
    /// compiled with a stage boundary before the stack under <c>zb-h1</c>, so that the backward splits into the
    /// gradient the stack sends back (B) and the rest (W) as in a pipeline of several stages.</summary>
    private readonly ConcurrentDictionary<string, double> _weights = new(StringComparer.Ordinal);
    private readonly Dictionary<int, IntraOpChoice[]> _layouts = [];
    private readonly double _stateFactor;
    private readonly HashSet<string> _layerDecls;
    private double _intraOpSeconds,
        _profileSeconds;

    /// <summary>The per-microbatch costs of a compiled variant (one stage, one microbatch): forward and backward with
    /// their critical-path communication, the optimizer step, the gradient synchronisation, all communication, the
    /// peak bytes, the activations a microbatch holds from its forward to its backward, and the FLOPs (with and
    /// without recomputation).</summary>
    private sealed record Profile(
        double Forward,
        double Backward,
        double Step,
        double Sync,
        double Comm,
        double Peak,
        double Held,
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
                a.Comm - b.Comm,
                a.Peak - b.Peak,
                a.Held - b.Held,
                a.Flops - b.Flops,
                a.ModelFlops - b.ModelFlops
            );

        public static readonly Profile Zero = new(0, 0, 0, 0, 0, 0, 0, 0, 0);
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
    /// as profiles are compiled and candidates rated.</summary>
    public static PlanResult Search(
        SourceText source,
        PlanRequest request,
        PassRegistry registry,
        Action<int, int>? progress = null
    )
    {
        var planner = Create(source, request, registry);
        var model = planner._model;
        var result = planner.Run(request.Gpus, progress);
        if (result.Ranked.Any())
            return result;
        if (result.TimedOut)
            throw new UserErrorException(
                $"the search reached its time limit ({request.TimeLimitSeconds:G4} s) before any plan of model "
                    + $"'{model.Model.Name}' was rated; give it more with --time-limit"
            );
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

    /// <summary>A planner for <paramref name="source"/> (its arguments checked), to search or to rate given
    /// plans.</summary>
    public static PlanSearch Create(SourceText source, PlanRequest request, PassRegistry registry)
    {
        var model = ModelSource.Read(source, request.Compile);
        if (request.Gpus < 1)
            throw new UserErrorException($"--gpus must be at least 1, got {request.Gpus}");
        if (request.Gpus > request.Cluster.Gpus)
            throw new UserErrorException(
                $"--gpus {request.Gpus}: cluster '{request.Cluster.Name}' has {request.Cluster.Gpus} GPUs "
                    + $"({request.Cluster.Nodes} nodes of {request.Cluster.GpusPerNode})"
            );
        foreach (var (axis, size) in request.Fixed)
        {
            if (axis is not ("pp" or "dp" or "tp" or "ty"))
                throw new UserErrorException($"--mesh: the planner's axes are pp, dp, tp and ty, not '{axis}'");
            if (size < 1 || request.Gpus % size != 0)
                throw new UserErrorException($"--mesh {axis}={size}: it must divide --gpus {request.Gpus}");
            if (
                axis == "ty"
                && size > 1
                && request.Fixed.TryGetValue("tp", out int tp)
                && (tp % size != 0 || tp == size)
            )
                throw new UserErrorException(
                    $"--mesh ty={size}: the second tensor-parallel axis must divide tp={tp} and be smaller than it"
                );
        }
        return new PlanSearch(model, request, registry);
    }

    private long Batch => _request.Batch ?? _model.Batch;

    /// <summary>Rates one plan (the search's inter-operator choices and its parameter shardings) at microbatch size
    /// <paramref name="mbs"/> exactly as the search rates its candidates.</summary>
    public RatedPlan Rate(Plan plan, long mbs)
    {
        Profiles(plan, mbs, plan.Selective, double.PositiveInfinity, Schedule.SplitsBackward(plan.Schedule));
        return Compose(plan, mbs);
    }

    /// <summary>Compiles the profiles of each layout at its microbatch size (with its selective recomputation, and
    /// the backward split into B and W where asked), two at a time, while the search's time limit lasts; calls
    /// <paramref name="done"/> after each.</summary>
    private void CompileProfiles(
        IReadOnlyList<(Plan Layout, long Mbs, string? Selective, bool Weights)> work,
        Stopwatch clock,
        Action? done = null
    )
    {
        var profileClock = Stopwatch.StartNew();
        Parallel.ForEach(
            work,
            new ParallelOptions { MaxDegreeOfParallelism = Math.Clamp(Environment.ProcessorCount, 1, 2) },
            w =>
            {
                double left = _request.TimeLimitSeconds - clock.Elapsed.TotalSeconds;
                if (left >= 0)
                    Profiles(w.Layout, w.Mbs, w.Selective, left, w.Weights);
                done?.Invoke();
            }
        );
        _profileSeconds += profileClock.Elapsed.TotalSeconds;
    }

    /// <summary>A shape of the search before schedules, recomputation and ZeRO: the mesh and the
    /// microbatching.</summary>
    private readonly record struct Shape(int Tp, int Pp, int Dp, long Mbs, int Microbatches);

    private PlanResult Run(int gpus, Action<int, int>? progress)
    {
        var clock = Stopwatch.StartNew();
        var shapes = Shapes(gpus).ToList();
        if (shapes.Count == 0)
            throw new UserErrorException(
                $"no mesh of {gpus} GPUs splits the batch of {Batch} (it must be a multiple of the data-parallel size)"
                    + (_request.Fixed.Count > 0 ? " under the fixed --mesh sizes" : "")
            );
        var rated = new List<RatedPlan>();
        // A lower bound on memory: the parameter state with every weight split over tp and cut over pp, ZeRO-3 over
        // the rest. Shapes beyond it are pruned before anything is compiled.
        var kept = new List<Shape>();
        foreach (var s in shapes)
        {
            double floor = StateFloor(s);
            if (floor > _request.Cluster.HbmBytes)
                foreach (var plan in PlansOf(s))
                    rated.Add(
                        Unrated(plan, s.Mbs, $"pruned: the parameter state alone needs {Units.Bytes(floor)} a device")
                    );
            else
                kept.Add(s);
        }
        // Intra-operator plans per tp, then the profiles every kept shape needs, most promising first.
        var work = new List<(Plan Layout, long Mbs, string? Selective)>();
        var weights = new HashSet<string>(StringComparer.Ordinal);
        bool timedOut = false;
        foreach (int tp in kept.Select(s => s.Tp).Distinct())
        {
            if (clock.Elapsed.TotalSeconds > _request.TimeLimitSeconds)
            {
                timedOut = true;
                break;
            }
            try
            {
                var ofTp = kept.Where(s => s.Tp == tp).ToList();
                Layouts(tp, ofTp.Max(s => s.Mbs), [.. ofTp.Select(s => s.Pp).Distinct().Order()]);
            }
            catch (InvalidOperationException e)
            {
                _layouts[tp] = [];
                foreach (var s in kept.Where(s => s.Tp == tp))
                foreach (var plan in PlansOf(s))
                    rated.Add(Unrated(plan, s.Mbs, $"no intra-operator plan: {e.Message}"));
            }
        }
        // A two-dimensional sharding is compiled first at one microbatch size beside the one axis's shardings; those
        // whose layer is slower by more than the margin are pruned before their other profiles are compiled.
        var pruned = ProbeTwoAxes(kept, clock);
        var queued = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in kept.OrderBy(s => Estimate(s)))
        foreach (var c in _layouts.GetValueOrDefault(s.Tp) ?? [])
        foreach (var selective in SelectiveChoices)
        {
            var layout = c.Apply(LayoutOf(new Plan(s.Tp, 1, 1, 1, "1f1b", 1, false, 0, EmptyDims)));
            string key = Key(layout, s.Mbs, selective, 1);
            if (queued.Add(key))
                work.Add((layout, s.Mbs, selective));
            // Zero-bubble candidates (pp > 1) also need the split of the backward into B and W.
            if (s.Pp > 1)
                weights.Add(key);
        }
        int done = 0,
            total = work.Count + kept.Count;
        CompileProfiles(
            [
                .. work.Select(w =>
                    (w.Layout, w.Mbs, w.Selective, weights.Contains(Key(w.Layout, w.Mbs, w.Selective, 1)))
                ),
            ],
            clock,
            () => progress?.Invoke(Interlocked.Increment(ref done), total)
        );
        var composeClock = Stopwatch.StartNew();
        foreach (var s in kept)
        {
            foreach (var (tp, c, why) in pruned)
                if (tp == s.Tp)
                    foreach (var plan in PlansOf(s))
                        rated.Add(Unrated(c.Apply(plan), s.Mbs, why));
            foreach (var c in _layouts.GetValueOrDefault(s.Tp) ?? [])
            foreach (var plan in PlansOf(s))
            {
                var p = c.Apply(plan);
                if (!HasProfiles(p, s.Mbs, p.Selective, Schedule.SplitsBackward(p.Schedule)))
                {
                    timedOut = true;
                    rated.Add(Unrated(p, s.Mbs, "not rated: the search reached its time limit"));
                }
                else
                {
                    var r = Compose(p, s.Mbs);
                    rated.Add(r);
                    if (r.Viable && p.Remat && Partial(p, s.Mbs, r.LayersPerStage.Max()) is { } partial)
                        rated.Add(partial);
                }
            }
            progress?.Invoke(++done, total);
        }
        double composed = composeClock.Elapsed.TotalSeconds;
        CheckWhole(rated, clock);
        return new PlanResult(
            _model,
            _request with
            {
                Gpus = gpus,
            },
            rated,
            _profiles.Count + _weights.Count,
            clock.Elapsed.TotalSeconds,
            timedOut,
            new SearchTimes(_intraOpSeconds, _profileSeconds, composed)
            {
                WholeSeconds = composeClock.Elapsed.TotalSeconds - composed,
            }
        )
        {
            Parameters = _model.Params.Sum(kv =>
                kv.Value.Shape.Aggregate(1.0, (a, d) => a * d)
                * (_layerDecls.Contains(kv.Key.Split('.')[0]) ? _model.Layers : 1)
            ),
        };
    }

    /// <summary>Every mesh of <paramref name="gpus"/> with tp inside a node, and every microbatch size (powers of two
    /// up to 32 that divide a replica's batch) with the count that makes up the batch.</summary>
    private IEnumerable<Shape> Shapes(int gpus)
    {
        int perNode = _request.Cluster.GpusPerNode;
        long layers = _model.Layers;
        bool Allowed(string axis, int size) => !_request.Fixed.TryGetValue(axis, out int f) || f == size;
        // A fixed second axis needs a tp it divides and is smaller than.
        int ty = _request.Fixed.GetValueOrDefault("ty", 1);
        foreach (
            int tp in Divisors(gpus).Where(t => t <= perNode && Allowed("tp", t) && (ty == 1 || t % ty == 0 && t > ty))
        )
        foreach (int pp in Divisors(gpus / tp).Where(p => (_model.Loop != null ? p <= layers : p == 1)))
        {
            int dp = gpus / (tp * pp);
            if (!Allowed("pp", pp) || !Allowed("dp", dp) || Batch % dp != 0)
                continue;
            long perReplica = Batch / dp;
            for (long mbs = 1; mbs <= Math.Min(32, perReplica); mbs *= 2)
                if (perReplica % mbs == 0)
                    yield return new Shape(tp, pp, dp, mbs, (int)(perReplica / mbs));
        }
    }

    /// <summary>The candidates of a shape: schedules (one stage: none; several: 1f1b, gpipe, zb-h1, zb-h2 and
    /// interleaved),
    /// recomputation (none, of one layer the stack calls, or full), ZeRO-1, -2 and -3 where dp > 1.</summary>
    private IEnumerable<Plan> PlansOf(Shape s)
    {
        var schedules = new List<(string, int)> { ("1f1b", 1) };
        if (s.Pp > 1)
        {
            schedules.Add(("gpipe", 1));
            schedules.Add(("zb-h1", 1));
            schedules.Add(("zb-h2", 1));
            foreach (int v in new[] { 2, 3, 4 })
                if (s.Pp * v <= _model.Layers && s.Microbatches % s.Pp == 0)
                    schedules.Add(("interleaved", v));
        }
        foreach (var (schedule, chunks) in schedules)
        foreach (var selective in SelectiveChoices.Append("full"))
        foreach (int zero in s.Dp > 1 ? new[] { 0, 1, 2, 3 } : new[] { 0 })
            yield return new Plan(
                s.Tp,
                s.Pp,
                s.Dp,
                s.Microbatches,
                schedule,
                chunks,
                selective == "full",
                zero,
                EmptyDims
            )
            {
                Selective = selective == "full" ? null : selective,
            };
    }

    /// <summary>
    /// Where full recomputation fits and none does not: the plan that recomputes only the first k layers of each
    /// stage for the smallest k that fits (memory falls as k grows; a binary search over 1 .. most layers of a stage
    /// - 1), or null.
    /// </summary>
    private RatedPlan? Partial(Plan full, long mbs, int stageLayers)
    {
        if (stageLayers < 2 || Compose(full with { Remat = false }, mbs).Viable)
            return null;
        RatedPlan? best = null;
        int lo = 1,
            hi = stageLayers - 1;
        while (lo <= hi)
        {
            int k = (lo + hi) / 2;
            var r = Compose(full with { RematFirst = k }, mbs);
            if (r.Viable)
            {
                best = r;
                hi = k - 1;
            }
            else
                lo = k + 1;
        }
        return best;
    }

    /// <summary>None, or one of the layers the repeated layer calls (recomputed in the backward: selective
    /// recomputation at the granularity of a layer, as Korthikanti et al. recompute the attention core).</summary>
    private IEnumerable<string?> SelectiveChoices
    {
        get
        {
            yield return null;
            foreach (var l in _layerDecls.Where(l => l != _model.RepeatedLayer).Order(StringComparer.Ordinal))
                yield return l;
        }
    }

    private static readonly IReadOnlyDictionary<string, int> EmptyDims = new Dictionary<string, int>();

    private static RatedPlan Unrated(Plan plan, long mbs, string why) =>
        new(plan, mbs, plan.Splits, 0, 0, 0, 0, 0, 0, 0, 0, 0, [], why);

    /// <summary>A rough time to order the profiles by: compute at peak, stretched by the bubble and small
    /// microbatches.</summary>
    private static double Estimate(Shape s)
    {
        double bubble = s.Pp == 1 ? 0 : (s.Pp - 1.0) / s.Microbatches;
        return (1 + bubble) * (1 + 1.0 / s.Mbs) * (1 + (s.Tp - 1) * 0.02);
    }

    /// <summary>Parameter state a device holds at least under the shape: every weight split over tp, the layers cut
    /// over pp, the optimizer state over dp.</summary>
    private double StateFloor(Shape s)
    {
        double all = _model.Params.Values.Sum(p => ParamBytes(p, 1));
        double share = 1.0 / s.Dp; // ZeRO-3 splits all of it over dp
        return all * _stateFactor * share / (s.Tp * s.Pp);
    }

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
    public Operation Compile(Plan plan, long? layers, long batch, bool pipeline = false, bool stageBeforeLoop = false)
    {
        var module = Elaborate(
            _model.Write(plan, layers, batch, pipeline: pipeline, stageBeforeLoop: stageBeforeLoop),
            "profiled"
        );
        var passes = Pipelines.Create().Add(Pipelines.Backend);
        if (plan.Zero > 0)
            passes.Set("optimizer", "zero", plan.Zero);
        new PassManager(passes.Build(_registry), new IRPrintingOptions()).Run(module);
        return module;
    }

    private static IEnumerable<int> Divisors(long n) =>
        Enumerable.Range(1, (int)Math.Min(n, int.MaxValue)).Where(d => n % d == 0);
}
