using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>cse</c>: common subexpression elimination. Two pure operations with the same name, operands, attributes
/// and result types compute the same value; later ones are replaced by the first.
/// </summary>
public sealed class Cse : IPass
{
    /// <inheritdoc/>
    public string Name => "cse";

    /// <inheritdoc/>
    public string Description => "merge identical pure operations";

    private readonly record struct Key(string Name, Value[] Operands, string Attrs, string Types)
    {
        public bool Equals(Key o) =>
            Name == o.Name && Attrs == o.Attrs && Types == o.Types && Operands.AsSpan().SequenceEqual(o.Operands);

        public override int GetHashCode()
        {
            var h = new HashCode();
            h.Add(Name);
            h.Add(Attrs);
            h.Add(Types);
            foreach (var v in Operands)
                h.Add(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(v));
            return h.ToHashCode();
        }
    }

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        bool changed = false;
        foreach (var func in module.Functions())
        {
            var seen = new Dictionary<Key, Operation>();
            foreach (var op in func.Regions[0].Entry.Operations)
            {
                if (op.Def is not { IsPure: true } || op.Regions.Count > 0)
                    continue;
                var key = new Key(
                    op.Name,
                    op.Operands.ToArray(),
                    string.Join(",", op.Attributes.Select(a => $"{a.Key}={a.Value}")),
                    string.Join(",", op.Results.Select(r => r.Type))
                );
                if (seen.TryGetValue(key, out var first))
                {
                    for (int i = 0; i < op.Results.Count; i++)
                        op.Results[i].ReplaceAllUsesWith(first.Results[i]);
                    op.Erase();
                    changed = true;
                }
                else
                    seen[key] = op;
            }
        }
        return changed;
    }
}
