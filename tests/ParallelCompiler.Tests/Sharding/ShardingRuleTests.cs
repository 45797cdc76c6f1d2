using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;
using Xunit;
using ShardingT = ParallelCompiler.IR.Sharding;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>Op sharding rules as einsum-like text, and reading and writing shardings through them.</summary>
public class ShardingRuleTests
{
    private static ShardingRule Rule(string name, TensorType[] operands, Dictionary<string, Attr>? attrs = null)
    {
        var values = operands
            .Select(
                (t, i) => (Value)ModuleOp.Create().AddFunction("f", [($"a{i}", t)], []).Regions[0].Entry.Arguments[0]
            )
            .ToList();
        var op = Builder.Build(name, values, attrs, name == "tensor.constant" ? [operands[0]] : null, null);
        return FactorSharding.RuleOf(op)!;
    }

    private static TensorType T(params long[] shape) => new(DType.F32, shape);

    [Fact]
    public void MatmulContractsAReductionFactor() =>
        Assert.Equal(
            "([b, a], [a, c]) -> ([b, c]) {a=64, b=8, c=256} reduction={a}",
            Rule("tensor.matmul", [T(8, 64), T(64, 256)]).ToString()
        );

    [Fact]
    public void BatchedMatmulBroadcastsItsBatch() =>
        Assert.Equal(
            "([a, c, b], [b, d]) -> ([a, c, d]) {a=4, b=16, c=32, d=8} reduction={b}",
            Rule("tensor.matmul", [T(4, 32, 16), T(16, 8)]).ToString()
        );

    [Fact]
    public void ReshapeSplitsADimensionIntoFactors() =>
        Assert.Equal(
            "([a, b, (c d)]) -> ([a, b, c, d]) {a=8, b=32, c=4, d=16}",
            Rule("tensor.reshape", [T(8, 32, 64)], new() { ["shape"] = Attr.Ints([8, 32, 4, 16]) }).ToString()
        );

    [Fact]
    public void ReshapeOfUnrelatedGroupsNeedsThemWhole() =>
        Assert.Equal(
            "([a, b]) -> ([c, d]) {a=6, b=4, c=4, d=6} replicated={a, b, c, d}",
            Rule("tensor.reshape", [T(6, 4)], new() { ["shape"] = Attr.Ints([4, 6]) }).ToString()
        );

    [Fact]
    public void SoftmaxExchangesOverItsAxisAndBroadcastOperandsHaveNoFactor()
    {
        Assert.Equal(
            "([a, b]) -> ([a, b]) {a=8, b=16} exchanged={b}",
            Rule("tensor.softmax", [T(8, 16)], new() { ["axis"] = Attr.Int(-1) }).ToString()
        );
        Assert.Equal(
            "([a, b], [a]) -> ([]) {a=8, b=16} reduction={a} exchanged={b}",
            Rule("tensor.cross_entropy", [T(8, 16), new TensorType(DType.I32, [8])]).ToString()
        );
        Assert.Equal(
            "([a, b]) -> ([a, b]) {a=8, b=16} replicated={a, b}",
            Rule("tensor.causal_mask", [T(8, 16)]).ToString()
        );
        Assert.Equal("([a, b], [b]) -> ([a, b]) {a=8, b=16}", Rule("tensor.add", [T(8, 16), T(16)]).ToString());
        Assert.Equal("([a, b], [_, b]) -> ([a, b]) {a=8, b=16}", Rule("tensor.add", [T(8, 16), T(1, 16)]).ToString());
    }

    [Fact]
    public void AxesFillAMergedDimensionMajorFactorFirst()
    {
        var mesh = new DeviceMesh(["dp", "tp"], [2, 4]);
        var rule = Rule("tensor.reshape", [T(8, 32, 64)], new() { ["shape"] = Attr.Ints([8, 32, 4, 16]) });
        var read = FactorSharding.Read(
            rule,
            rule.Operands[0],
            new ShardingT([
                ["dp"],
                [],
                ["tp"],
            ]),
            mesh
        );
        Assert.Equal(["dp"], read[0]);
        Assert.Equal(["tp"], read[2]); // tp (4) splits the 4 heads, not the 16 values in a head
        Assert.Empty(read[3]);
        Assert.Equal("shard[dp, _, tp, _]", FactorSharding.Project(rule, rule.Results[0], read, mesh).ToString());
        // An axis that does not divide what is left of the major factor cannot be read through the reshape.
        var odd = FactorSharding.Read(
            rule,
            rule.Operands[0],
            new ShardingT([
                [],
                [],
                ["dp", "tp"],
            ]),
            new DeviceMesh(["dp", "tp"], [8, 2])
        );
        Assert.Empty(odd[2].Skip(1));
    }
}
