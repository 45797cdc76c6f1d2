using ParallelCompiler.Runtime.Pipeline;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>Pipeline schedules and their simulated bubble against the closed forms of GPipe, 1F1B and Megatron's
/// interleaving.</summary>
public class ScheduleTests
{
    [Theory]
    [InlineData("gpipe", 2, 4)]
    [InlineData("gpipe", 2, 8)]
    [InlineData("gpipe", 4, 4)]
    [InlineData("gpipe", 4, 8)]
    [InlineData("1f1b", 2, 4)]
    [InlineData("1f1b", 2, 8)]
    [InlineData("1f1b", 4, 4)]
    [InlineData("1f1b", 4, 8)]
    public void BubbleIsPMinusOneOverMPlusPMinusOne(string kind, int p, int m)
    {
        foreach (bool training in new[] { false, true })
        {
            var t = Timeline.Simulate(
                Schedule.Build(kind, p, m, 1, training),
                (_, phase) => phase == Phase.Forward ? 1.0 : 2.0
            );
            double expected = (p - 1.0) / (m + p - 1.0);
            for (int d = 0; d < p; d++)
                Assert.Equal(expected, t.BubbleFraction(d), 3);
        }
    }

    [Theory]
    [InlineData(2, 4, 2)]
    [InlineData(2, 8, 2)]
    [InlineData(4, 4, 2)]
    [InlineData(4, 8, 2)]
    [InlineData(4, 8, 4)]
    public void InterleavingDividesTheBubbleByTheChunks(int p, int m, int v)
    {
        // Each of the v chunks on a device holds 1/v of its layers.
        var t = Timeline.Simulate(
            Schedule.Build("interleaved", p, m, v, training: true),
            (_, phase) => (phase == Phase.Forward ? 1.0 : 2.0) / v
        );
        double expected = (p - 1.0) / (v * m + p - 1.0);
        for (int d = 0; d < p; d++)
            Assert.InRange(t.BubbleFraction(d), expected - 0.02, expected + 0.02);
    }

    [Fact]
    public void OneFOneBHoldsAtMostPActivationsAndGPipeHoldsM()
    {
        int p = 4,
            m = 8;
        int Peak(List<PipelineTask> tasks)
        {
            int held = 0,
                peak = 0;
            foreach (var t in tasks)
            {
                held += t.Phase == Phase.Forward ? 1 : -1;
                peak = Math.Max(peak, held);
            }
            return peak;
        }
        var ofob = Schedule.Build("1f1b", p, m, 1, true);
        var gpipe = Schedule.Build("gpipe", p, m, 1, true);
        for (int s = 0; s < p; s++)
        {
            Assert.Equal(p - s, Peak(ofob[s]));
            Assert.Equal(m, Peak(gpipe[s]));
        }
    }

    [Fact]
    public void InterleavingNeedsMicrobatchesInGroupsOfP() =>
        Assert.Contains(
            "not a multiple",
            Assert.Throws<ArgumentException>(() => Schedule.Build("interleaved", 4, 6, 2, true)).Message
        );
}
