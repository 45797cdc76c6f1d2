using System.Security.Cryptography;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// A compiled program on disk (written by <c>mplc compile -o NAME.mplc</c>): the manifest, the device program and
/// the kernels. Opening it checks that every file the manifest lists is present and has its recorded SHA-256, so a
/// damaged or mixed-up bundle is refused with the name of the file.
/// </summary>
public sealed class Bundle
{
    /// <summary>The bundle directory.</summary>
    public string Directory { get; }

    /// <summary>Its manifest.</summary>
    public ProgramManifest Manifest { get; }

    private Bundle(string dir, ProgramManifest manifest)
    {
        Directory = dir;
        Manifest = manifest;
    }

    /// <summary>Opens and checks the bundle at <paramref name="dir"/>.</summary>
    public static Bundle Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
            throw new RunInputException(
                $"'{dir}' is not a bundle: no such "
                    + $"directory (make one with 'mplc compile MODEL.mpl -o {Path.GetFileName(dir.TrimEnd('/'))}')"
            );
        string manifestPath = Path.Combine(dir, "manifest.json");
        if (!File.Exists(manifestPath))
            throw new RunInputException($"'{dir}' is not a bundle: it has no manifest.json");
        ProgramManifest manifest;
        try
        {
            manifest = ProgramManifest.FromJson(File.ReadAllText(manifestPath));
        }
        catch (InvalidDataException e)
        {
            throw new RunInputException($"{manifestPath}: {e.Message}");
        }
        foreach (var (file, hash) in manifest.Files)
        {
            string path = Path.Combine(dir, file);
            if (!File.Exists(path))
                throw new RunInputException($"bundle '{dir}': {file} is missing");
            using var f = File.OpenRead(path);
            if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(f)), hash, StringComparison.Ordinal))
                throw new RunInputException(
                    $"bundle '{dir}': {file} is damaged or from another build (its checksum "
                        + $"differs from the manifest's)"
                );
        }
        return new Bundle(dir, manifest);
    }

    /// <summary>The device program, its kernels resolved by <paramref name="kernel"/>.</summary>
    public DeviceProgram Program(Func<string, IKernel> kernel)
    {
        try
        {
            return ProgramFile.Read(File.ReadAllText(Path.Combine(Directory, "program.json")), kernel);
        }
        catch (InvalidDataException e)
        {
            throw new RunInputException($"bundle '{Directory}': program.json: {e.Message}");
        }
    }

    /// <summary>The path of a file of the bundle.</summary>
    public string PathOf(string name) => Path.Combine(Directory, name);

    /// <summary>
    /// The path of the host kernel library <paramref name="name"/> (<c>libkernels.so</c>, <c>libkernels-grid.so</c>),
    /// after checking that this machine's CPU runs the code it was compiled for (a <see cref="RunInputException"/>
    /// naming what it lacks, rather than an illegal instruction later).
    /// </summary>
    public string HostLibrary(string name)
    {
        Manifest.HostCpu?.CheckHere($"the bundle's host kernels ({name})");
        return PathOf(name);
    }
}
