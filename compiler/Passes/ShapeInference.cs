using ParallelCompiler.IR;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>shape-inference</c>: recomputes every result type from the operands with each op's shape rule, in program
/// order, and updates function result types to what they return. After a rewrite that changed an input shape
/// (e.g. a -D override applied to textual IR), this brings every downstream type in line.
/// </summary>
public sealed class ShapeInference : IPass
{
    /// <inheritdoc/>
    public string Name => "shape-inference";

    /// <inheritdoc/>
    public string Description => "recompute every result type from its operands with the op's shape rule";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        bool changed = false;
        foreach (var func in module.Functions())
        {
            var entry = func.Regions[0].Entry;
            foreach (var op in entry.Operations)
            {
                if (op.Name == "func.return")
                {
                    var types = op.Operands.Select(o => o.Type).ToList();
                    if (!types.SequenceEqual(func.ResultTypes()))
                    {
                        func.SetResultTypes(types);
                        changed = true;
                    }
                    continue;
                }
                var def = op.Def ?? throw new IRException($"unknown operation '{op.Name}'");
                var inferred = Builder.InferExisting(def, op);
                for (int i = 0; i < inferred.Count; i++)
                {
                    var old = (TensorType)op.Results[i].Type;
                    var now = (TensorType)inferred[i];
                    if (!old.SameShapeAndType(now))
                    {
                        op.Results[i].Type = now.WithSharding(null);
                        changed = true;
                    }
                }
            }
        }
        return changed;
    }
}
