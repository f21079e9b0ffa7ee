namespace Vlm.Core.Autograd;

/// <summary>Reverse-mode differentiation over the recorded graph (micrograd's topological walk).</summary>
public static class Engine
{
    /// <summary>VLM_GRAD_RECYCLE=0 keeps every intermediate gradient alive until the GC takes it (for comparisons).</summary>
    private static readonly bool Recycle = Environment.GetEnvironmentVariable("VLM_GRAD_RECYCLE") != "0";

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
        // How many pending entries of `grads` hold each gradient object (one object can be handed to several inputs,
        // e.g. by add's backward). An intermediate gradient that no entry holds any more, that is not the caller's
        // tensor and that the node did not pass on, is disposed: its buffer goes back to the pool for the next
        // gradient (views of it keep the storage alive through their own references; pinned buffers never return).
        var holders = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance) { [gradient] = 1 };
        var done = new List<Tensor>();
        using var _ = GradMode.Disable();
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (!grads.Remove(t, out var g)) continue;
            Release(holders, g);
            done.Clear();
            done.Add(g);
            var node = t.GradFn;
            if (node is null)
            {
                Accumulate(t, g);
                DisposeUnheld(done, holders, gradient);
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
                if (grads.TryGetValue(input, out var prev))
                {
                    var sum = prev.Add(ig);
                    Release(holders, prev);
                    done.Add(prev); done.Add(ig);
                    grads[input] = sum;
                    Hold(holders, sum);
                }
                else
                {
                    grads[input] = ig;
                    Hold(holders, ig);
                }
            }
            DisposeUnheld(done, holders, gradient);
        }
    }

    private static void Hold(Dictionary<Tensor, int> holders, Tensor g) =>
        holders[g] = holders.TryGetValue(g, out var c) ? c + 1 : 1;

    private static void Release(Dictionary<Tensor, int> holders, Tensor g)
    {
        if (!holders.TryGetValue(g, out var c)) return;
        if (c <= 1) holders.Remove(g);
        else holders[g] = c - 1;
    }

    private static void DisposeUnheld(List<Tensor> candidates, Dictionary<Tensor, int> holders, Tensor callerGradient)
    {
        if (!Recycle) return;
        foreach (var c in candidates)
            if (!ReferenceEquals(c, callerGradient) && !holders.ContainsKey(c)) c.Dispose();
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
