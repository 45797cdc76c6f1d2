using System.Globalization;

namespace ParallelCompiler.Analysis;

/// <summary>Quantities for people, as warnings and reports print them.</summary>
public static class Units
{
    /// <summary>A byte count: 512 B, 64.0 KiB, 3.2 GiB.</summary>
    public static string Bytes(double b)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int u = 0;
        while (b >= 1024 && u < units.Length - 1)
        {
            b /= 1024;
            u++;
        }
        return u == 0 ? $"{b:0} B" : string.Format(CultureInfo.InvariantCulture, "{0:0.0} {1}", b, units[u]);
    }
}
