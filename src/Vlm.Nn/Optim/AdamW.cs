using System.Numerics;
using System.Runtime.InteropServices;
using Vlm.Core;

namespace Vlm.Nn.Optim;

/// <summary>
/// torch.optim.AdamW (Loshchilov &amp; Hutter 2019, "Decoupled Weight Decay Regularization"), PyTorch 1.13
/// single-tensor semantics: p ← p·(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε). Scalars are computed in double and rounded to float where
/// PyTorch passes them to a float kernel, so results match it to float rounding. amsgrad/maximize are not supported.
/// </summary>
public sealed class AdamW : Optimizer
{
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }

    private sealed class State(int n)
    {
        public long Step;
        public readonly float[] M = new float[n];
        public readonly float[] V = new float[n];
    }

    private readonly Dictionary<string, State> _state = new(StringComparer.Ordinal);

    public AdamW(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
        : base(groups, lr)
    {
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new ArgumentException($"AdamW betas must be in [0, 1), got ({beta1}, {beta2})");
        if (!(eps >= 0)) throw new ArgumentException($"AdamW eps must be ≥ 0, got {eps}");
        Beta1 = beta1; Beta2 = beta2; Eps = eps;
    }

    /// <summary>Steps taken for one parameter (0 before its first update).</summary>
    public long ParamStep(string name) => _state.TryGetValue(name, out var s) ? s.Step : 0;

    protected override void Update(string name, Span<float> p, ReadOnlySpan<float> g, double lr, double weightDecay)
    {
        if (!_state.TryGetValue(name, out var s)) _state[name] = s = new State(p.Length);
        s.Step++;
        var k = Coefficients(s.Step, lr, weightDecay, Beta1, Beta2, Eps);
        unsafe
        {
            fixed (float* pp = p, gp = g, mp = s.M, vp = s.V)
            {
                nint pa = (nint)pp, ga = (nint)gp, ma = (nint)mp, va = (nint)vp;
                Chunked(p.Length, (a, b) => Kernel(new Span<float>((float*)pa + a, b - a), new ReadOnlySpan<float>((float*)ga + a, b - a),
                    new Span<float>((float*)ma + a, b - a), new Span<float>((float*)va + a, b - a), k));
            }
        }
    }

    /// <summary>The float scalars of one step, rounded as PyTorch rounds them.</summary>
    public readonly record struct Coeffs(float Decay, bool ApplyDecay, float B1, float OneMinusB1, float B2, float OneMinusB2,
        float Bc2Sqrt, float Eps, float NegStepSize);

    public static Coeffs Coefficients(long step, double lr, double wd, double beta1, double beta2, double eps)
    {
        double bc1 = 1 - Math.Pow(beta1, step), bc2 = 1 - Math.Pow(beta2, step);
        return new Coeffs((float)(1 - lr * wd), wd != 0, (float)beta1, (float)(1 - beta1), (float)beta2, (float)(1 - beta2),
            (float)Math.Sqrt(bc2), (float)eps, (float)(-(lr / bc1)));
    }

    /// <summary>One update over spans, vectorised. Operation order follows PyTorch's kernels: add-with-alpha is a
    /// fused multiply-add (ATen's vectorised add), addcmul is a + (c·x)·y, addcdiv is a + (c·x)/y.</summary>
    public static void Kernel(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, Coeffs k)
    {
        int n = p.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var pv = MemoryMarshal.Cast<float, Vector<float>>(p);
            var gv = MemoryMarshal.Cast<float, Vector<float>>(g);
            var mv = MemoryMarshal.Cast<float, Vector<float>>(m);
            var vv = MemoryMarshal.Cast<float, Vector<float>>(v);
            var decay = new Vector<float>(k.Decay); var b1 = new Vector<float>(k.B1); var c1 = new Vector<float>(k.OneMinusB1);
            var b2 = new Vector<float>(k.B2); var c2 = new Vector<float>(k.OneMinusB2); var bc2 = new Vector<float>(k.Bc2Sqrt);
            var eps = new Vector<float>(k.Eps); var step = new Vector<float>(k.NegStepSize);
            for (int j = 0; j < pv.Length; j++)
            {
                var pj = k.ApplyDecay ? pv[j] * decay : pv[j];
                var gj = gv[j];
                var mj = Vector.FusedMultiplyAdd(gj, c1, mv[j] * b1);
                var vj = vv[j] * b2 + c2 * gj * gj;
                var denom = Vector.SquareRoot(vj) / bc2 + eps;
                pv[j] = pj + step * mj / denom;
                mv[j] = mj; vv[j] = vj;
            }
            i = pv.Length * Vector<float>.Count;
        }
        for (; i < n; i++) ScalarStep(ref p[i], g[i], ref m[i], ref v[i], k);
    }

    private static void ScalarStep(ref float p, float g, ref float m, ref float v, Coeffs k)
    {
        float pj = k.ApplyDecay ? p * k.Decay : p;
        m = MathF.FusedMultiplyAdd(g, k.OneMinusB1, m * k.B1);
        v = v * k.B2 + k.OneMinusB2 * g * g;
        float denom = MathF.Sqrt(v) / k.Bc2Sqrt + k.Eps;
        p = pj + k.NegStepSize * m / denom;
    }

    /// <summary>Element-at-a-time reference for <see cref="Kernel"/>.</summary>
    public static void KernelNaive(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, Coeffs k)
    {
        for (int i = 0; i < p.Length; i++) ScalarStep(ref p[i], g[i], ref m[i], ref v[i], k);
    }

    protected override IEnumerable<KeyValuePair<string, Tensor>> SaveSlots(string name)
    {
        if (!_state.TryGetValue(name, out var s)) yield break;
        var shape = AllParams.First(kv => kv.Key == name).Value.ShapeArray();
        yield return new("step", Tensor.FromArray(new long[] { s.Step }, 1));
        yield return new("exp_avg", Tensor.FromArray((float[])s.M.Clone(), shape));
        yield return new("exp_avg_sq", Tensor.FromArray((float[])s.V.Clone(), shape));
    }

    protected override string? ValidateSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots)
    {
        if (!slots.TryGetValue("step", out var st) || st.DType != DType.Int64 || st.Numel != 1) return $"state.{name}.step: missing or not one int64";
        var err = CheckSlot(name, param, slots, "exp_avg") ?? CheckSlot(name, param, slots, "exp_avg_sq");
        if (err != null) return err;
        var extra = slots.Keys.Except(["step", "exp_avg", "exp_avg_sq"]).ToList();
        return extra.Count > 0 ? $"state.{name}: unexpected slots {string.Join(", ", extra)}" : null;
    }

    protected override void LoadSlots(string name, Tensor param, IReadOnlyDictionary<string, Tensor> slots)
    {
        var s = new State(param.Numel) { Step = slots["step"].ToInt64Array()[0] };
        CopyOf(slots["exp_avg"]).CopyTo(s.M, 0);
        CopyOf(slots["exp_avg_sq"]).CopyTo(s.V, 0);
        _state[name] = s;
    }

    protected override void ClearState() => _state.Clear();
}
