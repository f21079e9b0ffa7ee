namespace Vlm.Core.Autograd;

/// <summary>
/// One recorded op: its inputs and the rule mapping the output's gradient to theirs.
/// Every op's forward and its backward rule live together in one file under Ops/;
/// tensors a rule needs (inputs, cached statistics) are captured when the op runs.
/// </summary>
public sealed class Node
{
    public string Name { get; }
    public Tensor[] Inputs { get; }

    /// <summary>Maps the output gradient to one gradient per input (null where the input needs none).
    /// Gradients have the input's shape; the engine runs this with recording disabled.</summary>
    public Func<Tensor, Tensor?[]> BackwardFn { get; }

    public Node(string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        Name = name;
        Inputs = inputs;
        BackwardFn = backward;
    }

    /// <summary>Optional for single-input nodes: adds this node's input gradient for output gradient g into acc, an
    /// existing gradient of the input that the engine owns alone (narrow adds g into acc's slice). Must give the same
    /// values as acc + BackwardFn(g)[0].</summary>
    public Action<Tensor, Tensor>? BackwardInto { get; init; }

    public bool NeedsGrad(int input) => Inputs[input].RequiresGrad;

    /// <summary>Storages this node holds a reference on until its backward has run (inputs, output, saved tensors).</summary>
    private Storage[] _held = [];
    private int _released;

    internal void Hold(Storage[] held) => _held = held;

    /// <summary>Called by the engine once this node's backward has run, and by <see cref="Tensor.Dispose"/> when the
    /// node's output was disposed with no live consumer: its buffers may go back to the pool when no tensor holds them
    /// either, and it stops consuming its inputs. With <paramref name="cascade"/>, an input that was disposed and that
    /// no other live node consumes is unreachable too, so its node is released in turn (iteratively: a dead branch can
    /// be a whole encoder deep). The engine does not cascade: the inputs' nodes are still to run their backward. A
    /// graph whose buffers were reused cannot be back-propagated again (checked by <see cref="ThrowIfFreed"/>).</summary>
    internal void ReleaseHeld(bool cascade = false)
    {
        Stack<Node>? pending = null;
        var node = this;
        while (true)
        {
            if (Interlocked.Exchange(ref node._released, 1) == 0)
            {
                foreach (var s in node._held) s.Release();
                foreach (var t in node.Inputs)
                    if (Interlocked.Decrement(ref t.Consumers) == 0 && cascade && t.IsDisposed && t.GradFn is { } up)
                        (pending ??= new Stack<Node>()).Push(up);
            }
            if (pending is null || pending.Count == 0) return;
            node = pending.Pop();
        }
    }

    internal void ThrowIfFreed()
    {
        if (_released == 0) return;
        foreach (var s in _held)
            if (s.IsFreed)
                throw new InvalidOperationException($"{this}: backward through this graph a second time, but a tensor it saved was disposed and its buffer reused after the first backward. Keep (do not Dispose) the graph's tensors, or run the forward again.");
    }

    public override string ToString() => $"{Name}Backward";
}

public static class Recorder
{
    /// <summary>True when an op over these inputs must be recorded.</summary>
    public static bool ShouldRecord(params Tensor[] inputs)
    {
        if (!GradMode.IsEnabled) return false;
        foreach (var t in inputs) if (t.RequiresGrad) return true;
        return false;
    }

    public static bool ShouldRecord(Tensor a)
        => GradMode.IsEnabled && a.RequiresGrad;

    /// <summary>Attaches <paramref name="backward"/> to <paramref name="output"/> when any input requires grad.
    /// Inputs (and anything the closure captured) stay alive with the graph; their buffers are pinned.</summary>
    /// <summary>Tensors saved on this thread by <see cref="Save"/> for the node the next <see cref="Record"/> creates.</summary>
    [ThreadStatic] private static List<Storage>? _pendingSaved;

    /// <summary>Attaches <paramref name="backward"/> to <paramref name="output"/> when any input requires grad.
    /// The node holds a reference on the buffers of its inputs, its output and the tensors saved with
    /// <see cref="Save"/> just before, until its backward has run: callers may Dispose those tensors meanwhile.
    /// Anything else a backward closure reads must be created by the op itself (never handed to the caller).</summary>
    public static Tensor Record(Tensor output, string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward,
        Action<Tensor, Tensor>? backwardInto = null)
    {
        var saved = _pendingSaved;
        if (!ShouldRecord(inputs))
        {
            if (saved is { Count: > 0 }) { foreach (var s in saved) s.Release(); saved.Clear(); }
            return output;
        }
        if (Profiler.Enabled) Profiler.OnRecord(name);
        var held = new Storage[inputs.Length + 1 + (saved?.Count ?? 0)];
        int n = 0;
        foreach (var t in inputs) { t.Storage.RetainForBackward(); held[n++] = t.Storage; }
        output.Storage.RetainForBackward(); held[n++] = output.Storage;
        if (saved != null) { foreach (var s in saved) held[n++] = s; saved.Clear(); }
        var node = new Node(name, inputs, backward) { BackwardInto = backwardInto };
        node.Hold(held);
        foreach (var t in inputs) Interlocked.Increment(ref t.Consumers);
        output.GradFn = node;
        output.RequiresGrad = true;
        return output;
    }

    /// <summary>Keeps a tensor a backward closure reads that is not one of the op's inputs or its output (cached
    /// statistics, contiguous copies) for the node the next <see cref="Record"/> on this thread creates.
    /// Call only when the op records (<see cref="ShouldRecord(Tensor[])"/>).</summary>
    public static Tensor Save(Tensor t)
    {
        if (!GradMode.IsEnabled) return t;
        t.Storage.RetainForBackward();
        (_pendingSaved ??= new List<Storage>()).Add(t.Storage);
        return t;
    }
}
