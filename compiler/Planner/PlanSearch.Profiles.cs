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

// Compiled profiles: the variants a candidate is rated from, compiled once each and cached by key.
public sealed partial class PlanSearch
{
    /// <summary>The cache key of a profile: the intra-operator sharding of <paramref name="layout"/> (its tp mesh
    /// and parameter dimensions), the microbatch size, the selectively recomputed layer and the layer count.</summary>
    private static string Key(Plan layout, long mbs, string? selective, long layers) =>
        $"{layout.TpMesh}|{mbs}|{layout.Splits}|{selective}|{layers}";

    /// <summary>A plan of one stage, one microbatch and one replica with the intra-operator sharding of
    /// <paramref name="layout"/>.</summary>
    private static Plan LayoutOf(Plan layout) =>
        new Plan(layout.Tp, 1, 1, 1, "1f1b", 1, false, 0, EmptyDims).WithLayout(layout);

    private bool HasProfiles(Plan dims, long mbs, string? selective, bool weights) =>
        _profiles.ContainsKey(Key(dims, mbs, selective, 1))
            && (_model.Loop == null || _profiles.ContainsKey(Key(dims, mbs, selective, 2)))
            && (
                !weights
                || _weights.ContainsKey(Key(dims, mbs, selective, 1))
                    && _weights.ContainsKey(Key(dims, mbs, selective, 2))
                || _failedWeights.ContainsKey(Key(dims, mbs, selective, 1))
            )
        || _failed.ContainsKey(Key(dims, mbs, selective, 1));

    /// <summary>Compiles the one- and two-layer profiles of (tp, shardings, microbatch size, selectively recomputed
    /// layer), and with <paramref name="weights"/> their weight-gradient profiles, unless the time left is
    /// spent.</summary>
    private void Profiles(Plan dims, long mbs, string? selective, double secondsLeft, bool weights = false)
    {
        var clock = Stopwatch.StartNew();
        string first = Key(dims, mbs, selective, 1);
        foreach (long layers in _model.Loop != null ? new long[] { 1, 2 } : [1])
        {
            string key = Key(dims, mbs, selective, layers);
            if (_profiles.ContainsKey(key) || _failed.ContainsKey(first))
                continue;
            if (clock.Elapsed.TotalSeconds > secondsLeft)
                return;
            try
            {
                _profiles[key] = ProfileOf(dims, mbs, selective, layers);
            }
            catch (Exception e) when (e is PassInputException or PassFailureException or UserErrorException)
            {
                _failed[first] = $"does not compile: {e.Message.Split('\n')[0]}";
            }
        }
        if (!weights || _model.Loop == null)
            return;
        foreach (long layers in new long[] { 1, 2 })
        {
            string key = Key(dims, mbs, selective, layers);
            if (_weights.ContainsKey(key) || _failed.ContainsKey(first) || _failedWeights.ContainsKey(first))
                continue;
            if (clock.Elapsed.TotalSeconds > secondsLeft)
                return;
            try
            {
                var variant = LayoutOf(dims) with { Pp = 2, Schedule = "zb-h1", Selective = selective };
                var module = Compile(variant, layers, mbs, pipeline: true, stageBeforeLoop: true);
                _weights[key] = CostModel.Of(module, _request.Cluster).StageWeightSeconds.Sum();
            }
            catch (Exception e) when (e is PassInputException or PassFailureException or UserErrorException)
            {
                _failedWeights[first] = $"does not compile with a stage boundary: {e.Message.Split('\n')[0]}";
            }
        }
    }

    /// <summary>A one-stage, one-microbatch variant with <paramref name="layers"/> repeated layers.</summary>
    private Profile ProfileOf(Plan dims, long mbs, string? selective, long layers)
    {
        var variant = LayoutOf(dims) with { Selective = selective };
        // One stage of one microbatch, still pipelined: the cost model then tells the forward from the backward.
        var module = Compile(variant, _model.Loop != null ? layers : null, mbs, pipeline: true);
        var cost = CostModel.Of(module, _request.Cluster);
        var held = PipelineStats.Of(module.EntryFunction()!)?.Devices[0];
        return new Profile(
            cost.StageForwardSeconds.Sum(),
            cost.StageBackwardSeconds.Sum(),
            cost.StepPhaseSeconds,
            cost.SyncSeconds,
            cost.Stages.Sum(s => s.CommSeconds),
            cost.PeakBytes,
            held == null ? 0 : (double)held.PeakActivationBytes / Math.Max(1, held.PeakMicrobatches),
            cost.FlopsPerDevice,
            cost.ModelFlopsPerDevice
        );
    }
}
