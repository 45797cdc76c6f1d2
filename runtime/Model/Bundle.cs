using System.Security.Cryptography;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Execution;

namespace ParallelCompiler.Runtime.Model;

/// <summary>
/// A compiled program on disk (written by <c>mplc compile -o NAME.mplc</c>): the manifest, the device program and
/// the kernels. Opening it checks that the manifest is the one written (its SHA-256 in <c>manifest.sha256</c>), that
/// it is consistent (<see cref="ManifestCheck"/>), and that every file it lists is present with its recorded
/// SHA-256; loading the program checks the manifest against it. A damaged, edited or mixed-up bundle is refused
/// with the name of the file or the field.
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
        string text = File.ReadAllText(manifestPath);
        string sumPath = Path.Combine(dir, ChecksumFile);
        if (!File.Exists(sumPath))
            throw new RunInputException($"bundle '{dir}': {ChecksumFile} is missing");
        if (!string.Equals(File.ReadAllText(sumPath).Trim(), Sha256(text), StringComparison.Ordinal))
            throw new RunInputException(
                $"bundle '{dir}': manifest.json was edited or damaged after it was written (its checksum differs "
                    + $"from {ChecksumFile}): compile the bundle again"
            );
        ProgramManifest manifest;
        try
        {
            manifest = ProgramManifest.FromJson(text);
        }
        catch (InvalidDataException e)
        {
            throw new RunInputException($"{manifestPath}: {e.Message}");
        }
        Refuse(dir, ManifestCheck.Problems(manifest));
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

    /// <summary>The file beside the manifest that holds its SHA-256.</summary>
    public const string ChecksumFile = "manifest.sha256";

    /// <summary>The lowercase hex SHA-256 of a manifest's text, as <see cref="ChecksumFile"/> holds it.</summary>
    public static string Sha256(string manifestText) =>
        Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(manifestText)));

    /// <summary>The device program, its kernels resolved by <paramref name="kernel"/>, checked against the
    /// manifest.</summary>
    public DeviceProgram Program(Func<string, IKernel> kernel)
    {
        DeviceProgram program;
        try
        {
            program = ProgramFile.Read(File.ReadAllText(Path.Combine(Directory, "program.json")), kernel);
        }
        catch (InvalidDataException e)
        {
            throw new RunInputException($"bundle '{Directory}': program.json: {e.Message}");
        }
        Refuse(Directory, ManifestCheck.Problems(Manifest, program));
        return program;
    }

    private static void Refuse(string dir, List<string> all)
    {
        var problems = all.Distinct().ToList();
        if (problems.Count == 0)
            return;
        string more =
            problems.Count > 1
                ? $" (and {problems.Count - 1} more: {string.Join("; ", problems.Skip(1).Take(4))})"
                : "";
        throw new RunInputException($"bundle '{dir}': manifest: {problems[0]}{more}");
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
