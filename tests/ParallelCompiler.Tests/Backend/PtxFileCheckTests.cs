using System.Diagnostics;
using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Backend;

/// <summary>
/// The PTX of every kernel of every example, checked with LLVM's FileCheck: a visible kernel entry with one
/// 64-bit parameter per buffer, loads from and stores to global memory, and for matmuls shared-memory tiles
/// between barriers (and no shared memory elsewhere).
/// </summary>
public class PtxFileCheckTests
{
    [Theory]
    [InlineData("mlp.mpl")]
    [InlineData("attention.mpl")]
    [InlineData("classifier.mpl")]
    [InlineData("gpt.mpl")]
    public async Task EveryKernelsPtxHasItsEntryGlobalAccessesAndTiles(string example)
    {
        var module = KernelCheck.Compile(Repo.Path("examples", example), example == "gpt.mpl" ? ["-D", "L=1"] : []);
        string ptx = KernelCompiler.Ptx(module, "sm_80");
        var checks = new List<string> { "CHECK: .target sm_80" };
        foreach (var f in module.Functions().Where(f => f.GetAttr("kernel") != null))
        {
            string name = f.StringAttr("sym_name");
            int buffers = f.Regions[0].Entry.Arguments.Count + 1;
            checks.Add($"CHECK-LABEL: .visible .entry {name}(");
            for (int i = 0; i < buffers; i++)
                checks.Add($"CHECK-NEXT: .param .u64 " + $"{name}_param_{i}{(i < buffers - 1 ? "," : "")}");
            if (f.StringAttr("kernel") == "matmul")
            {
                // One tile of 1,024 elements each (partial tiles) or two of 2,048 (whole tiles, double-buffered).
                checks.Add($"CHECK: .shared .align 16 .b8 {name}_a[{{{{4096|16384}}}}];");
                checks.Add($"CHECK: .shared .align 16 .b8 {name}_b[{{{{4096|16384}}}}];");
                // Whole tiles move 16-byte vectors.
                checks.Add("CHECK: ld.global.{{(v4.)?}}f32");
                checks.Add("CHECK: bar.sync 0;");
                checks.Add("CHECK: ld.shared.{{(v4.)?}}f32");
            }
            else
            {
                checks.Add("CHECK-NOT: .shared");
                // 32-bit elements: floats load as .f32, integers (ids, labels) as .s32 or .u32.
                if (buffers > 1)
                    checks.Add("CHECK-DAG: ld.global.{{[fsu]}}32");
            }
            // A splat may store its float's bits as .u32; unrolled loops may store before their last load.
            checks.Add("CHECK-DAG: st.global.{{(v4.)?}}{{[fsub]}}32");
            // The loop's blocks may come after the return.
            checks.Add("CHECK-DAG: ret;");
        }
        string dir = Directory.CreateTempSubdirectory("mplc-ptx").FullName;
        try
        {
            string checkFile = Path.Combine(dir, "check.txt");
            File.WriteAllLines(checkFile, checks);
            var psi = new ProcessStartInfo("FileCheck-14")
            {
                RedirectStandardInput = true,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            psi.ArgumentList.Add("--dump-input=fail");
            psi.ArgumentList.Add(checkFile);
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            p.StandardInput.Write(ptx);
            p.StandardInput.Close();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 0, $"{example}: FileCheck failed\n{await err}");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
        Assert.True(checks.Count(c => c.StartsWith("CHECK-LABEL", StringComparison.Ordinal)) >= 3);
    }
}
