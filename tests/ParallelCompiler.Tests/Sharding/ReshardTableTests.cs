using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using Xunit;
using ShardingT = ParallelCompiler.IR.Sharding;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>
/// Every layout change of a 2-D tensor over a 2x2 mesh, from every layout including partial sums to every
/// complete layout, lowered to collectives and run on four devices, against the single-device value.
/// </summary>
public class ReshardTableTests
{
    private static readonly string[][] AxisOrders =
    [
        [],
        ["x"],
        ["y"],
        ["x", "y"],
        ["y", "x"],
    ];

    private static IEnumerable<ShardingT> Layouts(bool withPartial)
    {
        foreach (var d0 in AxisOrders)
        foreach (var d1 in AxisOrders)
        {
            if (d0.Intersect(d1).Any())
                continue;
            var free = new[] { "x", "y" }.Except(d0).Except(d1).ToArray();
            yield return new ShardingT([d0, d1]);
            if (!withPartial)
                continue;
            foreach (var p in new[] { new[] { "x" }, ["y"], ["x", "y"] })
                if (p.All(free.Contains))
                    yield return new ShardingT([d0, d1], p);
        }
    }

    [Fact]
    public void EveryLayoutChangeGivesTheSameValues()
    {
        var failures = new List<string>();
        int pairs = 0;
        var kinds = new HashSet<string>();
        foreach (var from in Layouts(withPartial: true))
        foreach (var to in Layouts(withPartial: false))
        {
            pairs++;
            var module = Build(from, to, out var args);
            var (single, spmd) = Distributed.Run(module, args, new Dictionary<string, NDArray>());
            foreach (var op in module.Walk().Where(o => o.Dialect == "dist" && o.Name != "dist.mesh"))
                kinds.Add(op.Name);
            double err = Distributed.MaxRelativeError(single[0], spmd[0]);
            if (err > 1e-5)
                failures.Add($"{from} -> {to}: error {err:G3}");
        }
        Assert.True(
            failures.Count == 0,
            $"{failures.Count} of {pairs} layout changes differ:\n" + string.Join("\n", failures)
        );
        Assert.True(pairs > 150, $"only {pairs} pairs");
        foreach (
            var k in new[]
            {
                "dist.all_gather",
                "dist.all_slice",
                "dist.all_to_all",
                "dist.all_reduce",
                "dist.reduce_scatter",
            }
        )
            Assert.Contains(k, kinds);
    }

    /// <summary>p @ q laid out so the product has <paramref name="from"/> (its partial axes split the contraction),
    /// then resharded to <paramref name="to"/>.</summary>
    private static Operation Build(ShardingT from, ShardingT to, out NDArray[] args)
    {
        var ps = new ShardingT([from.Dims[0], from.Partial]);
        var qs = new ShardingT([from.Partial, from.Dims[1]]);
        var text = $$"""
            module {
              dist.mesh {axes = ["x", "y"], shape = [2, 2], sym_name = "grid"} : () -> ()
              func.func @f(%p: tensor<8x12xf32, {{ps}}>, %q: tensor<12x12xf32, {{qs}}>) -> tensor<8x12xf32, {{to}}> {
                %0 = tensor.matmul %p, %q
                  : (tensor<8x12xf32, {{ps}}>, tensor<12x12xf32, {{qs}}>) -> tensor<8x12xf32, {{from}}>
                %1 = dist.reshard %0 : (tensor<8x12xf32, {{from}}>) -> tensor<8x12xf32, {{to}}>
                func.return %1 : tensor<8x12xf32, {{to}}>
              }
            }
            """;
        var module = IRParser.ParseModule(text);
        Verifier.Verify(module);
        args =
        [
            Initializers.RandomInput(DType.F32, [8, 12], 1, "p", 0),
            Initializers.RandomInput(DType.F32, [12, 12], 1, "q", 0),
        ];
        return module;
    }
}
