using System.Globalization;

namespace ParallelCompiler.Passes.Infrastructure;

/// <summary>
/// A pass pipeline as data: an ordered list of passes by name, each with its options. The driver adds, removes
/// and configures passes here, with typed option values, and never edits pipeline text; the text form
/// (<c>shape-inference,canonicalize{max-iterations=4}</c>) is what <see cref="Parse"/> reads and
/// <see cref="ToString"/> writes, so any pipeline can be printed and run again with <c>--pass-pipeline</c>.
/// </summary>
public sealed class PipelineBuilder
{
    /// <summary>One pass of the pipeline and its options (as their text forms, checked when the pass is
    /// created).</summary>
    public sealed record Step(string Pass, IReadOnlyDictionary<string, string> Options)
    {
        /// <inheritdoc/>
        public override string ToString() =>
            Options.Count == 0 ? Pass : $"{Pass}{{{string.Join(",", Options.Select(o => $"{o.Key}={o.Value}"))}}}";
    }

    private readonly List<Step> _steps = new();

    /// <summary>The passes in order.</summary>
    public IReadOnlyList<Step> Steps => _steps;

    /// <summary>An empty pipeline.</summary>
    public PipelineBuilder() { }

    /// <summary>A pipeline of the given passes, without options.</summary>
    public PipelineBuilder(IEnumerable<string> passes)
    {
        foreach (var p in passes)
            Add(p);
    }

    /// <summary>A copy that can be edited without changing this one.</summary>
    public PipelineBuilder Clone()
    {
        var c = new PipelineBuilder();
        c._steps.AddRange(_steps);
        return c;
    }

    /// <summary>True when the pipeline runs <paramref name="pass"/>.</summary>
    public bool Contains(string pass) => _steps.Any(s => s.Pass == pass);

    /// <summary>Appends <paramref name="pass"/>.</summary>
    public PipelineBuilder Add(string pass)
    {
        if (pass.Length == 0 || pass.Any(c => c is ',' or '{' or '}' or '=' || char.IsWhiteSpace(c)))
            throw new PipelineException($"'{pass}' is not a pass name");
        _steps.Add(new Step(pass, new SortedDictionary<string, string>(StringComparer.Ordinal)));
        return this;
    }

    /// <summary>Removes every run of <paramref name="pass"/>.</summary>
    public PipelineBuilder Remove(string pass)
    {
        _steps.RemoveAll(s => s.Pass == pass);
        return this;
    }

    /// <summary>Sets option <paramref name="option"/> of every run of <paramref name="pass"/>; the pass must be in the
    /// pipeline.</summary>
    public PipelineBuilder Set(string pass, string option, bool value) =>
        SetText(pass, option, value ? "true" : "false");

    /// <inheritdoc cref="Set(string, string, bool)"/>
    public PipelineBuilder Set(string pass, string option, long value) =>
        SetText(pass, option, value.ToString(CultureInfo.InvariantCulture));

    /// <inheritdoc cref="Set(string, string, bool)"/>
    public PipelineBuilder Set(string pass, string option, double value) =>
        SetText(pass, option, value.ToString("R", CultureInfo.InvariantCulture));

    /// <inheritdoc cref="Set(string, string, bool)"/>
    public PipelineBuilder Set(string pass, string option, string value)
    {
        if (value.Any(c => c is ',' or '{' or '}'))
            throw new PipelineException(
                $"option '{option}' of '{pass}': " + $"'{value}' cannot be written in a pipeline"
            );
        return SetText(pass, option, value);
    }

    private PipelineBuilder SetText(string pass, string option, string value)
    {
        if (!Contains(pass))
            throw new PipelineException(
                $"the pipeline does not run '{pass}', so its option " + $"'{option}' cannot be set"
            );
        for (int i = 0; i < _steps.Count; i++)
            if (_steps[i].Pass == pass)
                _steps[i] = _steps[i] with
                {
                    Options = new SortedDictionary<string, string>(_steps[i].Options.ToDictionary())
                    {
                        [option] = value,
                    },
                };
        return this;
    }

    /// <summary>The passes, created and configured by <paramref name="registry"/> (unknown names and options are
    /// errors).</summary>
    public List<IPass> Build(PassRegistry registry) => _steps.Select(s => registry.Create(s.Pass, s.Options)).ToList();

    /// <summary>The text form.</summary>
    public override string ToString() => string.Join(",", _steps);

    /// <summary>Reads the text form: passes separated by commas, options in braces after a name.</summary>
    public static PipelineBuilder Parse(string pipeline)
    {
        var result = new PipelineBuilder();
        int i = 0;
        string s = pipeline.Trim();
        if (s.StartsWith("builtin.module(") && s.EndsWith(')'))
            s = s["builtin.module(".Length..^1];
        while (i < s.Length)
        {
            int start = i;
            while (i < s.Length && s[i] != ',' && s[i] != '{')
                i++;
            string name = s[start..i].Trim();
            if (name.Length == 0)
                throw new PipelineException($"empty pass name at position {start + 1} of '{pipeline}'");
            result.Add(name);
            if (i < s.Length && s[i] == '{')
            {
                int close = s.IndexOf('}', i);
                if (close < 0)
                    throw new PipelineException($"missing '}}' after the options of '{name}'");
                var opts = new SortedDictionary<string, string>(StringComparer.Ordinal);
                foreach (
                    var kv in s[(i + 1)..close]
                        .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                )
                {
                    int eq = kv.IndexOf('=');
                    if (eq <= 0)
                        throw new PipelineException($"option '{kv}' of '{name}' must be written name=value");
                    opts[kv[..eq].Trim()] = kv[(eq + 1)..].Trim();
                }
                result._steps[^1] = result._steps[^1] with { Options = opts };
                i = close + 1;
            }
            while (i < s.Length && char.IsWhiteSpace(s[i]))
                i++;
            if (i < s.Length)
            {
                if (s[i] != ',')
                    throw new PipelineException($"expected ',' at position {i + 1} of '{pipeline}'");
                i++;
            }
        }
        return result;
    }
}
