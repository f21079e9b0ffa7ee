using Vlm.Core;

namespace Vlm.Nn;

/// <summary>torch.nn.Linear: y = x·Wᵀ + b over any number of leading dims. Parameters "weight" (out, in) and "bias" (out).</summary>
public sealed class Linear : Module
{
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight { get; } // (out, in)
    public Tensor? Bias { get; }  // (out)

    /// <param name="weightInit">Default: PyTorch's kaiming_uniform(a=√5); HF models pass Normal(0, initializer_range).</param>
    /// <param name="biasInit">Default: PyTorch's Uniform(±1/√in); HF models pass Zeros.</param>
    public Linear(int inFeatures, int outFeatures, VarBuilder vb, bool bias = true, Initializer? weightInit = null, Initializer? biasInit = null)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentException($"Linear {vb.Prefix}: sizes must be positive, got in={inFeatures}, out={outFeatures}");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = vb.Param("weight", [outFeatures, inFeatures], weightInit ?? Init.KaimingUniformDefault);
        if (bias) Bias = vb.Param("bias", [outFeatures], biasInit ?? Init.BiasUniform(inFeatures));
    }

    public Tensor Forward(Tensor x) // (..., in) -> (..., out)
    {
        if (x.Rank == 0 || x.Size(-1) != InFeatures)
            throw new ArgumentException($"Linear {Weight.Name}: input {x.ShapeString} does not end in {InFeatures}");
        // Flatten leading dims so the product is one GEMM and the weight gradient one GEMM too
        // (a batched product would materialise per-batch weight gradients and sum them).
        var lead = x.ShapeArray()[..^1];
        var x2 = x.Rank == 2 ? x : x.Reshape(-1, InFeatures);
        var y = x2.MatMul(Weight.T);
        if (Bias != null) y = y.Add(Bias);
        return x.Rank == 2 ? y : y.Reshape([.. lead, OutFeatures]);
    }
}
