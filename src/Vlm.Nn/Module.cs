namespace Vlm.Nn;

/// <summary>
/// Base of every layer and model. Holds the train/eval flag and the child modules (so Train()/Eval()
/// reach the whole tree). Parameters are plain leaf tensors created through a <see cref="VarBuilder"/>,
/// which records them under their PyTorch state-dict names in the model's <see cref="ParameterStore"/>.
/// </summary>
public abstract class Module
{
    private readonly List<Module> _children = new();

    public bool Training { get; private set; } = true;

    /// <summary>Registers a child so mode switches reach it; returns it for field initialisation.</summary>
    protected T Add<T>(T child) where T : Module
    {
        _children.Add(child);
        child.Training = Training;
        return child;
    }

    protected void AddRange(IEnumerable<Module> children)
    {
        foreach (var c in children) Add(c);
    }

    public Module Train(bool on = true)
    {
        Training = on;
        foreach (var c in _children) c.Train(on);
        return this;
    }

    public Module Eval() => Train(false);
}
