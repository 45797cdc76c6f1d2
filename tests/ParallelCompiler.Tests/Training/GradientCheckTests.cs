using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using ParallelCompiler.Interp;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using ParallelCompiler.Tests.IR;

namespace ParallelCompiler.Tests.Training;

/// <summary>
/// Reverse-mode gradients of generated programs against central finite differences: the program's inputs become
/// parameters, the loss is the sum of squares of its result, and every parameter entry is perturbed. Entries
/// where two step sizes disagree sit on a kink (relu, max, step) and are not judged.
/// </summary>
public class GradientCheckTests
{
    [Property(MaxTest = 300, EndSize = 30)]
    public Property GradientsMatchCentralDifferences(byte[] steps)
    {
        var (module, func) = TrainingModule(steps);
        return Check(module, func);
    }

    /// <summary>The ops the generator does not make: log, sqrt, rsqrt, rem, slice, cross_entropy (on positive inputs
    /// where they need them).</summary>
    [Xunit.Theory]
    [Xunit.InlineData(
        "%1 = tensor.exp %a : (tensor<2x3xf32>) -> tensor<2x3xf32>\n%r = tensor.log %1 : "
            + "(tensor<2x3xf32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.exp %a : (tensor<2x3xf32>) -> tensor<2x3xf32>\n%r = tensor.sqrt %1 : "
            + "(tensor<2x3xf32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.exp %a : (tensor<2x3xf32>) -> tensor<2x3xf32>\n%r = tensor.rsqrt %1 : "
            + "(tensor<2x3xf32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.exp %b : (tensor<3xf32>) -> tensor<3xf32>\n%2 = tensor.constant {value = 2.5} : () "
            + "-> tensor<f32>\n%3 = tensor.add %1, %2 : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>\n%r = tensor.rem "
            + "%a, %3 : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.matmul %a, %c : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>\n%2 = "
            + "tensor.exp %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>\n"
            + "%r = tensor.slice %2 {axis = 1, length = 3, start = "
            + "1} : (tensor<2x4xf32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.matmul %a, %c : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>\n%l = "
            + "tensor.cross_entropy %1, %ids : (tensor<2x4xf32>, tensor<2xi32>) -> tensor<f32>\n"
            + "%r = tensor.mul %a, %l : "
            + "(tensor<2x3xf32>, tensor<f32>) -> tensor<2x3xf32>"
    )]
    [Xunit.InlineData(
        "%1 = tensor.matmul %b, %c : (tensor<3xf32>, tensor<3x4xf32>) -> tensor<4xf32>\n%2 = "
            + "tensor.matmul %a, %b : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2xf32>\n"
            + "%3 = tensor.sum %1 {axes = [0], "
            + "keepdims = false} : (tensor<4xf32>) -> tensor<f32>\n%r = tensor.mul %a, %3 : (tensor<2x3xf32>, "
            + "tensor<f32>) -> tensor<2x3xf32>"
    )]
    public void HandWrittenProgramsMatchCentralDifferences(string body)
    {
        // Each line of the body becomes one line of the function; %r (f32[2, 3]) is what the loss squares and sums.
        string ops = string.Join("\n", body.Split("\\n").Select(l => "    " + l));
        var text = $$$"""
            module attributes {train = {lr = 0.1, model = "f", optimizer = "sgd"}} {
              func.func @f(%ids: tensor<2xi32>) -> tensor<f32> {
                %a = tensor.param {init = "ones", path = "a"} : () -> tensor<2x3xf32>
                %b = tensor.param {init = "ones", path = "b"} : () -> tensor<3xf32>
                %c = tensor.param {init = "ones", path = "c"} : () -> tensor<3x4xf32>
            {{{ops}}}
                %sq = tensor.mul %r, %r : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
                %loss = tensor.sum %sq {axes = [0, 1], keepdims = false} : (tensor<2x3xf32>) -> tensor<f32>
                func.return %loss : tensor<f32>
              }
            }
            """;
        var module = IRParser.ParseModule(text);
        var (passed, why) = Judge(module, module.EntryFunction()!);
        Xunit.Assert.True(passed, why);
    }

    private readonly record struct Outcome(bool Passed, string Why);

    private static Property Check(Operation module, Operation func)
    {
        var (passed, why) = Judge(module, func);
        return passed.Label(why);
    }

