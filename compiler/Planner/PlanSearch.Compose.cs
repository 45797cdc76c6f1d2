using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.Runtime.Pipeline;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Planner;

/// <summary>How the planner rates a candidate from its profiles (docs/planner.md, "Rating a candidate").</summary>
public sealed partial class PlanSearch
{
    /// <summary>Rates one candidate whose profiles are compiled.</summary>
    private RatedPlan Compose(Plan plan, long mbs)
    {
        var cluster = _request.Cluster;
        long layers = _model.Layers;
        int stages = plan.Pp * plan.Chunks;
        if (stages > layers)
            return Unrated(plan, mbs, $"pruned: {stages} stages for {layers} layers");
        if (plan.Tp > 1 && !_model.Params.Keys.Any(k => plan.SplitOf(k) > 1))
            return Unrated(
                plan,
                mbs,
                $"pruned: tp={plan.Tp} splits no weight, so every device of a tp group would repeat the same work"
            );
        if (_failed.TryGetValue(Key(plan, mbs, plan.Selective, 1), out var why))
            return Unrated(plan, mbs, why);
        if (
            Schedule.SplitsBackward(plan.Schedule)
            && _failedWeights.TryGetValue(Key(plan, mbs, plan.Selective, 1), out var wwhy)
        )
            return Unrated(plan, mbs, $"{plan.Schedule} {wwhy}");
        var one = _profiles[Key(plan, mbs, plan.Selective, 1)];
        Profile layer,
            rest;
        if (_model.Loop != null)
        {
            layer = _profiles[Key(plan, mbs, plan.Selective, 2)] - one;
            rest = one - layer;
        }
        else
        {
            layer = Profile.Zero;
            rest = one;
        }
        int m = plan.Microbatches,
            p = plan.Pp;
        // ZeRO-3 gathers each weight over dp where it is used: once in a microbatch's forward, once in its backward
        // (and once more in a recomputed forward). Costed blocking, an upper bound: the compiled program starts each
        // one gather ahead, but on one communication stream, behind the backward's reduce-scatters, much of it stays
        // exposed.
        var dpGroup = Enumerable.Range(0, plan.Dp).Select(i => i * plan.Tp).ToArray();
        double layerGather = plan.Zero == 3 ? GatherSeconds(plan, inLayer: true, dpGroup) : 0,
            restGather = plan.Zero == 3 ? GatherSeconds(plan, inLayer: false, dpGroup) : 0;
        layer = layer with { Forward = layer.Forward + layerGather, Backward = layer.Backward + layerGather };
        rest = rest with { Forward = rest.Forward + restGather, Backward = rest.Backward + restGather };
        // Recomputation runs a layer's forward again in its backward and keeps only its input; stages are balanced
        // with it when every layer is recomputed.
        double layerFwd = layer.Forward,
            layerBwd = layer.Backward + (plan.Remat && plan.RematFirst == null ? layer.Forward : 0);
        // A zero-bubble schedule defers each backward's weight gradients (W) from the input gradients (B) that the
        // stage before waits for; the split comes from the weight-gradient profiles (a recomputed forward is B's).
        double layerW = 0,
            restW = 0;
        if (Schedule.SplitsBackward(plan.Schedule) && _model.Loop != null)
        {
            double w1 = _weights[Key(plan, mbs, plan.Selective, 1)],
                w2 = _weights[Key(plan, mbs, plan.Selective, 2)];
            layerW = Math.Clamp(w2 - w1, 0, layer.Backward);
            restW = Math.Clamp(w1 - layerW, 0, rest.Backward);
        }
        var split = SplitLayers(layers, stages, layerFwd + layerBwd, rest.Forward + rest.Backward);
        // Layers of each model stage whose forward runs again in the backward (all, or the first k under
        // @remat(first = k)).
        var again = split.Select(n => plan.Remat ? Math.Min(n, plan.RematFirst ?? n) : 0).ToArray();
        layerBwd = layer.Backward;

        // Memory: parameter state whole (parameter, gradient and optimizer state, as frameworks keep gradient
        // buffers; ZeRO-1 splits the optimizer's share over dp), and the activations every microbatch in flight
        // holds from its forward to its backward (a layer's, from the compiled profile's pipeline statistics, or
        // under recomputation only its input, plus one layer's while it is recomputed); the last stage also the
        // loss's transient (the rest of the model's peak beyond its state).
        // ZeRO-1 splits the optimizer's share over dp, ZeRO-2 the gradients' too, ZeRO-3 everything; under ZeRO-3 a
        // device also holds one layer's gathered weights while it runs.
        double whole = plan.Zero switch
        {
            0 => _stateFactor,
            1 => 2,
            2 => 1,
            _ => 0,
        };
        double stateShare = (whole + (_stateFactor - whole) / plan.Dp) / _stateFactor;
        double layerStateFull = LayerStateBytes(plan),
            layerState = layerStateFull * stateShare,
            recomputed = Math.Max(0, layer.Held),
            input = _model.LayerInputBytes(mbs);
        double restStateFull = RestParamBytes(plan) * _stateFactor,
            restState = restStateFull * stateShare,
            restAct = Math.Max(0, rest.Peak - restStateFull);
        double peak = 0;
        for (int d = 0; d < p; d++)
        {
            double mine = Enumerable.Range(0, plan.Chunks).Sum(c => split[c * p + d]),
                mineAgain = Enumerable.Range(0, plan.Chunks).Sum(c => again[c * p + d]);
            // A microbatch between its B and its deferred W holds what W reads: the layer's activations (recomputed
            // ones too).
            double bytes =
                mine * layerState
                + Held(plan, d) / plan.Chunks * (mineAgain * input + (mine - mineAgain) * recomputed)
                + Deferred(plan, d) * mine * recomputed
                + (mineAgain > 0 ? recomputed : 0);
            // The first stage holds the model's own parameters that feed the stack (embeddings), the last those
            // after it: both counted whole, as a tied embedding is.
            if (d == 0 || d == p - 1)
                bytes += restState;
            if (d == p - 1)
                bytes += restAct;
            // ZeRO-3 holds one layer's gathered weights while it runs; under ZeRO-1 and -2 the updated parameters are
            // gathered beside the ones they replace.
            if (plan.Zero == 3)
                bytes += Math.Max(layerStateFull / _stateFactor, d == 0 || d == p - 1 ? LargestRestParam(plan) : 0);
            else if (plan.Zero > 0)
                bytes += (mine * layerStateFull + (d == 0 || d == p - 1 ? restStateFull : 0)) / _stateFactor;
            peak = Math.Max(peak, bytes);
        }
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
                $"pruned: does not fit ({Units.Bytes(peak)} a device, {Units.Bytes(cluster.HbmBytes)} a GPU)"
            );

