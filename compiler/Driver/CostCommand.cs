using System.CommandLine;
using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Driver;

/// <summary><c>mplc cost</c>: the cost model's command (docs/cost-model.md).</summary>
public sealed partial class Cli
{
    private Command CostCommand()
    {
        var file = FileArg("the .mpl model");
        var cluster = ClusterOption();
        var json = new Option<bool>("--json") { Description = "print the prediction as one JSON object" };
        var gradSync = new Option<string>("--grad-sync")
        {
            Description =
                "when the gradient synchronisation runs: overlap (under the backward, as DDP buckets it; the default) "
                + "or after (once the step's backward is done)",
            DefaultValueFactory = _ => "overlap",
        };
        gradSync.AcceptOnlyFromAmong("overlap", "after");
        var c = new Command("cost", "predict the step time, throughput and memory of the compiled program on a cluster")
        {
            file,
        };
        c.Options.Add(cluster);
        c.Options.Add(json);
        c.Options.Add(gradSync);
        AddPipelineOptions(c);
        AddFrontEndOptions(c);
        c.SetAction(r =>
            Guard(() =>
            {
                var sync =
                    r.GetValue(gradSync) == "after" ? Cost.GradientSync.AfterBackward : Cost.GradientSync.Overlapped;
                var described = LoadCluster(r.GetValue(cluster)!);
                var module = CompileToIR(r, r.GetValue(file)!);
                Cost.StepCost cost;
                try
                {
                    cost = Cost.CostModel.Of(module, described, sync);
                }
                catch (Cost.ClusterException e)
                {
                    throw new UserErrorException(e.Message);
                }
                // Tokens a step: the first integer input's elements (token ids [batch, positions]).
                var tokens = ManifestBuilder.Build(module).Inputs.FirstOrDefault(i => i.DType == DType.I32) is { } ids
                    ? ids.Shape.Aggregate(1.0, (a, d) => a * d)
                    : 0;
                if (r.GetValue(json))
                    Reports.CostReport.PrintJson(cost, described, tokens, stdout);
                else
                    Reports.CostReport.Print(cost, described, tokens, stdout);
                if (cost.Fits)
                    return 0;
                stderr.WriteLine(
                    $"error: the plan does not fit: {Analysis.Units.Bytes(cost.PeakBytes)} at the peak of a "
                        + $"device, "
                        + $"{Analysis.Units.Bytes(cost.HbmBytes)} a GPU on {described.Name}"
                );
                return 1;
            })
        );
        return c;
    }
}
