using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>The generated host kernels against the reference interpreter.</summary>
public class CpuBackendTests
{
    [Theory]
    [InlineData("mlp.mpl")]
    [InlineData("attention.mpl")]
    [InlineData("classifier.mpl")]
    [InlineData("gpt.mpl")]
    public void EveryKernelOfAnExampleMatchesTheInterpreter(string example)
    {
        var module = KernelCheck.Compile(Repo.Path("examples", example), example == "gpt.mpl" ? ["-D", "L=1"] : []);
        var bad = KernelCheck.Errors(module, intBound: 8).Where(e => !(e.Error <= 1e-5)).ToList();
        Assert.True(bad.Count == 0, string.Join("\n", bad.Select(b => $"{b.Kernel}: {b.Error}")));
    }
}
