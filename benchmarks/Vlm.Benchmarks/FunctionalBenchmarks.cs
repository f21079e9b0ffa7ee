using BenchmarkDotNet.Attributes;
using Vlm.Core;

namespace Vlm.Benchmarks;

/// <summary>F.* on ViT-B/16 batch-8 shapes (1576 = 8 × 197 tokens, 12 heads of 64): softmax rows, layer norm,
/// fused attention (vs the same math from composed ops), patch-embedding conv. No-grad forward unless named.
/// `dotnet run -c Release --project benchmarks/Vlm.Benchmarks -- --filter '*Functional*'`.</summary>
[MemoryDiagnoser]
public class FunctionalBenchmarks
{
    private Tensor _scores = null!, _x = null!, _w = null!, _b = null!, _q = null!, _k = null!, _v = null!, _mask = null!,
        _img = null!, _patchW = null!, _gLn = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Rng(0);
        _scores = Tensor.Randn([8 * 12 * 197, 197], rng);
        _x = Tensor.Randn([1576, 768], rng);
        _w = Tensor.Randn([768], rng);
        _b = Tensor.Randn([768], rng);
        _gLn = Tensor.Randn([1576, 768], rng);
        // (B, T, H, D) projections viewed as (B, H, T, D), as the models produce them.
        _q = Tensor.Randn([8, 197, 12, 64], rng).Transpose(1, 2);
        _k = Tensor.Randn([8, 197, 12, 64], rng).Transpose(1, 2);
        _v = Tensor.Randn([8, 197, 12, 64], rng).Transpose(1, 2);
        _mask = Tensor.Zeros(8, 1, 1, 197);
        _img = Tensor.Randn([8, 3, 224, 224], rng);
        _patchW = Tensor.Randn([768, 3, 16, 16], rng);
    }

    [Benchmark]
    public void SoftmaxRows18912x197()
    {
        using var _ = Tensor.NoGrad();
        F.Softmax(_scores, -1).Dispose();
    }

    [Benchmark]
    public void LayerNorm1576x768()
    {
        using var _ = Tensor.NoGrad();
        F.LayerNorm(_x, [768], _w, _b).Dispose();
    }

    [Benchmark]
    public void LayerNorm1576x768ForwardBackward()
    {
        var x = _x.Detach().RequireGrad();
        var y = F.LayerNorm(x, [768], _w, _b);
        y.Backward(_gLn);
    }

    [Benchmark]
    public void Attention8x12x197x64()
    {
        using var _ = Tensor.NoGrad();
        F.ScaledDotProductAttention(_q, _k, _v, _mask).Dispose();
    }

    [Benchmark]
    public void AttentionComposedOps8x12x197x64()
    {
        using var _ = Tensor.NoGrad();
        F.Softmax(_q.MatMul(_k.T).Mul(0.125f).Add(_mask), -1).MatMul(_v).Dispose();
    }

    [Benchmark]
    public void PatchEmbedConv8x3x224()
    {
        using var _ = Tensor.NoGrad();
        F.Conv2d(_img, _patchW, null, stride: 16).Dispose();
    }
}
