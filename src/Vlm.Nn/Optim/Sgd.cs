using System.Numerics;
using System.Runtime.CompilerServices;
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
        float[]? buf = null;
        bool first = false;
        if (Momentum != 0 && !_buffers.TryGetValue(name, out buf))
        {
            _buffers[name] = buf = new float[p.Length];
            first = true;
        }
        var k = new Coeffs((float)weightDecay, (float)Momentum, (float)(1 - Dampening), (float)(-lr), buf != null, first, Nesterov);
        unsafe
        {
            fixed (float* pp = p, gp = g, bp = buf)
            {
                nint pa = (nint)pp, ga = (nint)gp, ba = (nint)bp;
                Chunked(p.Length, (a, b) => Kernel(new Span<float>((float*)pa + a, b - a), new ReadOnlySpan<float>((float*)ga + a, b - a),
                    buf is null ? default : new Span<float>((float*)ba + a, b - a), k));
            }
        }
    }

    /// <summary>The float scalars of one step.</summary>
    public readonly record struct Coeffs(float WeightDecay, float Momentum, float OneMinusDampening, float NegLr, bool HasBuffer, bool FirstStep, bool Nesterov);

    /// <summary>One update over spans, vectorised (add-with-alpha as a fused multiply-add, like ATen's vectorised add).
    /// <paramref name="buf"/> is the momentum buffer (empty without momentum).</summary>
    public static void Kernel(Span<float> p, ReadOnlySpan<float> g, Span<float> buf, Coeffs k)
    {
        int n = p.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var pv = MemoryMarshal.Cast<float, Vector<float>>(p);
            var gv = MemoryMarshal.Cast<float, Vector<float>>(g);
            var bv = MemoryMarshal.Cast<float, Vector<float>>(buf);
            var wdv = new Vector<float>(k.WeightDecay); var muv = new Vector<float>(k.Momentum);
            var dv = new Vector<float>(k.OneMinusDampening); var lrv = new Vector<float>(k.NegLr);
            for (int j = 0; j < pv.Length; j++)
            {
                var d = k.WeightDecay != 0 ? Vector.FusedMultiplyAdd(pv[j], wdv, gv[j]) : gv[j];
                if (k.HasBuffer)
                {
                    var b = k.FirstStep ? d : Vector.FusedMultiplyAdd(d, dv, bv[j] * muv);
                    bv[j] = b;
                    d = k.Nesterov ? Vector.FusedMultiplyAdd(b, muv, d) : b;
                }
                pv[j] = Vector.FusedMultiplyAdd(d, lrv, pv[j]);
            }
            i = pv.Length * Vector<float>.Count;
        }
        for (; i < n; i++) ScalarStep(ref p[i], g[i], ref (k.HasBuffer ? ref buf[i] : ref Unsafe.NullRef<float>()), k);
    }

    private static void ScalarStep(ref float p, float g, ref float buf, Coeffs k)
    {
        float d = k.WeightDecay != 0 ? MathF.FusedMultiplyAdd(p, k.WeightDecay, g) : g;
        if (k.HasBuffer)
        {
            float b = k.FirstStep ? d : MathF.FusedMultiplyAdd(d, k.OneMinusDampening, buf * k.Momentum);
            buf = b;
            d = k.Nesterov ? MathF.FusedMultiplyAdd(b, k.Momentum, d) : b;
        }
        p = MathF.FusedMultiplyAdd(d, k.NegLr, p);
    }

    /// <summary>Element-at-a-time reference for <see cref="Kernel"/>.</summary>
    public static void KernelNaive(Span<float> p, ReadOnlySpan<float> g, Span<float> buf, Coeffs k)
    {
        for (int i = 0; i < p.Length; i++) ScalarStep(ref p[i], g[i], ref (k.HasBuffer ? ref buf[i] : ref Unsafe.NullRef<float>()), k);
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
