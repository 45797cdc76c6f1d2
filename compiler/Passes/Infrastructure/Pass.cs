using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using ParallelCompiler.IR;

namespace ParallelCompiler.Passes.Infrastructure;

/// <summary>
/// A transformation or analysis over a module. A pass keeps no global state: everything it needs is in the
/// module and in its typed options, so any pass can run alone on textual IR (<c>mplc opt</c>).
/// </summary>
public interface IPass
{
    /// <summary>The command-line name, e.g. <c>canonicalize</c>.</summary>
    string Name { get; }

    /// <summary>One line on what the pass does.</summary>
    string Description { get; }

    /// <summary>Runs on a module; returns true when it changed the IR.</summary>
    bool Run(Operation module);
}

/// <summary>Marks a settable property of a pass as an option, written <c>name{option=value}</c> in a
/// pipeline.</summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class PassOptionAttribute(string name, string description) : Attribute
{
    /// <summary>The option's name in pipeline strings.</summary>
    public string Name { get; } = name;

    /// <summary>One line on what it does.</summary>
    public string Description { get; } = description;
}

/// <summary>What the registry knows about a pass without running it.</summary>
public sealed record PassInfo(
    string Name,
    string Description,
    Type Type,
    IReadOnlyList<(string Name, string Description, PropertyInfo Property)> Options
);

/// <summary>Registration of passes as services, by name.</summary>
public static class PassServiceExtensions
{
    /// <summary>Registers <typeparamref name="T"/> as a transient pass under its own name.</summary>
    public static IServiceCollection AddPass<T>(this IServiceCollection services)
        where T : class, IPass, new()
    {
        var probe = new T();
        var options = typeof(T)
            .GetProperties()
            .Select(p => (p, a: p.GetCustomAttribute<PassOptionAttribute>()))
            .Where(x => x.a != null)
            .Select(x => (x.a!.Name, x.a.Description, x.p))
            .ToList();
        services.AddTransient<T>();
        services.AddSingleton(new PassInfo(probe.Name, probe.Description, typeof(T), options));
        return services;
    }
}

/// <summary>Finds passes by name and parses pipeline strings such as
/// <c>shape-inference,canonicalize{max-iterations=4}</c>.</summary>
public sealed class PassRegistry(IEnumerable<PassInfo> infos, IServiceProvider services)
{
    private readonly Dictionary<string, PassInfo> _byName = infos.ToDictionary(i => i.Name, StringComparer.Ordinal);

    /// <summary>All registered passes, sorted by name.</summary>
    public IEnumerable<PassInfo> All => _byName.Values.OrderBy(i => i.Name, StringComparer.Ordinal);

    /// <summary>Creates a configured pass; throws <see cref="PipelineException"/> on an unknown name or
    /// option.</summary>
    public IPass Create(string name, IReadOnlyDictionary<string, string>? options = null)
    {
        if (!_byName.TryGetValue(name, out var info))
            throw new PipelineException(
                $"unknown pass '{name}' (passes: " + $"{string.Join(", ", _byName.Keys.Order(StringComparer.Ordinal))})"
            );
        var pass = (IPass)services.GetRequiredService(info.Type);
        foreach (var (key, value) in options ?? new Dictionary<string, string>())
        {
            var opt = info.Options.FirstOrDefault(o => o.Name == key);
            if (opt.Property == null)
                throw new PipelineException(
                    $"pass '{name}' has no option '{key}'"
                        + (
                            info.Options.Count == 0
                                ? " (it takes none)"
                                : $" (options: {string.Join(", ", info.Options.Select(o => o.Name))})"
                        )
                );
            opt.Property.SetValue(pass, ConvertOption(name, key, value, opt.Property.PropertyType));
        }
        return pass;
    }

    private static object ConvertOption(string pass, string key, string value, Type t)
    {
        try
        {
            if (t == typeof(int))
                return int.Parse(value, CultureInfo.InvariantCulture);
            if (t == typeof(long))
                return long.Parse(value, CultureInfo.InvariantCulture);
            if (t == typeof(double))
                return double.Parse(value, CultureInfo.InvariantCulture);
            if (t == typeof(bool))
                return bool.Parse(value);
            if (t == typeof(string))
                return value;
        }
        catch (FormatException) { }
        catch (OverflowException) { }
        throw new PipelineException(
            $"pass '{pass}': option '{key}' expects "
                + (
                    t == typeof(bool) ? "true or false"
                    : t == typeof(string) ? "a string"
                    : "a number"
                )
                + $", got '{value}'"
        );
    }

    /// <summary>Parses a comma-separated pipeline (<see cref="PipelineBuilder.Parse"/>) and creates its
    /// passes.</summary>
    public List<IPass> Parse(string pipeline) => PipelineBuilder.Parse(pipeline).Build(this);
}

/// <summary>A malformed pipeline string or pass option.</summary>
public sealed class PipelineException(string message) : Exception(message);
