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
        // One GEMM over the flattened leading dims with the bias added in its epilogue (F.Linear).
        return F.Linear(x, Weight, Bias);
    }

    /// <summary>act(Linear(x)) with the activation fused into the GEMM epilogue in no-grad inference (see
    /// <see cref="Activations.Epilogue"/> for which config names have one).</summary>
    public Tensor Forward(Tensor x, Vlm.Core.Kernels.GemmEpilogue activation)
    {
        if (x.Rank == 0 || x.Size(-1) != InFeatures)
            throw new ArgumentException($"Linear {Weight.Name}: input {x.ShapeString} does not end in {InFeatures}");
        return F.Linear(x, Weight, Bias, activation);
    }

    /// <summary>activation(Linear(x)): in the GEMM epilogue when <paramref name="fused"/> names one (see
    /// <see cref="Activations.Epilogue"/>), else as its own op, the pre-activation released in no-grad.</summary>
    public Tensor Forward(Tensor x, Func<Tensor, Tensor> activation, Vlm.Core.Kernels.GemmEpilogue? fused)
    {
        if (fused is { } epilogue) return Forward(x, epilogue);
        var pre = Forward(x);
        var y = activation(pre);
        Intermediates.Free(pre, keep: y);
        return y;
    }

    /// <summary>gelu(Linear(x)) (exact erf GELU), fused into the GEMM epilogue in no-grad inference.</summary>
    public Tensor ForwardGelu(Tensor x)
    {
        if (x.Rank == 0 || x.Size(-1) != InFeatures)
            throw new ArgumentException($"Linear {Weight.Name}: input {x.ShapeString} does not end in {InFeatures}");
        return F.Linear(x, Weight, Bias, gelu: true);
    }
}
