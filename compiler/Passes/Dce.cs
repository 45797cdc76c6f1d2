using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary><c>dce</c>: removes pure operations whose results are never used, last to first so chains vanish in one
/// sweep.</summary>
public sealed class Dce : IPass
{
    /// <inheritdoc/>
    public string Name => "dce";

    /// <inheritdoc/>
    public string Description => "remove operations without effects whose results are unused";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        bool changed = false;
        foreach (var func in module.Functions())
        {
            for (var op = func.Regions[0].Entry.Last; op != null; )
            {
                var prev = op.Prev;
                if (op.IsTriviallyDead)
                {
                    op.Erase();
                    changed = true;
                }
                op = prev;
            }
        }
        return changed;
    }
}
