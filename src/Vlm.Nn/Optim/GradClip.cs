using Vlm.Core;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Vlm.Nn.Optim;

/// <summary>
/// Gradient utilities. Accumulation: gradients already sum across backward calls into each leaf's Grad, so
/// accumulating N micro-batches is: ZeroGrad; N × (loss / N).Backward(); [clip]; Step — or Backward on the raw
/// losses followed by <see cref="ScaleGrads"/>(1/N) (identical up to float rounding).
/// </summary>
public static class GradClip
{
    /// <summary>torch.nn.utils.clip_grad_norm_: the norm over all gradients (as if concatenated) is returned, and every
    /// gradient is multiplied by min(1, maxNorm / (norm + 1e-6)). Parameters without a gradient are ignored.
    /// <paramref name="normType"/> may be any p ≥ 1 or +∞.</summary>
    public static float ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm, double normType = 2.0)
    {
        if (!(normType >= 1)) throw new ArgumentException($"norm type must be ≥ 1 or +inf, got {normType}");
        var grads = parameters.Select(p => p.Grad).Where(g => g != null).Select(g => g!).Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>().ToList();
        if (grads.Count == 0) return 0f;
        // PyTorch: one float norm per tensor, then the norm of those norms.
        var norms = grads.Select(g => Norm(g.Contiguous().Span, normType)).ToArray();
        float total = Norm(norms, normType);
        // Python's `max_norm / t` is t.reciprocal() * max_norm in PyTorch.
        float coef = 1f / (total + 1e-6f) * (float)maxNorm;
        if (coef < 1f)
            using (Tensor.NoGrad())
                foreach (var g in grads)
                {
                    var s = g.Contiguous();
                    if (!ReferenceEquals(s, g)) throw new InvalidOperationException("gradient is not contiguous");
                    TensorPrimitives.Multiply(s.Span, coef, s.Span);
                }
        return total;
    }

    public static float ClipGradNorm(ParameterStore store, double maxNorm, double normType = 2.0) =>
        ClipGradNorm(store.Unique().Select(kv => kv.Value), maxNorm, normType);

    public static float ClipGradNorm(Optimizer optimizer, double maxNorm, double normType = 2.0) =>
        ClipGradNorm(optimizer.Groups.SelectMany(g => g.Params).Select(kv => kv.Value), maxNorm, normType);

    private static float Norm(ReadOnlySpan<float> x, double p)
    {
        if (double.IsPositiveInfinity(p))
        {
            float m = 0;
            foreach (var v in x) m = Math.Max(m, Math.Abs(v));
            return m;
        }
        double s = 0;
        if (p == 2.0) foreach (var v in x) s += (double)v * v;
        else foreach (var v in x) s += Math.Pow(Math.Abs(v), p);
        return (float)(p == 2.0 ? Math.Sqrt(s) : Math.Pow(s, 1.0 / p));
    }

    /// <summary>Multiplies every gradient by <paramref name="factor"/> (averaging accumulated micro-batches).</summary>
    public static void ScaleGrads(IEnumerable<Tensor> parameters, float factor)
    {
        using (Tensor.NoGrad())
            foreach (var g in parameters.Select(p => p.Grad).Where(g => g != null).Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>())
            {
                if (!g.IsContiguous) throw new InvalidOperationException("gradient is not contiguous");
                TensorPrimitives.Multiply(g.Span, factor, g.Span);
            }
    }
}
