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
    public static Tensor Record(Tensor output, string name, Tensor[] inputs, Func<Tensor, Tensor?[]> backward,
        Action<Tensor, Tensor>? backwardInto = null)
    {
        if (!ShouldRecord(inputs)) return output;
        if (Profiler.Enabled) Profiler.OnRecord(name);
        foreach (var t in inputs) t.PinForBackward();
        output.GradFn = new Node(name, inputs, backward) { BackwardInto = backwardInto };
        output.RequiresGrad = true;
        return output;
    }

    /// <summary>Pins a tensor captured by a backward closure that is not one of the op's inputs
    /// (an op's own output, cached statistics).</summary>
    public static Tensor Save(Tensor t)
    {
        t.PinForBackward();
        return t;
    }
}
