using System.Collections.Concurrent;
using ParallelCompiler.Runtime.Pipeline;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Planner;

/// <summary>The planner's model-structure helpers: which layers form the repeated stack, how layers are cut into
/// stages, and how many microbatches a pipeline device holds.</summary>
public sealed partial class PlanSearch
{
    /// <summary>The repeated layer and the layers it calls that nothing outside it calls.</summary>
    private static HashSet<string> LayersOfTheStack(ModelSource model)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        if (model.RepeatedLayer == null)
            return set;
        var blocks = model.Program.Decls.OfType<BlockDecl>().ToDictionary(b => b.Name);
        static IEnumerable<string> Calls(BlockDecl b, IReadOnlyDictionary<string, BlockDecl> blocks) =>
            Exprs(b.Body).OfType<CallExpr>().Select(c => c.Callee).Where(blocks.ContainsKey);
        var stack = new Stack<string>([model.RepeatedLayer]);
        while (stack.Count > 0)
            if (set.Add(stack.Peek()))
                foreach (var c in Calls(blocks[stack.Pop()], blocks))
                    stack.Push(c);
            else
                stack.Pop();
        // A layer the model also calls outside the loop is not the stack's alone.
        var outside = Exprs(model.Model.Body.Where(s => s != model.Loop)).OfType<CallExpr>().Select(c => c.Callee);
        set.ExceptWith(outside.Where(c => c != model.RepeatedLayer));
        return set;
    }

    private static IEnumerable<Expr> Exprs(IEnumerable<Stmt> body)
    {
        foreach (var s in body)
        {
            var roots = s switch
            {
                LetStmt l => [l.Value],
                AssignStmt a => [a.Value],
                ReturnStmt r => [r.Value],
                ForStmt f => Exprs(f.Body).ToArray(),
                _ => Array.Empty<Expr>(),
            };
            foreach (var r in roots)
            foreach (var e in Flatten(r))
                yield return e;
        }
    }

    private static IEnumerable<Expr> Flatten(Expr e)
    {
        yield return e;
        var children = e switch
        {
            CallExpr c => c.Args.Select(a => a.Value),
            BinaryExpr b => [b.Left, b.Right],
            NegExpr n => [n.Operand],
            ListExpr l => l.Items,
            _ => [],
        };
        foreach (var c in children)
        foreach (var x in Flatten(c))
            yield return x;
    }

    /// <summary>Microbatches whose activations device <paramref name="d"/> holds at once (per chunk, summed over its
    /// chunks): all of them under gpipe, at most p - d under 1F1B and ZB-H1 (from F to B), and under the interleaved
    /// schedule and ZB-H2 the most between F and B in the compiled schedule's order.</summary>
    private static double Held(Plan plan, int d)
    {
        int m = plan.Microbatches,
            p = plan.Pp;
        if (p == 1)
            return 1;
        if (plan.Schedule == "gpipe" && plan.Chunks == 1)
            return m;
        if (plan.Schedule == "zb-h2")
            return Outstanding("zb-h2", p, m, 1)[d].BeforeB;
        // ZB-H1: 1F1B's microbatches between F and B; those between B and the deferred W are Deferred's.
        if (plan.Chunks == 1)
            return Math.Min(m, p - d);
        return Outstanding("interleaved", p, m, plan.Chunks)[d].BeforeB;
    }

    /// <summary>Microbatches device <paramref name="d"/> holds between their B and their deferred W under a
    /// zero-bubble schedule (d of them under ZB-H1; under ZB-H2 the most in its order), 0 under the others.</summary>
    private static double Deferred(Plan plan, int d) =>
        !Schedule.SplitsBackward(plan.Schedule) || plan.Pp == 1 ? 0
        : plan.Schedule == "zb-h2" ? Outstanding("zb-h2", plan.Pp, plan.Microbatches, 1)[d].BeforeW
        : Math.Min(plan.Microbatches, d);

    private static readonly ConcurrentDictionary<(string, int, int, int), (int BeforeB, int BeforeW)[]> OutstandingOf =
        new();

    // Per device of the compiled schedule over p devices, m microbatches and its chunks: the most (chunk)
    // microbatches at once past their F and not yet past their B, and past their B and not yet past their W (the two
    // maxima, each over the device's order; their sum bounds what it holds at once).
    private static (int BeforeB, int BeforeW)[] Outstanding(string schedule, int p, int m, int chunks) =>
        OutstandingOf.GetOrAdd(
            (schedule, p, m, chunks),
            _ =>
                [
                    .. Schedule
                        .Build(schedule, p, m, chunks, true)
                        .Select(order =>
                        {
                            int fb = 0,
                                bw = 0,
                                maxFb = 0,
                                maxBw = 0;
                            foreach (var t in order)
                            {
                                (fb, bw) = t.Phase switch
                                {
                                    Phase.Forward => (fb + 1, bw),
                                    Phase.Backward => (fb - 1, bw + 1),
                                    _ => (fb, bw - 1),
                                };
                                (maxFb, maxBw) = (Math.Max(maxFb, fb), Math.Max(maxBw, bw));
                            }
                            return (maxFb, maxBw);
                        }),
                ]
        );

    /// <summary>
    /// Layers per model stage: balanced on their time, the last stage also holding the rest of the model (the output
    /// layer and the loss), each stage at least one layer.
    /// </summary>
    public static int[] SplitLayers(long layers, int stages, double layerSeconds, double restSeconds)
    {
        var best = Array.Empty<int>();
        double bestMax = double.PositiveInfinity;
        for (long last = 1; last <= layers - (stages - 1); last++)
        {
            if (stages == 1 && last != layers)
                continue;
            long others = layers - last;
            var split = new int[stages];
            split[stages - 1] = (int)last;
            for (int s = 0; s < stages - 1; s++)
                split[s] = (int)(others / (stages - 1) + (s < others % (stages - 1) ? 1 : 0));
            double max = Math.Max(last * layerSeconds + restSeconds, stages > 1 ? split[0] * layerSeconds : 0);
            if (max < bestMax - 1e-12)
            {
                bestMax = max;
                best = split;
            }
        }
        return best;
    }
}
