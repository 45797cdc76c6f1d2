using ParallelCompiler.IR;
using ParallelCompiler.Kernels;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>
/// <c>form-kernels</c>: groups the entry function's tensor ops into kernels and outlines each group into a kernel
/// function <c>@kN_op</c> (attribute <c>kernel</c>: its kind), called by a <c>kernel.launch</c> where the group
/// stood. An elementwise op (and a broadcast, reshape, transpose or causal mask) used once is fused into its
/// user, so chains of elementwise ops become one kernel, ending where a reduction, a softmax or a norm consumes
/// them (which then becomes a row kernel reading the fused chain); scalar constants are copied into every kernel
/// that reads them. A matmul is a kernel of its own (tiled by the code generator), reading its operands from
/// memory. Ops fuse only within one pipeline stage and phase. Runs last, on the per-device program.
/// </summary>
public sealed class FormKernels : IPass
{
    /// <inheritdoc/>
    public string Name => "form-kernels";

    /// <inheritdoc/>
    public string Description =>
        "fuse elementwise chains into their consumers and outline every kernel as a function "
        + "launched by kernel.launch";

    /// <inheritdoc/>
    public bool Run(Operation module)
    {
        if (module.EntryFunction() is not { } func || module.Functions().Any(f => f.GetAttr("kernel") != null))
            return false;
        var entry = func.Regions[0].Entry;
        var ops = entry.Operations.Where(OpCompute.Supports).ToList();
        if (ops.Count == 0)
            return false;

        // The group (its root op) every kernel op belongs to; constants may belong to several.
        var root = new Dictionary<Operation, Operation>(ReferenceEqualityComparer.Instance);
        var constantGroups = new Dictionary<Operation, List<Operation>>(ReferenceEqualityComparer.Instance);
        for (int i = ops.Count - 1; i >= 0; i--)
        {
            var op = ops[i];
            var users = op.Result.Uses.Select(u => u.Op).Distinct().ToList();
            bool fusable = users.Count > 0 && users.All(u => CanFuseInto(op, u) && root.ContainsKey(u));
            if (fusable && op.Name == "tensor.constant" && op.Result.TensorType.NumElements == 1)
                constantGroups[op] = users.Select(u => root[u]).Distinct().ToList();
            else if (fusable && users.Count == 1 && op.Result.Uses.Count() == 1 && Inlinable(op))
                root[op] = root[users[0]];
            else
                root[op] = op;
        }
        var members = new Dictionary<Operation, List<Operation>>(ReferenceEqualityComparer.Instance);
        foreach (var op in ops.Where(root.ContainsKey))
        {
            if (!members.TryGetValue(root[op], out var list))
                members[root[op]] = list = [];
            list.Add(op);
        }
        foreach (var (c, groups) in constantGroups)
        foreach (var g in groups)
            members[g].Insert(0, c);

        var b = new Builder();
        var known = new Dictionary<string, string>();
        int n = 0;
        foreach (var r in ops.Where(o => root.TryGetValue(o, out var x) && ReferenceEquals(x, o)))
        {
            var group = members[r];
            var inside = new HashSet<Operation>(group, ReferenceEqualityComparer.Instance);
            var inputs = group
                .SelectMany(o => o.Operands)
                .Where(v => v.DefiningOp is not { } d || !inside.Contains(d))
                .Distinct()
                .ToList();
            string name = $"k{n++}_{r.Name[(r.Name.IndexOf('.') + 1)..]}";
            var kernel = module.AddFunction(
                name,
                inputs.Select((v, i) => (v.NameHint ?? $"in{i}", v.Type)),
                [r.Result.Type],
                r.Location
            );
            kernel.SetAttr("kernel", Attr.Str(Kind(r)));
            var map = new Dictionary<Value, Value>(ReferenceEqualityComparer.Instance);
            var kentry = kernel.Regions[0].Entry;
            for (int i = 0; i < inputs.Count; i++)
                map[inputs[i]] = kentry.Arguments[i];
            b.SetInsertionPointToEnd(kentry);
            foreach (var o in group)
            {
                b.Location = o.Location;
                var clone = b.Create(
                    o.Name,
                    o.Operands.Select(v => map[v]).ToList(),
                    o.Attributes.Where(a => a.Key is not ("stage" or "phase")),
                    [o.Result.Type]
                );
                clone.Result.NameHint = o.Result.NameHint;
                map[o.Result] = clone.Result;
            }
            b.Create("func.return", [map[r.Result]]);
            // A kernel equal to one made before (the same ops on the same shapes: every layer of a stack) is shared.
            string key = KernelKey(kernel);
            if (known.TryGetValue(key, out var same))
            {
                kernel.Erase();
                name = same;
                n--;
            }
            else
                known[key] = name;
            // The launch takes the root's place, stage and phase.
            b.SetInsertionPointBefore(r);
            b.Location = r.Location;
            var launch = b.Create(
                "kernel.launch",
                inputs,
                r.Attributes.Where(a => a.Key is "stage" or "phase" or "recompute")
                    .Append(new("callee", Attr.Str(name))),
                [r.Result.Type]
            );
            launch.Result.NameHint = r.Result.NameHint;
            r.Result.ReplaceAllUsesWith(launch.Result);
            for (int i = group.Count - 1; i >= 0; i--)
                if (!constantGroups.ContainsKey(group[i]))
                    group[i].Erase();
        }
        foreach (var c in constantGroups.Keys)
            if (!c.Result.HasUses)
                c.Erase();
        return true;
    }

    /// <summary>A kernel function's text without its name and value names: equal keys, equal kernels.</summary>
    private static string KernelKey(Operation kernel)
    {
        var text = Printer.Print(kernel);
        text = text[text.IndexOf('(')..];
        var numbers = new Dictionary<string, int>();
        return System.Text.RegularExpressions.Regex.Replace(
            text,
            @"%[A-Za-z0-9_.$-]+",
            m => numbers.TryGetValue(m.Value, out int k) ? $"%{k}" : $"%{numbers[m.Value] = numbers.Count}"
        );
    }

    /// <summary>Ops a consumer can recompute at any index for the price of reading their operands there.</summary>
    private static bool Inlinable(Operation op) =>
        OpCompute.IsElementwise(op) || op.Name is "tensor.reshape" or "tensor.transpose" or "tensor.causal_mask";

    private static bool CanFuseInto(Operation producer, Operation consumer) =>
        OpCompute.Supports(consumer)
        && consumer.Name != "tensor.matmul"
        && Equals(producer.GetAttr("stage"), consumer.GetAttr("stage"))
        && Equals(producer.GetAttr("phase"), consumer.GetAttr("phase"));

    private static string Kind(Operation root) =>
        root.Name switch
        {
            "tensor.matmul" => "matmul",
            "tensor.softmax" or "tensor.layernorm" or "tensor.rmsnorm" => "row",
            "tensor.sum" or "tensor.mean" or "tensor.max" or "tensor.cross_entropy" or "tensor.embedding_grad" =>
                "reduction",
            "tensor.embedding" or "tensor.concat" or "tensor.slice" => "gather",
            _ => "elementwise",
        };
}
