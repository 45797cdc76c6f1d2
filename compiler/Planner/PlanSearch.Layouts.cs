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

// Intra-operator shardings: solved per tp (one axis and two), and two-axis ones probed before the search compiles
// the rest of their profiles.
public sealed partial class PlanSearch
{
    /// <summary>
    /// The fastest and the leanest parameter shardings for tp (solved at microbatch size <paramref name="mbs"/>,
    /// reused for every other) over the one axis, and over each two-dimensional mesh tx by ty of tp whose solution
    /// the intra-operator program rates within <see cref="TwoAxesMargin"/> of the one axis's fastest (profiles are
    /// compiled only for those). <c>--mesh ty=N</c> fixes the second axis (1: none). With memory as a constraint:
    /// for each pipeline depth of <paramref name="pps"/> where the fastest sharding's parameter state does not fit
    /// a GPU, the fastest one whose state does.
    /// </summary>
    private IntraOpChoice[] Layouts(int tp, long mbs, IReadOnlyList<int> pps)
    {
        if (_layouts.TryGetValue(tp, out var have))
            return have;
        if (tp == 1)
            return _layouts[tp] = [new IntraOpChoice(EmptyDims, 0, 0)];
        var clock = Stopwatch.StartNew();
        var plan = new Plan(1, 1, 1, 1, "1f1b", 1, false, 0, EmptyDims);
        var module = Elaborate(_model.Write(plan, layers: 1, batch: mbs), "ilp");
        double weight = _model.Layers;
        // A byte of state per device is worth as much as moving it once over HBM... a thousand times over: enough
        // to prefer split weights whenever time allows.
        double leanWeight = 1000 / _request.Cluster.HbmBytesPerSecond;
        var found = new List<IntraOpChoice>();
        void Add(IntraOpChoice c)
        {
            if (
                !found.Any(f =>
                    f.Ty == c.Ty && f.ParamDims.SequenceEqual(c.ParamDims) && f.ParamDimsY.SequenceEqual(c.ParamDimsY)
                )
            )
                found.Add(c);
        }
        bool fixedTy = _request.Fixed.TryGetValue("ty", out int ty);
        double best = double.PositiveInfinity;
        // Per pipeline depth where the fastest sharding's state overflows a GPU, the fastest that fits (none may:
        // then the lean one and the candidates' memory check decide).
        void AddFitting(IntraOpChoice fast, int[] axes)
        {
            foreach (int pp in pps)
                if (fast.StageStateBytes(pp) > _request.Cluster.HbmBytes)
                {
                    try
                    {
                        Add(Solve(module, axes, weight, 0, new StateLimit(_request.Cluster.HbmBytes, pp)));
                    }
                    catch (InvalidOperationException)
                    {
                        // No sharding's state fits at this depth; a deeper pipeline's may.
                    }
                }
        }
        if (!fixedTy || ty == 1)
        {
            var fast = Solve(module, [tp], weight, 0);
            Add(fast);
            Add(Solve(module, [tp], weight, leanWeight));
            AddFitting(fast, [tp]);
            best = fast.Seconds;
        }
        foreach (int y in Divisors(tp).Where(y => y > 1 && y < tp && (!fixedTy || y == ty)))
        foreach (double memory in new[] { 0, leanWeight })
        {
            var c = Solve(module, [tp / y, y], weight, memory);
            if (fixedTy && memory == 0)
                AddFitting(c, [tp / y, y]);
            // Every weight split over both axes on one dimension (or neither) is the one axis's sharding.
            bool oneAxis = c.ParamDims.All(kv => c.ParamDimsY.GetValueOrDefault(kv.Key, -1) == kv.Value);
            if (fixedTy || !oneAxis && c.Seconds <= best * (1 + TwoAxesMargin))
                Add(c);
        }
        _intraOpSeconds += clock.Elapsed.TotalSeconds;
        return _layouts[tp] = [.. found];
    }

    /// <summary>How much slower than the one axis's fastest sharding the intra-operator program may rate a
    /// two-dimensional one for it to be compiled and rated (the program's estimate is rough; the profiles
    /// decide).</summary>
    private const double TwoAxesMargin = 0.1;

    private static string Pct(double x) => (x * 100).ToString("F0", CultureInfo.InvariantCulture) + " %";

    private IntraOpChoice Solve(
        Operation module,
        int[] axes,
        double weight,
        double memoryWeight,
        StateLimit? stateLimit = null
    ) =>
        IntraOpSolver.Solve(
            module,
            axes,
            _request.Cluster,
            DeclOf,
            op => InStack(op),
            weight,
            _stateFactor,
            memoryWeight,
            Math.Clamp(_request.TimeLimitSeconds / 40, 0.5, 5),
            stateLimit
        );

    /// <summary>
    /// For each tp with two-dimensional shardings (and no fixed <c>ty</c>): compiles every sharding's profiles at the
    /// largest microbatch size of tp's shapes, and takes out of <see cref="_layouts"/> each two-dimensional one whose
    /// layer (forward and backward) is more than <see cref="TwoAxesMargin"/> slower than the fastest one-axis
    /// sharding's; returns them with why.
    /// </summary>
    private List<(int Tp, IntraOpChoice Choice, string Why)> ProbeTwoAxes(List<Shape> kept, Stopwatch clock)
    {
        var pruned = new List<(int, IntraOpChoice, string)>();
        if (_request.Fixed.ContainsKey("ty"))
            return pruned;
        var probes = new List<(Plan Layout, long Mbs)>();
        foreach (var (tp, choices) in _layouts)
            if (choices.Any(c => c.Ty > 1))
            {
                long mbs = kept.Where(s => s.Tp == tp).Max(s => s.Mbs);
                foreach (var c in choices)
                    probes.Add((c.Apply(LayoutOf(new Plan(tp, 1, 1, 1, "1f1b", 1, false, 0, EmptyDims))), mbs));
            }
        if (probes.Count == 0)
            return pruned;
        CompileProfiles([.. probes.Select(p => (p.Layout, p.Mbs, (string?)null, false))], clock);
        double? LayerSeconds(Plan layout, long mbs)
        {
            if (!_profiles.TryGetValue(Key(layout, mbs, null, 1), out var one))
                return null;
            var layer =
                _model.Loop != null && _profiles.TryGetValue(Key(layout, mbs, null, 2), out var two) ? two - one : one;
            return layer.Forward + layer.Backward;
        }
        foreach (var group in probes.GroupBy(p => p.Layout.Tp))
        {
            var best = group
                .Where(p => p.Layout.Ty == 1)
                .Select(p => LayerSeconds(p.Layout, p.Mbs))
                .Where(x => x != null)
                .DefaultIfEmpty(null)
                .Min();
            var keep = new List<IntraOpChoice>();
            foreach (var c in _layouts[group.Key])
            {
                var probe = group.First(p => p.Layout.Ty == c.Ty && p.Layout.Splits == c.Apply(p.Layout).Splits);
                double? mine = c.Ty > 1 ? LayerSeconds(probe.Layout, probe.Mbs) : null;
                if (c.Ty > 1 && best is { } b && mine is { } m && m > b * (1 + TwoAxesMargin))
                    pruned.Add(
                        (
                            group.Key,
                            c,
                            $"pruned: the {c.Apply(probe.Layout).TpMesh} sharding's layer at microbatch size "
                                + $"{probe.Mbs} takes {Pct(m / b - 1)} longer than the one axis's"
                        )
                    );
                else
                    keep.Add(c);
            }
            _layouts[group.Key] = [.. keep];
        }
        return pruned;
    }
}
