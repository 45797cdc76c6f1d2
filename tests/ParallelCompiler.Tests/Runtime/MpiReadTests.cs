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
