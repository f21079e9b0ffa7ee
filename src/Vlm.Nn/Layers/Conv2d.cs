using Vlm.Core;

namespace Vlm.Nn;

/// <summary>torch.nn.Conv2d (groups = 1, dilation = 1): "weight" (out, in, kh, kw) and optional "bias" (out).</summary>
public sealed class Conv2d : Module
{
    public int InChannels { get; }
    public int OutChannels { get; }
    public (int H, int W) KernelSize { get; }
    public (int H, int W) Stride { get; }
    public (int H, int W) Padding { get; }
    public Tensor Weight { get; } // (out, in, kh, kw)
    public Tensor? Bias { get; }  // (out)

    public Conv2d(int inChannels, int outChannels, int kernelSize, VarBuilder vb, int stride = 1, int padding = 0, bool bias = true,
        Initializer? weightInit = null, Initializer? biasInit = null)
        : this(inChannels, outChannels, (kernelSize, kernelSize), vb, (stride, stride), (padding, padding), bias, weightInit, biasInit) { }

    public Conv2d(int inChannels, int outChannels, (int H, int W) kernelSize, VarBuilder vb, (int H, int W) stride, (int H, int W) padding,
        bool bias = true, Initializer? weightInit = null, Initializer? biasInit = null)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernelSize.H <= 0 || kernelSize.W <= 0 || stride.H <= 0 || stride.W <= 0 || padding.H < 0 || padding.W < 0)
            throw new ArgumentException($"Conv2d {vb.Prefix}: bad configuration in={inChannels} out={outChannels} kernel={kernelSize} stride={stride} padding={padding}");
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        Weight = vb.Param("weight", [outChannels, inChannels, kernelSize.H, kernelSize.W], weightInit ?? Init.KaimingUniformDefault);
        if (bias) Bias = vb.Param("bias", [outChannels], biasInit ?? Init.BiasUniform(inChannels * kernelSize.H * kernelSize.W));
    }

    public Tensor Forward(Tensor x) // (B, C, H, W) -> (B, O, H', W')
    {
        if (x.Rank != 4 || x.Size(1) != InChannels)
            throw new ArgumentException($"Conv2d {Weight.Name}: input {x.ShapeString} is not (B, {InChannels}, H, W)");
        if (x.Size(2) + 2 * Padding.H < KernelSize.H || x.Size(3) + 2 * Padding.W < KernelSize.W)
            throw new ArgumentException($"Conv2d {Weight.Name}: input {x.ShapeString} is smaller than the kernel {KernelSize}");
        return F.Conv2d(x, Weight, Bias, Stride, Padding);
    }
}
