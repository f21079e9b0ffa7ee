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

        long t0 = Profiler.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
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
                long ta = Profiler.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                if (Accumulate(t, g, holders, gradient)) done.Clear(); // g became t.Grad: keep it
                if (Profiler.Enabled) Profiler.AddBackward("accumulate_grad(leaf)", System.Diagnostics.Stopwatch.GetTimestamp() - ta);
                DisposeUnheld(done, holders, gradient);
                continue;
            }
            node.ThrowIfFreed();
            long tn = Profiler.Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
            // A single-input node that can add its input's gradient into an existing one (narrow: into the slice) does
            // so when the pending gradient is ours alone, instead of materialising a full-size gradient to sum.
            if (node.BackwardInto is { } into && node.Inputs.Length == 1 && node.Inputs[0].RequiresGrad
                && grads.TryGetValue(node.Inputs[0], out var acc) && CanUpdateInPlace(acc, holders, gradient, g, null))
            {
                into(g, acc);
                node.ReleaseHeld();
                DisposeUnheld(done, holders, gradient);
                if (Profiler.Enabled) Profiler.AddBackward(node.Name + "(into)", System.Diagnostics.Stopwatch.GetTimestamp() - tn);
                continue;
            }
            var inGrads = node.BackwardFn(g);
            node.ReleaseHeld();
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
                    if (CanUpdateInPlace(prev, holders, gradient, g, inGrads) && !SameBuffer(prev, ig))
                    {
                        // prev is a buffer only this entry holds: sum into it (same float additions as prev.Add(ig)).
                        prev.AddInPlace(ig);
                        done.Add(ig);
                        continue;
                    }
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
            if (Profiler.Enabled) Profiler.AddBackward(node.Name, System.Diagnostics.Stopwatch.GetTimestamp() - tn);
        }
        if (Profiler.Enabled) Profiler.Report(System.Diagnostics.Stopwatch.GetTimestamp() - t0);
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

    /// <summary>May the engine add into <paramref name="t"/>, a pending gradient? Only when the buffer is held by this
    /// one tensor and one pending entry, is not the caller's gradient, and is not the gradient being propagated or one
    /// the current node returned (add's backward hands the same object to several inputs).</summary>
    private static bool CanUpdateInPlace(Tensor t, Dictionary<Tensor, int> holders, Tensor callerGradient, Tensor current, Tensor?[]? returned)
    {
        if (!Recycle || ReferenceEquals(t, callerGradient) || ReferenceEquals(t, current)) return false;
        if (!holders.TryGetValue(t, out var c) || c != 1 || !t.OwnsBufferExclusively) return false;
        if (returned != null) foreach (var r in returned) if (ReferenceEquals(r, t)) return false;
        return true;
    }

    private static bool SameBuffer(Tensor a, Tensor b) => ReferenceEquals(a.Storage, b.Storage);

    /// <summary>Adds g to leaf.Grad; returns true when g itself became leaf.Grad (the caller must not dispose it).</summary>
    private static bool Accumulate(Tensor leaf, Tensor g, Dictionary<Tensor, int> holders, Tensor callerGradient)
    {
        if (leaf.Grad is null)
        {
            // A gradient only the engine holds becomes .Grad as it is; otherwise own a copy (g may be a view of
            // something else, shared between leaves, or the caller's tensor).
            if (Recycle && !ReferenceEquals(g, callerGradient) && !holders.ContainsKey(g) && g.GradFn is null && !g.RequiresGrad
                && g.OwnsBufferExclusively)
            {
                leaf.Grad = g;
                return true;
            }
            leaf.Grad = g.Clone();
        }
        else
        {
            leaf.Grad.AddInPlace(g);
        }
        return false;
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
