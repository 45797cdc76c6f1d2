using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Syntax;

// Benchmarks of the compiler. Usage: Bench [frontend|sharding|matmul|all|table1 [ROWS|--source DIR]] [--repeat N]
// [--example PATH]
// table1: the cost model against Megatron-LM's Table 1 (Table1.cs); minutes, not in all.
// selective [ROWS|--source DIR]: sequence parallelism + selective recomputation against full recomputation,
//   on Korthikanti et al.'s configurations (Korthikanti.cs); minutes, not in all.
// plan [ROWS] [--full-cost]: the planner on Table 1's models without their plans, against the rows' own plans rated
//   the same way (PlanTable1.cs); --full-cost also compiles both whole plans and costs them. Minutes, not in all.
// frontend: parse + lower + verify the transformer of docs/language.md at GPT-3 scale
//   (-D L=96 -D D=12288 -D S=2048 -D V=51200). Target: under 2 s on a 2-core machine.
// sharding: sharding-propagation + insert-reshards + spmdize of the same model (with GPT-3's 96 heads and a
//   batch of 1536 sequences so dp=64 divides it) on meshes of 8, 64 and 1,024 devices. Target: under 2 s, and
//   flat in the device count (one SPMD program serves every device).
// mpi [--ranks N] [--steps N]: all-reduce of the runtime's MPI path at N (4) ranks against Open MPI's own
//   MPI_Allreduce from a C program (mpicc), and a gpt.mpl training step at mpirun -np 8 against the in-process run
//   (MpiBench in Mpi.cs). Target: at least 0.9x Open MPI. Not in all. mpi-rank: one rank of it, under mpirun.
// matmul: the generated host matmul kernel at 512x512x512 f32 on one thread against numpy's (its BLAS limited to
//   one thread) on the same machine. Target: at least 0.3x numpy. Also a fused elementwise chain against a copy.
string which = args.Length > 0 && !args[0].StartsWith("--") ? args[0] : "all";
if (which == "mpi-rank")
{
    ParallelCompiler.Bench.MpiBench.Rank(args.Skip(1));
    return;
}
string example = "examples/gpt.mpl";
int repeat = 5;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--repeat")
        repeat = int.Parse(args[++i], CultureInfo.InvariantCulture);
    else if (args[i] == "--example")
        example = args[++i];
}
string root = AppContext.BaseDirectory;
while (!File.Exists(Path.Combine(root, "ParallelCompiler.sln")))
    root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("repository root not found");
if (which == "mpi")
{
    int Flag(string name, int fallback) =>
        Array.IndexOf(args, name) is int i and >= 0 ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    ParallelCompiler.Bench.MpiBench.Run(root, Flag("--ranks", 4), Flag("--steps", 6));
    return;
}
var src = SourceText.Load(Path.Combine(root, example));
(string, long)[] gpt3 = [("L", 96), ("D", 12288), ("S", 2048), ("V", 51200)];

CompileOptions Options((string, long)[] defines, string? mesh = null)
{
    var o = new CompileOptions();
    foreach (var (k, v) in defines)
        o.Defines[k] = v;
    foreach (var part in (mesh ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        o.Mesh.Add(new(part.Split('=')[0], long.Parse(part.Split('=')[1], CultureInfo.InvariantCulture)));
    return o;
}

// Runs body repeat + 1 times (setup untimed each time); the first run includes JIT warm-up and is reported apart.
void Measure(string title, Func<object?> setup, Func<object?, string> body)
{
    var times = new List<double>();
    string info = "";
    for (int r = 0; r < repeat + 1; r++)
    {
        var state = setup();
        var sw = Stopwatch.StartNew();
        info = body(state);
        sw.Stop();
        if (r > 0)
            times.Add(sw.Elapsed.TotalMilliseconds);
        else
            Console.WriteLine($"{title}: cold (first run, includes JIT) {sw.Elapsed.TotalMilliseconds:F1} ms");
    }
    times.Sort();
    Console.WriteLine($"{title}: {info}");
    Console.WriteLine(
        $"  median {times[times.Count / 2]:F1} ms, min {times[0]:F1} ms, max {times[^1]:F1} ms over "
            + $"{repeat} warm runs (target < 2000 ms)"
    );
}

if (which is "frontend" or "all")
{
    var options = Options(gpt3);
    Measure(
        $"frontend+verify {example} -D L=96 -D D=12288 -D S=2048 -D V=51200",
        () => null,
        _ =>
        {
            var module = Compilation.FrontEnd(src, options, new DiagnosticBag());
            Verifier.Verify(module);
            return $"{module.Walk().Count()} ops";
        }
    );
}

if (which == "plan")
{
    // The planner on every row of Table 1 (PlanTable1.cs); minutes, not in all.
    int rows = args.Length > 1 && int.TryParse(args[1], out int n) ? n : 10;
    PlanTable1.Run(rows, args.Contains("--full-cost"));
    return;
}

if (which == "selective")
{
    // Sequence parallelism with selective recomputation against full recomputation (Korthikanti.cs); minutes.
    if (args.Length > 2 && args[1] == "--source")
        Korthikanti.WriteSources(args[2]);
    else
        Korthikanti.Run(args.Length > 1 && int.TryParse(args[1], out int k) ? k : 4);
    return;
}

if (which == "table1")
{
    // Slow (every row of the paper compiled at full size): not part of "all".
    if (args.Length > 2 && args[1] == "--source")
    {
        // The rows' models as files, to look at one with mplc (cost, compile --timing).
        Table1.WriteSources(args[2]);
        return;
    }
    int rows = args.Length > 1 && int.TryParse(args[1], out int n) ? n : 10;
    Table1.Run(rows);
    return;
}

if (which is "sharding" or "all")
{
    foreach (var mesh in new[] { "pp=1,dp=2,tp=4", "pp=1,dp=8,tp=8", "pp=1,dp=64,tp=16" })
    {
        var options = Options([.. gpt3, ("NH", 96), ("B", 1536)], mesh);
        Measure(
            $"sharding-propagation+insert-reshards+spmdize {example} GPT-3 scale --mesh {mesh}",
            () =>
            {
                var module = Compilation.FrontEnd(src, options, new DiagnosticBag());
                // The default pipeline's simplifications come first, as in mplc compile; they are not timed.
                new ShapeInference().Run(module);
                new Canonicalize().Run(module);
                new Cse().Run(module);
                new Dce().Run(module);
                return module;
            },
            state =>
            {
                var module = (Operation)state!;
                new ShardingPropagation().Run(module);
                new InsertReshards().Run(module);
                new Spmdize().Run(module);
                var ops = module.Walk().ToList();
                return $"{module.DeviceMesh().DeviceCount} devices, {ops.Count} ops per device, "
                    + $"{ops.Count(o => o.Dialect == "dist" && o.Name != "dist.mesh")} collectives";
            }
        );
    }
}

if (which is "matmul" or "all")
    Kernels.Run(root, Math.Max(repeat, 10));