        // Stage times per microbatch; a stage sends its output on (and the gradient back) on the link to the next,
        // started beside its next tasks (the compiled pipe.send_start): the receiving stage waits for the arrival.
        double sendBytes = _model.LayerInputBytes(mbs) / plan.Tp;
        bool sameNode = plan.Dp * plan.Tp < cluster.GpusPerNode;
        double send = p > 1 ? CostModel.PointToPointSeconds(sendBytes, sameNode, cluster) : 0;
        var fwd = new double[stages];
        var bwd = new double[stages];
        var wgt = new double[stages];
        for (int s = 0; s < stages; s++)
        {
            fwd[s] = split[s] * layerFwd + (s == stages - 1 ? rest.Forward : 0);
            bwd[s] =
                split[s] * (layerBwd - layerW) + again[s] * layerFwd + (s == stages - 1 ? rest.Backward - restW : 0);
            wgt[s] = split[s] * layerW + (s == stages - 1 ? restW : 0);
        }
        double makespan;
        if (p == 1)
            makespan = m * (fwd[0] + bwd[0] + wgt[0]);
        else
        {
            var order = Schedule.Build(plan.Chunks > 1 ? "interleaved" : plan.Schedule, p, m, plan.Chunks, true);
            makespan = Timeline
                .Simulate(
                    order,
                    (s, ph) =>
                        ph switch
                        {
                            Phase.Forward => fwd[s],
                            Phase.Backward => bwd[s],
                            _ => wgt[s],
                        },
                    (s, ph) => ph is Phase.Forward or Phase.Backward ? send : 0
                )
                .Makespan;
        }
        double DeviceSum(Func<int, double> f) => Enumerable.Range(0, plan.Chunks).Sum(c => f(c * p));
        double busiest = Enumerable
            .Range(0, p)
            .Max(d => Enumerable.Range(0, plan.Chunks).Sum(c => fwd[c * p + d] + bwd[c * p + d] + wgt[c * p + d]));
        double bubble = Math.Max(0, makespan - m * busiest);