    private static Outcome Judge(Operation module, Operation func)
    {
        // Squares of the generator's 3e20 constants overflow float32 in the backward program's recomputed norms,
        // as they would in any float32 framework; such programs say nothing about the rules.
        if (
            func.Walk()
                .Any(o => o.Name == "tensor.constant" && o.GetAttr("value") is FloatAttr f && Math.Abs(f.Value) > 1e6)
        )
            return new(true, "constants beyond float32's squared range: not judged");
        var ps = Params(func);
        double loss = Loss(func, ps);
        if (!double.IsFinite(loss) || Math.Abs(loss) > 1e4)
            return new(true, "loss out of range: not judged");
        new Autodiff().Run(module);
        Verifier.Verify(module);
        var grads = new Dictionary<string, NDArray>();
        Interpreter.Run(
            func,
            Args(func),
            op => ps[op.StringAttr("path")],
            (op, g) => grads[Dialects.Train.ParameterEffectOpDef.PathOf(op)] = g
        );
        var problems = new List<string>();
        foreach (var (path, p) in ps)
        {
            if (!grads.TryGetValue(path, out var g))
                continue;
            double scale = Enumerable.Range(0, (int)g.Size).Max(i => Math.Abs(g.GetDouble(i)));
            // Below this a difference is float32 rounding, not a wrong rule: the loss is evaluated in float32 (about
            // 1.2e-7 |loss| each), so the extrapolated differences carry about 3.6e-5 |loss| of their own; and a
            // gradient that is exactly zero (a loss that does not depend on the entry) comes out of autodiff as
            // the rounding of terms that cancel.
            double floor = 1e-2 * scale + 1e-3 + 2e-3 * Math.Abs(loss);
            for (int i = 0; i < p.Size; i++)
            {
                double fdFull = Central(func, ps, path, i, 1e-2),
                    fdHalf = Central(func, ps, path, i, 5e-3);
                // a kink between the two steps
                if (Math.Abs(fdFull - fdHalf) > 1e-2 * (Math.Abs(fdFull) + 1e-2 * scale + 1e-3))
                    continue;
                // Richardson extrapolation of the two central differences cancels their h^2 error, which steep
                // chains (exp of exp) make a few percent at these steps.
                double fd = (4 * fdHalf - fdFull) / 3;
                double ad = g.GetDouble(i);
                if (Math.Abs(ad - fd) > 2e-2 * Math.Max(Math.Max(Math.Abs(ad), Math.Abs(fd)), floor))
                    problems.Add($"{path}[{i}]: autodiff {ad:G5}, finite differences {fd:G5}");
            }
        }
        return new(problems.Count == 0, string.Join("\n", problems.Take(10)) + "\n" + Printer.Print(module));
    }

    /// <summary>ProgramGen's program with its float inputs turned into parameters and the sum of squares of its result
    /// as the loss.</summary>
    private static (Operation Module, Operation Func) TrainingModule(byte[] steps)
    {
        var module = ProgramGen.Build(steps);
        var func = module.EntryFunction()!;
        var entry = func.Regions[0].Entry;
        var b = new Builder();
        b.SetInsertionPointBefore(entry.First!);
        foreach (var a in entry.Arguments.Where(a => a.TensorType.DType.IsFloat()).ToList())
        {
            var p = b.CreateValue(
                "tensor.param",
                [],
                [new("path", Attr.Str($"gen.{a.NameHint}")), new("init", Attr.Str("ones"))],
                a.TensorType
            );
            a.ReplaceAllUsesWith(p);
        }
        var ret = entry.Last!;
        b.SetInsertionPointBefore(ret);
        var r = ret.Operands[0];
        var loss = b.CreateValue(
            "tensor.sum",
            [b.CreateValue("tensor.mul", [r, r])],
            [
                new("axes", Attr.Ints(Enumerable.Range(0, r.TensorType.Rank).Select(i => (long)i))),
                new("keepdims", Attr.Bool(false)),
            ]
        );
        ret.Erase();
        b.SetInsertionPointToEnd(entry);
        b.Create("func.return", [loss]);
        func.SetResultTypes([loss.Type]);
        module.SetAttr(
            "train",
            new DictAttr([new("model", Attr.Str("gen")), new("optimizer", Attr.Str("sgd")), new("lr", Attr.Float(0.1))])
        );
        Verifier.Verify(module);
        return (module, func);
    }

    private static Dictionary<string, NDArray> Params(Operation func)
    {
        var rng = new Random(11);
        return func.Regions[0]
            .Entry.Operations.Where(o => o.Name == "tensor.param")
            .ToDictionary(
                o => o.StringAttr("path"),
                o =>
                {
                    var t = o.Result.TensorType;
                    return NDArray.FromFloats(
                        t.ShapeArray,
                        Enumerable.Range(0, (int)t.NumElements).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()
                    );
                }
            );
    }

    private static NDArray[] Args(Operation func) =>
        func.Regions[0]
            .Entry.Arguments.Select(a =>
                a.TensorType.DType.IsFloat()
                    ? NDArray.Zeros(a.TensorType.DType, a.TensorType.ShapeArray)
                    : NDArray.FromInts(
                        a.TensorType.ShapeArray,
                        Enumerable.Range(0, (int)a.TensorType.NumElements).Select(i => i * 7 % 5).ToArray()
                    )
            )
            .ToArray();

    private static double Loss(Operation func, Dictionary<string, NDArray> ps) =>
        Interpreter.Run(func, Args(func), op => ps[op.StringAttr("path")])[0].GetDouble(0);

    private static double Central(Operation func, Dictionary<string, NDArray> ps, string path, int i, double eps)
    {
        var p = ps[path];
        float saved = p.F![i];
        p.F[i] = (float)(saved + eps);
        double up = Loss(func, ps);
        p.F[i] = (float)(saved - eps);
        double down = Loss(func, ps);
        p.F[i] = saved;
        return (up - down) / (2 * eps);
    }
}
