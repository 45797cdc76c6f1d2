using ParallelCompiler.Runtime.Pipeline;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>Pipeline schedules and their simulated bubble against the closed forms of GPipe, 1F1B, Megatron's
/// interleaving and zero-bubble ZB-H1.</summary>
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

    /// <summary>
    /// ZB-H1 (Qi et al. 2023): the step takes m(F + B + W) + (p - 1)(F + B - W), the paper's bubble, when W is no
    /// longer than F and B; otherwise the idle is (p - 1) times the longest of F, B and F + B - W. With F = B = W it
    /// is a third of 1F1B's (whose backward is B + W).
    /// </summary>
    [Theory]
    [InlineData(2, 2, 1.0, 1.0, 1.0)]
    [InlineData(2, 4, 1.0, 1.0, 1.0)]
    [InlineData(4, 4, 1.0, 1.0, 1.0)]
    [InlineData(4, 8, 1.0, 1.0, 1.0)]
    [InlineData(8, 16, 1.0, 1.0, 1.0)]
    [InlineData(4, 8, 1.0, 1.2, 0.8)]
    [InlineData(4, 12, 1.0, 1.5, 1.0)]
    [InlineData(8, 8, 1.0, 1.0, 0.5)]
    [InlineData(4, 8, 1.0, 0.8, 1.2)]
    [InlineData(4, 8, 1.0, 2.0, 2.0)]
    public void ZeroBubbleH1MatchesThePapersBubble(int p, int m, double f, double b, double w)
    {
        var t = Timeline.Simulate(
            Schedule.Build("zb-h1", p, m, 1, training: true),
            (_, phase) =>
                phase switch
                {
                    Phase.Forward => f,
                    Phase.Backward => b,
                    _ => w,
                }
        );
        double idle = (p - 1) * Math.Max(Math.Max(f, b), f + b - w);
        Assert.Equal(m * (f + b + w) + idle, t.Makespan, 6);
        if (f == b && b == w)
        {
            var ofob = Timeline.Simulate(
                Schedule.Build("1f1b", p, m, 1, training: true),
                (_, phase) => phase == Phase.Forward ? f : b + w
            );
            Assert.Equal(3 * (t.Makespan - m * (f + b + w)), ofob.Makespan - m * (f + b + w), 6);
            for (int d = 0; d < p; d++)
                Assert.Equal((p - 1.0) / (3 * m + p - 1.0), t.BubbleFraction(d), 6);
        }
    }

    /// <summary>
    /// ZB-H1 runs every F, B and W once, each W after its B, and holds at most p microbatches between F and W on
    /// every device: 1F1B's most (on its first device). Forward only, it is GPipe.
    /// </summary>
    [Theory]
    [InlineData(2, 4)]
    [InlineData(4, 8)]
    [InlineData(4, 3)]
    [InlineData(8, 16)]
    public void ZeroBubbleH1HoldsAtMostPMicrobatches(int p, int m)
    {
        var zb = Schedule.Build("zb-h1", p, m, 1, training: true);
        for (int s = 0; s < p; s++)
        {
            int peak = HeldAtMost(zb[s], m);
            Assert.Equal(Math.Min(p, m), peak);
        }
        Assert.Equal(Schedule.Build("gpipe", p, m, 1, false), Schedule.Build("zb-h1", p, m, 1, false));
    }

    /// <summary>
    /// ZB-H2 (Qi et al. 2023: about twice 1F1B's activation memory for a bubble of zero at equal F, B and W, counted
    /// without the pipeline's fill and drain, which the paper overlaps with the neighbouring steps): from m = 2p - 1
    /// microbatches on, one step takes m(F + B + W) + (p - 1)F, each device idle only for the fill and drain, whatever
    /// F, B and W cost; no longer than ZB-H1's step, and shorter wherever B or F + B - W exceeds F.
    /// </summary>
    [Theory]
    [InlineData(2, 3, 1.0, 1.0, 1.0)]
    [InlineData(2, 8, 1.0, 1.0, 1.0)]
    [InlineData(4, 7, 1.0, 1.0, 1.0)]
    [InlineData(4, 12, 1.0, 1.0, 1.0)]
    [InlineData(8, 16, 1.0, 1.0, 1.0)]
    [InlineData(4, 8, 1.0, 1.2, 0.8)]
    [InlineData(4, 12, 1.0, 1.5, 1.0)]
    [InlineData(8, 16, 1.0, 1.0, 0.5)]
    [InlineData(4, 8, 1.0, 0.8, 1.2)]
    [InlineData(4, 8, 1.0, 2.0, 2.0)]
    [InlineData(3, 5, 2.0, 1.0, 1.0)]
    public void ZeroBubbleH2IdlesOnlyTheFillAndDrain(int p, int m, double f, double b, double w)
    {
        double Cost(Phase phase) =>
            phase switch
            {
                Phase.Forward => f,
                Phase.Backward => b,
                _ => w,
            };
        var t = Timeline.Simulate(Schedule.Build("zb-h2", p, m, 1, training: true), (_, phase) => Cost(phase));
        Assert.Equal(m * (f + b + w) + (p - 1) * f, t.Makespan, 6);
        for (int d = 0; d < p; d++)
            Assert.Equal((p - 1) * f, t.Makespan - t.Busy(d), 6);
        var h1 = Timeline.Simulate(Schedule.Build("zb-h1", p, m, 1, training: true), (_, phase) => Cost(phase));
        Assert.True(t.Makespan <= h1.Makespan + 1e-9, $"zb-h2 {t.Makespan}, zb-h1 {h1.Makespan}");
        if (b > f || f + b - w > f)
            Assert.True(t.Makespan < h1.Makespan - 1e-9);
    }

    /// <summary>
    /// ZB-H2 runs every F, B and W once, each W after its B, and holds at most 2p - 1 microbatches between F and W on
    /// every device (at most m; 1F1B and ZB-H1 hold p); with fewer microbatches its step is still no longer than
    /// ZB-H1's. Forward only, it is GPipe.
    /// </summary>
    [Theory]
    [InlineData(2, 4)]
    [InlineData(4, 8)]
    [InlineData(4, 3)]
    [InlineData(4, 5)]
    [InlineData(8, 16)]
    public void ZeroBubbleH2HoldsAtMostTwicePMinusOneMicrobatches(int p, int m)
    {
        var zb = Schedule.Build("zb-h2", p, m, 1, training: true);
        Assert.Equal(p, zb.Length);
        for (int s = 0; s < p; s++)
        {
            int peak = HeldAtMost(zb[s], m);
            Assert.InRange(peak, 1, Math.Min(2 * p - 1, m));
            if (s == 0)
                Assert.Equal(Math.Min(2 * p - 1, m), peak);
        }
        double unit(int _, Phase __) => 1;
        Assert.True(
            Timeline.Simulate(zb, unit).Makespan
                <= Timeline.Simulate(Schedule.Build("zb-h1", p, m, 1, training: true), unit).Makespan
        );
        Assert.Equal(Schedule.Build("gpipe", p, m, 1, false), Schedule.Build("zb-h2", p, m, 1, false));
    }

    /// <summary>Asserts that a zero-bubble device order runs every F, B and W of its <paramref name="m"/> microbatches
    /// once, each W after its B; the most microbatches it holds between F and W.</summary>
    private static int HeldAtMost(List<PipelineTask> tasks, int m)
    {
        Assert.Equal(3 * m, tasks.Count);
        Assert.Equal(3 * m, tasks.Distinct().Count());
        for (int j = 0; j < m; j++)
            Assert.True(
                tasks.IndexOf(new PipelineTask(j, 0, Phase.Backward))
                    < tasks.IndexOf(new PipelineTask(j, 0, Phase.Weight))
            );
        int held = 0,
            peak = 0;
        foreach (var t in tasks)
        {
            held += t.Phase switch
            {
                Phase.Forward => 1,
                Phase.Weight => -1,
                _ => 0,
            };
            peak = Math.Max(peak, held);
        }
        return peak;
    }

    [Fact]
    public void WeightTaskLabelsRoundTrip()
    {
        var w = new PipelineTask(3, 1, Phase.Weight);
        Assert.Equal("W3.1", w.Label(2));
        Assert.Equal(w, PipelineTask.Parse("W3.1"));
        Assert.Equal(new PipelineTask(3, 0, Phase.Weight), PipelineTask.Parse("W3"));
        Assert.Null(PipelineTask.Parse("X3"));
    }
}