        // Once a step: the optimizer on the fullest device, the tp gradient reductions, the dp synchronisation.
        int maxLayers = Enumerable.Range(0, p).Max(d => Enumerable.Range(0, plan.Chunks).Sum(c => split[c * p + d]));
        double optimizer = (maxLayers * layer.Step + rest.Step) / (plan.Zero > 0 ? plan.Dp : 1);
        double tpSync = maxLayers * layer.Sync + rest.Sync;
        double gradBytes = (maxLayers * layerStateFull + restStateFull) / _stateFactor;
        // ZeRO-2 and -3 reduce-scatter every microbatch's gradients in its backward, a weight at a time, each waited
        // for when the next starts (so that one full gradient is held at a time): little compute lies between, so
        // they are costed blocking. ZeRO-3 gathers no parameter after the update (each use gathers its own).
        double ScatterEach(bool inLayer) =>
            DeviceParamBytes(plan, inLayer)
                .Sum(bytes => CostModel.CollectiveSeconds("reduce_scatter", bytes, dpGroup, cluster));
        double scatters = plan.Dp > 1 && plan.Zero >= 2 ? m * (maxLayers * ScatterEach(true) + ScatterEach(false)) : 0;
        double dpSync =
            plan.Dp == 1 || plan.Zero >= 2 ? 0
            : plan.Zero == 1 ? CostModel.CollectiveSeconds("reduce_scatter", gradBytes, dpGroup, cluster)
            : CostModel.CollectiveSeconds("all_reduce", gradBytes, dpGroup, cluster);
        // ZeRO-1 and -2 gather the updated parameters after the optimizer, blocking.
        double gatherAfter =
            plan.Dp > 1 && plan.Zero is 1 or 2
                ? CostModel.CollectiveSeconds("all_gather", gradBytes / plan.Dp, dpGroup, cluster)
                : 0;
        // Gradient synchronisation runs under the backward (as gradients are bucketed) and the optimizer after it, as
        // the cost model overlaps it; the rest is exposed. With microbatches or stages, the gradients are summed over
        // the microbatches once a step and their synchronisation starts when the device's last backward has ended:
        // on the device that ends the schedule only the optimizer is left to hide it.
        double backward = DeviceSum(s => bwd[s] + wgt[s]);
        double exposedSync =
            p == 1 && m == 1
                ? Math.Max(0, tpSync + dpSync - backward - optimizer)
                : Math.Max(0, tpSync - backward) + Math.Max(0, dpSync - optimizer);
        exposedSync += scatters + gatherAfter;
        double step = makespan + optimizer + exposedSync;
        // Communication on the critical path inside the layers: the tp collectives of forward and backward (and of
        // the recomputed forward).
        double layerTpComm = Math.Max(0, layer.Comm - layer.Sync),
            restTpComm = Math.Max(0, rest.Comm - rest.Sync);
        double recompute = layer.Forward + layer.Backward > 0 ? layerFwd / (layer.Forward + layer.Backward) : 0;
        int maxAgain = Enumerable.Range(0, p).Max(d => Enumerable.Range(0, plan.Chunks).Sum(c => again[c * p + d]));
        double tpComm = m * ((maxLayers + maxAgain * recompute) * layerTpComm + restTpComm);
        double modelFlops = (layers * layer.ModelFlops + rest.ModelFlops) * m / p;
        return new RatedPlan(
            plan,
            mbs,
            plan.Splits,
            step,
            m * busiest,
            Math.Min(tpComm, m * busiest),
            p > 1 ? m * send * 2 : 0,
            bubble,
            exposedSync,
            optimizer,
            peak,
            modelFlops / step,
            split,
            null
        )
        {
            GatherSeconds = m * (2 * maxLayers * layerGather + 2 * restGather),
        };
    }

    /// <summary>Seconds of ZeRO-3's all-gathers over dp of the weights of one repeated layer (or of the rest of the
    /// model), one per weight, on one device.</summary>
    private double GatherSeconds(Plan plan, bool inLayer, int[] group) =>
        DeviceParamBytes(plan, inLayer)
            .Sum(bytes => CostModel.CollectiveSeconds("all_gather", bytes / plan.Dp, group, _request.Cluster));

    /// <summary>Parameter state bytes of one repeated layer on one device under the plan's shardings.</summary>
    private double LayerStateBytes(Plan plan) => DeviceParamBytes(plan, inLayer: true).Sum() * _stateFactor;

    /// <summary>The largest parameter outside the repeated layer on one device (ZeRO-3 gathers one at a
    /// time).</summary>
    private double LargestRestParam(Plan plan) => DeviceParamBytes(plan, inLayer: false).DefaultIfEmpty(0).Max();

    private double RestParamBytes(Plan plan) => DeviceParamBytes(plan, inLayer: false).Sum();

    /// <summary>The bytes on one device of each parameter declaration of the repeated layer (or of the rest of the
    /// model) under the plan's shardings.</summary>
    private IEnumerable<double> DeviceParamBytes(Plan plan, bool inLayer) =>
        _model
            .Params.Where(kv => _layerDecls.Contains(kv.Key.Split('.')[0]) == inLayer)
            .Select(kv => ParamBytes(kv.Value, plan.SplitOf(kv.Key)));

    private static double ParamBytes((ParamStmt Decl, long[] Shape) p, int split) =>
        p.Shape.Aggregate(1.0, (a, d) => a * d) * ModelSource.DTypeBytes(p.Decl.Type.DType) / split;
}
