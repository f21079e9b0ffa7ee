namespace Vlm.Core.Autograd;

/// <summary>Reverse-mode differentiation over the recorded graph (micrograd's topological walk).</summary>
public static class Engine
{
    public static void Backward(Tensor root, Tensor? gradient)
    {
        if (!root.RequiresGrad)
            throw new InvalidOperationException("backward() on a tensor that does not require grad (no parameter or input requiring grad reaches it)");
        if (gradient is null)
        {
            if (root.Numel != 1) throw new InvalidOperationException($"backward() without a gradient needs a scalar, got shape {root.ShapeString}");
            gradient = Tensor.Ones(root.ShapeArray());
        }
        else if (!ShapeUtil.SameShape(gradient.Shape, root.Shape))
            throw new ArgumentException($"gradient shape {gradient.ShapeString} does not match tensor shape {root.ShapeString}");

        var order = TopologicalOrder(root);
        var grads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance) { [root] = gradient };
        using var _ = GradMode.Disable();
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (!grads.Remove(t, out var g)) continue;
            var node = t.GradFn;
            if (node is null)
            {
                Accumulate(t, g);
                continue;
            }
            var inGrads = node.BackwardFn(g);
            if (inGrads.Length != node.Inputs.Length)
                throw new InvalidOperationException($"{node} returned {inGrads.Length} gradients for {node.Inputs.Length} inputs");
            for (int k = 0; k < inGrads.Length; k++)
            {
                var input = node.Inputs[k];
                var ig = inGrads[k];
                if (ig is null || !input.RequiresGrad) continue;
                if (!ShapeUtil.SameShape(ig.Shape, input.Shape))
                    throw new InvalidOperationException($"{node} produced gradient {ig.ShapeString} for input {k} of shape {input.ShapeString}");
                grads[input] = grads.TryGetValue(input, out var prev) ? prev.Add(ig) : ig;
            }
        }
    }

    private static void Accumulate(Tensor leaf, Tensor g)
    {
        if (leaf.Grad is null)
        {
            // Own the buffer: g may be a view of something else or shared between leaves.
            leaf.Grad = g.Clone();
        }
        else
        {
            leaf.Grad.AddInPlace(g);
        }
    }

    private static List<Tensor> TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor t, int next)>();
        stack.Push((root, 0));
        visited.Add(root);
        while (stack.Count > 0)
        {
            var (t, next) = stack.Pop();
            var inputs = t.GradFn?.Inputs ?? Array.Empty<Tensor>();
            if (next < inputs.Length)
            {
                stack.Push((t, next + 1));
                var c = inputs[next];
                if (c.RequiresGrad && visited.Add(c)) stack.Push((c, 0));
            }
            else
            {
                order.Add(t);
            }
        }
        return order;
    }
}
