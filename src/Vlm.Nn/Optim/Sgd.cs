using System.Numerics;
using System.Runtime.InteropServices;
using Vlm.Core;

namespace Vlm.Nn.Optim;

/// <summary>
/// torch.optim.SGD (PyTorch 1.13 single-tensor semantics): d = g + wd·p; with momentum μ the buffer starts as a
/// copy of d and then b ← μb + (1−dampening)d; the step uses b, or d + μb with Nesterov; p ← p − lr·d.
/// </summary>
public sealed class Sgd : Optimizer
{
    public double Momentum { get; }
    public double Dampening { get; }
    public bool Nesterov { get; }

    private readonly Dictionary<string, float[]> _buffers = new(StringComparer.Ordinal);

    public Sgd(IEnumerable<ParamGroup> groups, double lr, double momentum = 0, double dampening = 0, bool nesterov = false)
        : base(groups, lr)
    {
        if (!(momentum >= 0)) throw new ArgumentException($"SGD momentum must be ≥ 0, got {momentum}");
        if (nesterov && (momentum <= 0 || dampening != 0)) throw new ArgumentException("Nesterov momentum requires a momentum and zero dampening");
        Momentum = momentum; Dampening = dampening; Nesterov = nesterov;
    }

    protected override void Update(string name, Span<float> p, ReadOnlySpan<float> g, double lr, double weightDecay)
    {
        float wd = (float)weightDecay, mu = (float)Momentum, oneMinusDamp = (float)(1 - Dampening), negLr = (float)(-lr);
        float[]? buf = null;
        bool first = false;
        if (Momentum != 0 && !_buffers.TryGetValue(name, out buf))
        {
            _buffers[name] = buf = new float[p.Length];
            first = true;
        }
        int n = p.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var pv = MemoryMarshal.Cast<float, Vector<float>>(p);
            var gv = MemoryMarshal.Cast<float, Vector<float>>(g);
            var bv = buf is null ? default : MemoryMarshal.Cast<float, Vector<float>>(buf.AsSpan());
            var wdv = new Vector<float>(wd); var muv = new Vector<float>(mu); var dv = new Vector<float>(oneMinusDamp); var lrv = new Vector<float>(negLr);
            for (int j = 0; j < pv.Length; j++)
            {
                var d = wd != 0 ? Vector.FusedMultiplyAdd(pv[j], wdv, gv[j]) : gv[j];
                if (buf != null)
                {
                    var b = first ? d : Vector.FusedMultiplyAdd(d, dv, bv[j] * muv);
                    bv[j] = b;
                    d = Nesterov ? Vector.FusedMultiplyAdd(b, muv, d) : b;
                }
                pv[j] = Vector.FusedMultiplyAdd(d, lrv, pv[j]);
            }
            i = pv.Length * Vector<float>.Count;
        }
        for (; i < n; i++)
        {
            float d = wd != 0 ? MathF.FusedMultiplyAdd(p[i], wd, g[i]) : g[i];
            if (buf != null)
            {
                float b = first ? d : MathF.FusedMultiplyAdd(d, oneMinusDamp, buf[i] * mu);
                buf[i] = b;
                d = Nesterov ? MathF.FusedMultiplyAdd(b, mu, d) : b;
            }
            p[i] = MathF.FusedMultiplyAdd(d, negLr, p[i]);
        }
    }

    protected override IEnumerable<KeyValuePair<string, Tensor>> SaveSlots(string name)
    {
        if (!_buffers.TryGetValue(name, out var b)) yield break;
        var shape = AllParams.First(kv => kv.Key == name).Value.ShapeArray();
        yield return new("momentum_buffer", Tensor.FromArray((float[])b.Clone(), shape));
    }

    protected override string? ValidateSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots)
    {
        var err = CheckSlot(name, param, slots, "momentum_buffer");
        if (err != null) return err;
        return slots.Count > 1 ? $"state.{name}: unexpected slots {string.Join(", ", slots.Keys.Where(k => k != "momentum_buffer"))}" : null;
    }

    protected override void LoadSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots) =>
        _buffers[name] = CopyOf(slots["momentum_buffer"]);

    protected override void ClearState() => _buffers.Clear();
}
