using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Runtime;

/// <summary>
/// Sharded checkpoints (<c>--save-params DIR</c>): one file per process and an index, loaded on another mesh and
/// process count; a missing, damaged or partial one is an error naming the file.
/// </summary>
public sealed class MpiCheckpointTests(MpiJobs jobs) : IClassFixture<MpiJobs>
{
    /// <summary>Saved by 4 processes on dp=2,tp=2 and loaded by 2 on tp=2, a checkpoint gives the parameters the
    /// in-process run saved as one file: one more step from each gives the same parameters bit for bit.</summary>
    [MpiFact]
    public void ACheckpointSavedOnFourProcessesLoadsOnTwoWithAnotherMesh()
    {
        string dp2tp2 = jobs.Bundle("gpt.mpl", "--mesh", "dp=2,tp=2", "-D", "L=2");
        string tp2 = jobs.Bundle("gpt.mpl", "--mesh", "dp=1,tp=2", "-D", "L=2");
        string dir = Path.Combine(jobs.Dir, "ck"),
            file = Path.Combine(jobs.Dir, "ck-local.npz");
        var saved = MpiJobs.Run(4, [dp2tp2, "--steps", "2", "--save-params", dir]);
        Assert.True(saved.Code == 0, saved.Err + saved.Out);
        Assert.Equal(4, Directory.GetFiles(dir, "rank-*.safetensors").Length);
        Assert.True(File.Exists(Path.Combine(dir, "index.json")));
        var local = MplrunInProcess.Run([dp2tp2, "--steps", "2", "--save-params", file]);
        Assert.True(local.Code == 0, local.Err);
        string fromDir = Path.Combine(jobs.Dir, "ck-from-dir.npz"),
            fromFile = Path.Combine(jobs.Dir, "ck-from-file.npz");
        var a = MpiJobs.Run(2, [tp2, "--params", dir, "--steps", "1", "--save-params", fromDir]);
        Assert.True(a.Code == 0, a.Err + a.Out);
        var b = MplrunInProcess.Run([tp2, "--params", file, "--steps", "1", "--save-params", fromFile]);
        Assert.True(b.Code == 0, b.Err);
        var x = ArrayFile.Read(fromDir);
        var y = ArrayFile.Read(fromFile);
        Assert.Equal(y.Keys.Order(), x.Keys.Order());
        foreach (var (key, e) in y)
            Assert.True(e.Array.F!.SequenceEqual(x[key].Array.F!), $"{key} differs");
        // Saving again replaces the checkpoint whole: the old files go once the new index names the new ones.
        var again = MplrunInProcess.Run([dp2tp2, "--steps", "2", "--save-params", dir]);
        Assert.True(again.Code == 0, again.Err);
        Assert.Single(Directory.GetFiles(dir, "rank-*.safetensors"));
    }

    /// <summary>A checkpoint with a file missing, a file cut short or a broken index: exit 1, the file named, no
    /// stack trace.</summary>
    [MpiTheory]
    [InlineData("missing", "missing: the checkpoint in")]
    [InlineData("truncated", "damaged checkpoint file")]
    [InlineData("index", "damaged checkpoint index")]
    public void ADamagedCheckpointIsAnErrorNamingTheFile(string damage, string message)
    {
        string bundle = jobs.Bundle("gpt.mpl", "--mesh", "dp=2,tp=2", "-D", "L=2");
        string dir = Path.Combine(jobs.Dir, $"bad-{damage}");
        var saved = MpiJobs.Run(2, [bundle, "--steps", "2", "--save-params", dir]);
        Assert.True(saved.Code == 0, saved.Err + saved.Out);
        string victim = damage == "index" ? Path.Combine(dir, "index.json") : Directory.GetFiles(dir, "rank-1-*")[0];
        if (damage == "missing")
            File.Delete(victim);
        else
            File.WriteAllBytes(victim, File.ReadAllBytes(victim)[..40]);
        var r = MplrunInProcess.Run([bundle, "--params", dir, "--steps", "1"]);
        Assert.Equal(1, r.Code);
        Assert.Contains($"error: {victim}: ", r.Err);
        Assert.Contains(message, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
    }
}
