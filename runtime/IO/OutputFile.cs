namespace ParallelCompiler.Runtime.IO;

/// <summary>
/// What stands in the way of writing a file the command line was asked to write (<c>-o</c>, <c>--out</c>,
/// <c>--save-params</c>, <c>--trace</c>, <c>--dump-dir</c>), said in the project's words rather than the
/// operating system's, and checked before the work that would produce the file, so nothing is computed for nothing.
/// </summary>
public static class OutputFile
{
    /// <summary>Why <paramref name="path"/> cannot be written (a folder when <paramref name="folder"/>), or null when
    /// nothing visible prevents it.</summary>
    public static string? Problem(string path, bool folder = false)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"'{path}' is not a usable path";
        }
        if (!folder && Directory.Exists(full))
            return $"'{path}' is a folder; give the name of a file to write";
        if (folder && File.Exists(full))
            return $"'{path}' is a file; give the name of a folder to write into";
        string? parent = Path.GetDirectoryName(full);
        if (parent == null)
            return null;
        if (File.Exists(parent))
            return $"'{parent}' is a file, not a folder, so '{path}' cannot be written";
        if (!folder && !Directory.Exists(parent))
            return $"the folder '{parent}' does not exist (create it first)";
        return null;
    }

    /// <summary>The failure <paramref name="e"/> of writing <paramref name="path"/> in the project's words.</summary>
    public static string Describe(string path, Exception e) =>
        Problem(path)
        ?? e switch
        {
            UnauthorizedAccessException => $"no permission to write '{path}'",
            DirectoryNotFoundException => $"a folder on the way to '{path}' does not exist",
            _ => $"cannot write '{path}': {e.Message}",
        };
}
