using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>Generated meshes and legal user shardings for generated programs.</summary>
public static class Layouts
{
    /// <summary>
    /// Adds the mesh to <paramref name="module"/> and gives its arguments and parameters shardings chosen by
    /// <paramref name="codes"/>: per dimension a set of unused axes whose product divides it. Returns a description.
    /// </summary>
    public static string Apply(Operation module, (string Axis, int Size)[] mesh, byte[] codes)
    {
        var meshOp = Operation.CreateUnchecked(
            "dist.mesh",
            [],
            [],
            [
                new("axes", Attr.Strs(mesh.Select(m => m.Axis))),
                new("shape", Attr.Ints(mesh.Select(m => (long)m.Size))),
                new("sym_name", Attr.Str("grid")),
            ]
        );
        module.Regions[0].Entry.InsertBefore(meshOp, module.Regions[0].Entry.First);
        var func = module.EntryFunction()!;
        var values = func.Regions[0]
            .Entry.Arguments.Cast<Value>()
            .Concat(func.Regions[0].Entry.Operations.Where(o => o.Name == "tensor.param").Select(o => (Value)o.Result))
            .ToList();
        int c = 0;
        byte Next() => codes.Length == 0 ? (byte)0 : codes[c++ % codes.Length];
        var described = new List<string>();
        foreach (var v in values)
        {
            var s = Pick(v.TensorType.Shape, mesh, Next);
            v.Type = v.TensorType.WithSharding(s);
            described.Add($"{v.NameHint ?? v.DefiningOp?.StringAttr("path")}: {s}");
        }
        func.SetResultTypes(func.Regions[0].Entry.Last!.Operands.Select(o => o.Type));
        return string.Join("; ", described);
    }

    /// <summary>A legal sharding of <paramref name="shape"/>: per dimension, the unused axes that <paramref
    /// name="next"/>'s code picks and whose product divides it.</summary>
    public static ParallelCompiler.IR.Sharding Pick(
        IReadOnlyList<long> shape,
        (string Axis, int Size)[] mesh,
        Func<byte> next
    )
    {
        var used = new HashSet<string>();
        var dims = new List<List<string>>();
        foreach (long d in shape)
        {
            var axes = new List<string>();
            long product = 1;
            byte code = next();
            for (int i = 0; i < mesh.Length; i++)
            {
                var (axis, size) = mesh[(i + code) % mesh.Length];
                if ((code >> (i + 2) & 1) == 0 || used.Contains(axis) || d % (product * size) != 0)
                    continue;
                axes.Add(axis);
                used.Add(axis);
                product *= size;
            }
            dims.Add(axes);
        }
        return new ParallelCompiler.IR.Sharding(dims);
    }

    /// <summary>Random arguments (ids within the embedding tables) and initialised parameters.</summary>
    public static (NDArray[] Args, Dictionary<string, NDArray> Params) Inputs(Operation module, ulong seed)
    {
        var func = module.EntryFunction()!;
        var args = func.Regions[0]
            .Entry.Arguments.Select(a =>
                Initializers.RandomInput(a.TensorType.DType, a.TensorType.ShapeArray, seed, a.NameHint ?? "", 5)
            )
            .ToArray();
        var ps = func.Regions[0]
            .Entry.Operations.Where(o => o.Name == "tensor.param")
            .ToDictionary(
                o => o.StringAttr("path"),
                o =>
                    Initializers.Create(
                        o.StringAttr("init"),
                        o.GetAttr("std") is null ? 0 : o.FloatAttr("std"),
                        o.Result.TensorType.DType,
                        o.Result.TensorType.ShapeArray,
                        seed,
                        o.StringAttr("path")
                    )
            );
        return (args, ps);
    }
}
