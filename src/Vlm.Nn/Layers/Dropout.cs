using Vlm.Core;

namespace Vlm.Nn;

/// <summary>
/// The random stream every dropout of one model draws from. One context per model (it lives in the
/// <see cref="VarBuilder"/> and the <see cref="ParameterStore"/>), so a run is reproducible from one seed:
/// masks are drawn in forward order, which is deterministic. Its state goes into checkpoints for bit-identical resume.
/// </summary>
public sealed class DropoutContext
{
    public Rng Rng { get; private set; }

    public DropoutContext(ulong seed = 0) => Rng = new Rng(seed);

    public void Reseed(ulong seed) => Rng = new Rng(seed);

    public ulong[] GetState() => Rng.GetState();

    public void SetState(ulong[] state) => Rng.SetState(state);
}

/// <summary>torch.nn.Dropout: in training zeroes each element with probability p and scales the rest by 1/(1-p);
/// identity in eval mode. Masks come from the model's seeded <see cref="DropoutContext"/> (not torch's stream).</summary>
public sealed class Dropout : Module
{
    public float P { get; }
    private readonly DropoutContext _ctx;

    public Dropout(float p, VarBuilder vb) : this(p, vb.Dropout) { }

    public Dropout(float p, DropoutContext context)
    {
        if (!(p >= 0f && p <= 1f)) throw new ArgumentException($"dropout probability must be in [0, 1], got {p}");
        P = p;
        _ctx = context;
    }

    /// <summary>The stream this layer draws from (attention passes it to the fused kernel's probability dropout).</summary>
    public DropoutContext Context => _ctx;

    public Tensor Forward(Tensor x) => Training && P > 0f ? F.Dropout(x, P, true, _ctx.Rng) : x;
}
