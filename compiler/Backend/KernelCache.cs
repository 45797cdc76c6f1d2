using System.Security.Cryptography;
using System.Text;
using ParallelCompiler.Backend.Llvm.Native;
using ParallelCompiler.IR;

namespace ParallelCompiler.Backend;

/// <summary>Where compiled host kernel libraries are kept between runs, and the key that names one.</summary>
public static class KernelCache
{
    /// <summary>The cache directory (created), or null when caching is off or no directory can be made.</summary>
    public static string? Directory()
    {
        string? dir = Environment.GetEnvironmentVariable("MPLC_CACHE_DIR");
        if (dir == "off")
            return null;
        if (string.IsNullOrEmpty(dir))
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(xdg) && string.IsNullOrEmpty(home))
                return null;
            dir = Path.Combine(string.IsNullOrEmpty(xdg) ? Path.Combine(home, ".cache") : xdg, "mplc", "kernels");
        }
        try
        {
            System.IO.Directory.CreateDirectory(dir);
            return dir;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Keeps the <paramref name="keep"/> most recently written libraries of the cache.</summary>
    public static void Prune(string dir, int keep = 256)
    {
        try
        {
            foreach (
                var f in new DirectoryInfo(dir).GetFiles("*.so").OrderByDescending(f => f.LastWriteTimeUtc).Skip(keep)
            )
                f.Delete();
        }
        catch (IOException) { } // another run pruned it first
    }

    /// <summary>
    /// The SHA-256 of everything the library depends on: the kernel functions' text, the loaded LLVM's version, the
    /// host CPU and its features, and this build of the compiler (its module version id).
    /// </summary>
    public static string Key(Operation module)
    {
        LLVM.EnsureLoaded();
        var sb = new StringBuilder();
        foreach (var f in module.Functions().Where(f => f.GetAttr("kernel") != null))
            sb.Append(Printer.Print(f));
        sb.Append('\0')
            .Append(LLVM.LoadedVersion)
            .Append('\0')
            .Append(LLVM.TakeMessage(LLVM.GetHostCPUName()))
            .Append('\0')
            .Append(LLVM.TakeMessage(LLVM.GetHostCPUFeatures()))
            .Append('\0')
            .Append(typeof(KernelCache).Assembly.ManifestModule.ModuleVersionId);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }
}
