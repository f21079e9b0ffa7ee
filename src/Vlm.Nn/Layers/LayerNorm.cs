using Vlm.Core;

namespace Vlm.Nn;

/// <summary>torch.nn.LayerNorm over the trailing <see cref="NormalizedShape"/> dims: parameters "weight" (ones) and "bias" (zeros).</summary>
public sealed class LayerNorm : Module
{
    public int[] NormalizedShape { get; }
    public float Eps { get; }
    public Tensor? Weight { get; }
    public Tensor? Bias { get; }

    public LayerNorm(int dim, VarBuilder vb, float eps = 1e-5f, bool elementwiseAffine = true, bool bias = true)
        : this([dim], vb, eps, elementwiseAffine, bias) { }

    public LayerNorm(int[] normalizedShape, VarBuilder vb, float eps = 1e-5f, bool elementwiseAffine = true, bool bias = true)
    {
        if (normalizedShape.Length == 0 || normalizedShape.Any(d => d <= 0))
            throw new ArgumentException($"LayerNorm {vb.Prefix}: bad normalized shape {ShapeUtil.Format(normalizedShape)}");
        NormalizedShape = (int[])normalizedShape.Clone();
        Eps = eps;
        if (elementwiseAffine)
        {
            Weight = vb.Param("weight", NormalizedShape, Init.Ones);
            if (bias) Bias = vb.Param("bias", NormalizedShape, Init.Zeros);
        }
    }

    public Tensor Forward(Tensor x)
    {
        int n = NormalizedShape.Length;
        if (x.Rank < n || !x.Shape[^n..].SequenceEqual(NormalizedShape))
            throw new ArgumentException($"LayerNorm {Weight?.Name ?? ""}: input {x.ShapeString} does not end in {ShapeUtil.Format(NormalizedShape)}");
        return F.LayerNorm(x, NormalizedShape, Weight, Bias, Eps);
    }
}
