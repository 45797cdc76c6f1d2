using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Syntax;

// Benchmarks of the compiler. Usage: Bench [frontend] [--repeat N] [--example PATH]
// frontend: parse + lower + verify the transformer of docs/language.md at GPT-3 scale
// (-D L=96 -D D=12288 -D S=2048 -D V=51200). Target: under 2 s on a 2-core machine.
string example = "examples/gpt.mpl";
int repeat = 5;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--repeat") repeat = int.Parse(args[++i], CultureInfo.InvariantCulture);
    else if (args[i] == "--example") example = args[++i];
}
string root = AppContext.BaseDirectory;
while (!File.Exists(Path.Combine(root, "ParallelCompiler.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("repository root not found");
var src = SourceText.Load(Path.Combine(root, example));

var options = new CompileOptions();
foreach (var (k, v) in new[] { ("L", 96L), ("D", 12288L), ("S", 2048L), ("V", 51200L) }) options.Defines[k] = v;

var times = new List<double>();
int ops = 0;
for (int r = 0; r < repeat + 1; r++)
{
    var sw = Stopwatch.StartNew();
    var diags = new DiagnosticBag();
    var module = Compilation.FrontEnd(src, options, diags);
    Verifier.Verify(module);
    sw.Stop();
    ops = module.Walk().Count();
    if (r > 0) times.Add(sw.Elapsed.TotalMilliseconds); // the first run includes JIT warm-up
    else Console.WriteLine($"cold (first run, includes JIT): {sw.Elapsed.TotalMilliseconds:F1} ms");
}
times.Sort();
Console.WriteLine($"frontend+verify {example} -D L=96 -D D=12288 -D S=2048 -D V=51200: {ops} ops");
Console.WriteLine($"  median {times[times.Count / 2]:F1} ms, min {times[0]:F1} ms, max {times[^1]:F1} ms over {repeat} warm runs (target < 2000 ms)");
