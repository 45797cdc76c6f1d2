using System.CommandLine;
using System.Globalization;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Planner;
using ParallelCompiler.Syntax;
using Spectre.Console;

namespace ParallelCompiler.Driver;

/// <summary><c>mplc plan</c>: the automatic planner's command (docs/planner.md).</summary>
public sealed partial class Cli
{
    private Command PlanCommand()
    {
        var file = FileArg("the .mpl model (its shardings and @pipeline are replaced)");
        var cluster = ClusterOption();
        var gpus = new Option<int>("--gpus")
        {
            Description = "how many GPUs of the cluster to plan for",
            Required = true,
        };
        var batch = new Option<long?>("--batch")
        {
            Description = "the global batch (default: the model's batch const)",
        };
        var limit = new Option<double>("--time-limit")
        {
            Description = "seconds after which no further candidate is rated (default 170)",
            DefaultValueFactory = _ => 170,
        };
        var top = new Option<int>("--top")
        {
            Description = "how many plans after the best to show (default 3)",
            DefaultValueFactory = _ => 3,
        };
        var output = new Option<string?>("-o", "--output") { Description = "write the model with the best plan here" };
        var export = new Option<string?>("--export")
        {
            Description = "write every rated candidate to DIR/candidates.csv and DIR/candidates.parquet",
        };
        var c = new Command("plan", "find the parallel strategy of a model on a cluster, explain it, export the search")
        {
            file,
        };
        foreach (var o in new Option[] { cluster, gpus, batch, limit, top, output, export })
            c.Options.Add(o);
        c.Options.Add(_defines);
        c.Options.Add(_mesh);
        c.Options.Add(_entry);
        c.Options.Add(_verbose);
        c.SetAction(r =>
            Guard(() =>
            {
                CheckOutput("-o", r.GetValue(output));
                CheckOutput("--export", r.GetValue(export), folder: true);
                if (r.GetValue(top) < 0)
                    throw new UserErrorException($"--top must be at least 0, got {r.GetValue(top)}");
                if (!(r.GetValue(limit) > 0))
                    throw new UserErrorException($"--time-limit must be positive, got {r.GetValue(limit)}");
                if (r.GetValue(batch) is <= 0)
                    throw new UserErrorException($"--batch must be positive, got {r.GetValue(batch)}");
                var described = LoadCluster(r.GetValue(cluster)!);
                var src = Compilation.ReadSource(r.GetValue(file)!);
                // --mesh fixes some of the planner's axes; the rest is searched.
                var options = FrontEndOptions(r);
                var request = new PlanRequest(
                    described,
                    r.GetValue(gpus),
                    r.GetValue(batch),
                    r.GetValue(limit),
                    options
                )
                {
                    Fixed = options.Mesh.ToDictionary(m => m.Key, m => (int)Math.Clamp(m.Value, 0, int.MaxValue)),
                };
                options.Mesh.Clear();
                using var services = CompilerServices.Create();
                var registry = (PassRegistry)services.GetService(typeof(PassRegistry))!;
                var result = WithProgress("planning", report => PlanSearch.Search(src, request, registry, report));
                var best = result.Ranked.First();
                var model = result.Model;
                double tokens =
                    (double)(request.Batch ?? model.Batch)
                    * model
                        .Model.Args[0]
                        .Type.Dims.Skip(1)
                        .Aggregate(1L, (a, d) => a * ModelSource.Eval(d, model.Consts));
                PlanReport.Print(result, r.GetValue(top), stdout, tokens);
                if (r.GetValue(export) is { } dir)
                {
                    PlanReport.Export(result, dir);
                    stdout.WriteLine($"\nexported {result.Candidates.Count} candidates to {dir}");
                }
                if (r.GetValue(output) is { } path)
                {
                    string header =
                        $"// Planned by mplc plan for {request.Gpus} GPUs of {described.Name}: {best.Plan.Summary}; "
                        + $"predicted step {PlanReport.Seconds(best.StepSeconds)}"
                        + (best.Plan.Zero > 0 ? $"\n// Compile and run it with --zero {best.Plan.Zero}." : "")
                        + "\n";
                    WriteText(path, model.Write(best.Plan, batch: request.Batch, header: header));
                    stdout.WriteLine($"wrote the plan to {path}");
                }
                return 0;
            })
        );
        return c;
    }

    private static Option<string> ClusterOption() =>
        new("--cluster")
        {
            Description =
                $"the cluster: a preset ({string.Join(", ", Cost.Cluster.Presets.Keys)}) or a .json file "
                + "with the same fields",
            Required = true,
        };

    private static Cost.Cluster LoadCluster(string name)
    {
        try
        {
            return Cost.Cluster.Load(name);
        }
        catch (Cost.ClusterException e)
        {
            throw new UserErrorException($"--cluster: {e.Message}");
        }
    }

    /// <summary>Runs <paramref name="body"/> with a progress bar on an interactive terminal.</summary>
    private T WithProgress<T>(string what, Func<Action<int, int>?, T> body)
    {
        if (!ReferenceEquals(stderr, Console.Error) || Console.IsErrorRedirected)
            return body(null);
        T result = default!;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console
            .Progress()
            .Columns(
                new TaskDescriptionColumn(),
                new ProgressBarColumn(),
                new PercentageColumn(),
                new ElapsedTimeColumn()
            )
            .Start(ctx =>
            {
                var task = ctx.AddTask(what);
                result = body(
                    (done, total) =>
                    {
                        task.MaxValue = total;
                        task.Value = done;
                        task.Description = $"{what}: {done.ToString(CultureInfo.InvariantCulture)}/{total} candidates";
                    }
                );
            });
        return result;
    }
}
