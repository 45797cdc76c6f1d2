using System.Text.RegularExpressions;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>
/// Every process of an MPI job reads only its devices' blocks of the input and parameter files (a memory-mapped
/// <c>.npy</c>, offset reads of <c>.safetensors</c> and of a sharded checkpoint's files): <c>--io-stats</c> makes each
/// process say how many bytes of array data it read, and the job's results equal the in-process run's, which reads
/// every byte.
/// </summary>
public sealed partial class MpiReadTests(MpiJobs jobs) : IClassFixture<MpiJobs>
{
    /// <summary>examples/mlp.mpl on dp=2,tp=2: x is split over dp, w1, b1 and w2 over tp. On 4 processes each reads
    /// half of x and half of every parameter; on 2, each runs a dp row (both tp devices): half of x, all of the
    /// parameters.</summary>
    [MpiTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void EachProcessReadsItsBlocksOfNpyInputsAndSafetensorsParams(int np)
    {
        string bundle = jobs.Bundle("mlp.mpl");
        string dir = Path.Combine(jobs.Dir, $"mlp-read-{np}");
        Directory.CreateDirectory(dir);
        var random = new Random(7);
        NDArray Random(params long[] shape) =>
            NDArray.FromFloats(
                shape,
                [.. Enumerable.Range(0, (int)NDArray.ShapeSize(shape)).Select(_ => (float)random.NextDouble() - 0.5f)]
            );
        string x = Path.Combine(dir, "x.npy"),
            p = Path.Combine(dir, "p.safetensors");
        ArrayFile.Write(x, new Dictionary<string, NDArray> { ["x"] = Random(8, 64) });
        ArrayFile.Write(
            p,
            new Dictionary<string, NDArray>
            {
                ["mlp.w1"] = Random(64, 256),
                ["mlp.b1"] = Random(256),
                ["mlp.w2"] = Random(256, 64),
            }
        );
        long xBytes = 8 * 64 * 4,
            pBytes = (64 * 256 + 256 + 256 * 64) * 4;
        string[] Args(string who) =>
            [bundle, "--inputs", x, "--params", p, "--io-stats", "--out", Path.Combine(dir, $"{who}.npz")];
        var local = MplrunInProcess.Run(Args("local"));
        Assert.True(local.Code == 0, local.Err);
        Assert.Equal([(0, xBytes + pBytes, xBytes + pBytes)], Reads(local.Err, 1));
        var job = MpiJobs.Run(np, Args("mpi"));
        Assert.True(job.Code == 0, job.Err + job.Out);
        long share = xBytes / 2 + (np == 4 ? pBytes / 2 : pBytes);
        Assert.Equal(Enumerable.Range(0, np).Select(r => (r, share, xBytes + pBytes)), Reads(job.Err, np));
        MpiTests.SameArrays(Path.Combine(dir, "local.npz"), Path.Combine(dir, "mpi.npz"));
    }

    /// <summary>A sharded checkpoint of examples/gpt.mpl saved by 4 processes, loaded by a 1F1B pipeline on 2 and 4:
    /// each process reads its stage's blocks of the parameters and optimizer state (a little more than its share:
    /// blocks replicated over tp are read by each tp device's process), every byte is read by some process, and one
    /// step trains the parameters the in-process run does, bit for bit.</summary>
    [MpiTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void EachProcessReadsItsBlocksOfAShardedCheckpoint(int np)
    {
        string saving = jobs.Bundle("gpt.mpl", "--mesh", "dp=2,tp=2", "-D", "L=2");
        string bundle = jobs.Bundle("gpt.mpl", "--mesh", "pp=2,dp=1,tp=2", "-D", "L=2");
        string ck = Path.Combine(jobs.Dir, $"gpt-read-{np}");
        var saved = MpiJobs.Run(4, [saving, "--steps", "2", "--save-params", ck]);
        Assert.True(saved.Code == 0, saved.Err + saved.Out);
        string[] Args(string who) =>
            [bundle, "--params", ck, "--steps", "1", "--io-stats", "--save-params", $"{ck}-{who}.npz"];
        var local = MplrunInProcess.Run(Args("local"));
        Assert.True(local.Code == 0, local.Err);
        var (_, all, held) = Assert.Single(Reads(local.Err, 1));
        Assert.Equal(held, all);
        var job = MpiJobs.Run(np, Args("mpi"));
        Assert.True(job.Code == 0, job.Err + job.Out);
        var reads = Reads(job.Err, np);
        foreach (var (rank, read, h) in reads)
        {
            Assert.Equal(held, h);
            Assert.True(read < held * 3 / (2 * np), $"process {rank} read {read} of {held} bytes");
        }
        Assert.True(reads.Sum(r => r.Read) >= held, string.Join("\n", reads));
        MpiTests.SameArrays($"{ck}-local.npz", $"{ck}-mpi.npz");
    }

    /// <summary>examples/mlp.mpl on dp=2,tp=2 with random inputs and initialised parameters: each process allocates
    /// only its devices' blocks (made from the same streams as the whole arrays), on 4 processes half of x and half of
    /// every parameter, on 2 half of x and all of the parameters, never the global arrays the in-process run holds;
    /// the result comes to rank 0 alone, which prints it once, and equals the in-process one bit for bit.</summary>
    [MpiTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void EachProcessHoldsOnlyItsBlocksAndRankZeroTheResult(int np)
    {
        string bundle = jobs.Bundle("mlp.mpl", "--mesh", "dp=2,tp=2");
        string dir = Path.Combine(jobs.Dir, $"mlp-hold-{np}");
        Directory.CreateDirectory(dir);
        string[] Args(string who) => [bundle, "--io-stats", "--out", Path.Combine(dir, $"{who}.npz")];
        long xBytes = 8 * 64 * 4,
            pBytes = (64 * 256 + 256 + 256 * 64) * 4;
        var local = MplrunInProcess.Run(Args("local"));
        Assert.True(local.Code == 0, local.Err);
        Assert.Equal([(0, xBytes + pBytes)], Holds(local.Err, 1));
        var job = MpiJobs.Run(np, Args("mpi"));
        Assert.True(job.Code == 0, job.Err + job.Out);
        long share = xBytes / 2 + (np == 4 ? pBytes / 2 : pBytes);
        Assert.Equal(Enumerable.Range(0, np).Select(r => (r, share)), Holds(job.Err, np));
        Assert.Single(Regex.Matches(job.Out, "^out: f32\\[8, 64\\]", RegexOptions.Multiline));
        MpiTests.SameArrays(Path.Combine(dir, "local.npz"), Path.Combine(dir, "mpi.npz"));
    }

    /// <summary>Two training steps of examples/gpt.mpl in a 1F1B pipeline over pp=2,tp=2 on 4 processes: each holds
    /// only its stage's blocks of the parameters and optimizer state, under half of what the in-process run holds; the
    /// step updates replace the blocks; the losses and the parameters saved as one file (gathered on rank 0) and as a
    /// sharded checkpoint (each process writing blocks it holds) equal the in-process run's bit for bit.</summary>
    [MpiFact]
    public void APipelineStageHoldsOnlyItsBlocksAndSavesThem()
    {
        string bundle = jobs.Bundle("gpt.mpl", "--mesh", "pp=2,dp=1,tp=2", "-D", "L=2");
        string dir = Path.Combine(jobs.Dir, "gpt-hold");
        Directory.CreateDirectory(dir);
        string[] Args(string saved) =>
            [bundle, "--steps", "2", "--io-stats", "--save-params", Path.Combine(dir, saved)];
        var local = MplrunInProcess.Run(Args("local.npz"));
        Assert.True(local.Code == 0, local.Err);
        var (_, whole) = Assert.Single(Holds(local.Err, 1));
        var job = MpiJobs.Run(4, Args("mpi.npz"));
        Assert.True(job.Code == 0, job.Err + job.Out);
        foreach (var (rank, bytes) in Holds(job.Err, 4))
            Assert.True(bytes > 0 && bytes < whole / 2, $"process {rank} holds {bytes} of {whole} bytes");
        Assert.Contains(local.Out.Split('\n')[0].Trim(), job.Out);
        MpiTests.SameArrays(Path.Combine(dir, "local.npz"), Path.Combine(dir, "mpi.npz"));
        var sharded = MpiJobs.Run(4, Args("ck"));
        Assert.True(sharded.Code == 0, sharded.Err + sharded.Out);
        var expected = ArrayFile.Read(Path.Combine(dir, "local.npz"));
        var loaded = ParallelCompiler.Runtime.Model.ShardedCheckpoint.Read(
            Path.Combine(dir, "ck"),
            ParallelCompiler.Runtime.Model.Bundle.Open(bundle).Manifest
        );
        Assert.Equal(expected.Keys.Order(), loaded.Keys.Order());
        foreach (var (key, a) in expected)
            Assert.True(
                a.Array.F != null
                    ? a.Array.F.AsSpan().SequenceEqual(loaded[key].F)
                    : a.Array.I!.AsSpan().SequenceEqual(loaded[key].I),
                $"parameter {key} of the sharded checkpoint differs"
            );
    }

    // Each process's "holds N bytes" line, by rank.
    private static List<(int Rank, long Bytes)> Holds(string err, int np)
    {
        var lines = HoldLine()
            .Matches(err)
            .Select(m => (Rank: m.Groups[1].Success ? int.Parse(m.Groups[1].Value) : 0, long.Parse(m.Groups[2].Value)))
            .OrderBy(l => l.Rank)
            .ToList();
        Assert.True(lines.Count == np, err);
        return lines;
    }

    [GeneratedRegex(@"note: (?:process (\d+) of \d+|the run) holds (\d+) bytes of inputs and parameters")]
    private static partial Regex HoldLine();

    // Each process's "read N of the M bytes" line, by rank.
    private static List<(int Rank, long Read, long Held)> Reads(string err, int np)
    {
        var lines = ReadLine()
            .Matches(err)
            .Select(m =>
                (
                    Rank: m.Groups[1].Success ? int.Parse(m.Groups[1].Value) : 0,
                    Read: long.Parse(m.Groups[2].Value),
                    Held: long.Parse(m.Groups[3].Value)
                )
            )
            .OrderBy(l => l.Rank)
            .ToList();
        Assert.True(lines.Count == np, err);
        return lines;
    }

    [GeneratedRegex(
        @"note: (?:process (\d+) of \d+|the run) read (\d+) of the (\d+) bytes of array data in the input and parameter"
    )]
    private static partial Regex ReadLine();
}
