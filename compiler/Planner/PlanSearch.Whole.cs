using System.Diagnostics;
using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Planner;

public sealed partial class PlanSearch
{
    /// <summary>Most candidates <see cref="CheckWhole"/> compiles whole in one search.</summary>
    private const int WholeChecks = 6;

    /// <summary>
    /// The composed rating is an estimate from one- and two-layer profiles: the best candidate is compiled whole and
    /// costed by the cost model on the whole program (as <c>mplc cost</c> costs the plan written), and, when its peak
    /// does not fit a GPU there, pruned with the reason and the next best checked, up to <see cref="WholeChecks"/>
    /// candidates and within the time limit. The first that fits carries its whole-program step and peak. A check
    /// that fails also calibrates its family (the same mesh, microbatches, schedule and recomputation, any ZeRO stage
    /// or sharding): a candidate of it whose composed peak, scaled by the whole program's over the composed, does
    /// not fit is pruned too, saying so.
    /// </summary>
    private void CheckWhole(List<RatedPlan> rated, Stopwatch clock)
    {
        for (int k = 0; k < WholeChecks && clock.Elapsed.TotalSeconds < _request.TimeLimitSeconds; k++)
        {
            var best = PlanResult.Rank(rated).FirstOrDefault();
            if (best == null || best.WholeStepSeconds != null)
                return;
            StepCost cost;
            try
            {
                cost = CostModel.Of(Compile(best.Plan, null, Batch), _request.Cluster);
            }
            catch (Exception e) when (e is IRException or PassInputException or PassFailureException)
            {
                // Rated as composed: the whole program does not compile, which the user sees when compiling it.
                return;
            }
            int i = rated.IndexOf(best);
            if (cost.PeakBytes <= _request.Cluster.HbmBytes)
            {
                rated[i] = best with { WholeStepSeconds = cost.StepSeconds, WholePeakBytes = cost.PeakBytes };
                return;
            }
            rated[i] = best with
            {
                Pruned =
                    $"pruned: compiled whole, {Units.Bytes(cost.PeakBytes)} at the peak of a device "
                    + $"(composed {Units.Bytes(best.PeakBytes)})",
                WholeStepSeconds = cost.StepSeconds,
                WholePeakBytes = cost.PeakBytes,
            };
            double ratio = cost.PeakBytes / best.PeakBytes;
            string family = Family(best);
            for (int j = 0; j < rated.Count; j++)
                if (
                    rated[j].Viable
                    && Family(rated[j]) == family
                    && rated[j].PeakBytes * ratio > _request.Cluster.HbmBytes
                )
                    rated[j] = rated[j] with
                    {
                        Pruned =
                            $"pruned: {best.Plan.Summary} compiled whole needed {ratio:F2}x its composed peak; "
                            + $"this one's {Units.Bytes(rated[j].PeakBytes)} would not fit",
                    };
        }
    }

    private static string Family(RatedPlan r) =>
        $"{r.Plan.Tp}|{r.Plan.Ty}|{r.Plan.Pp}|{r.Plan.Dp}|{r.Plan.Microbatches}|{r.Plan.Schedule}|{r.Plan.Chunks}|"
        + $"{r.Plan.Remat}|{r.Plan.Selective}|{r.Plan.RematFirst}";
}
