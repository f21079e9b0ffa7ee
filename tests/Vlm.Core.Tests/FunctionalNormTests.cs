using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class FunctionalNormTests
{
    [Fact]
    public void LayerNormMatchesTorch()
    {
        FunctionalRefs.Check("layer_norm", x => F.LayerNorm(x("x"), [48], x("w"), x("b"), 1e-5f), ["x", "w", "b"], atol: 3e-5f);
        FunctionalRefs.Check("layer_norm_plain", x => F.LayerNorm(x("x"), [48], eps: 1e-6f), ["x"], atol: 3e-5f);
        FunctionalRefs.Check("layer_norm_2d", x => F.LayerNorm(x("x"), [3, 5], x("w"), x("b"), 1e-12f), ["x", "w", "b"], atol: 3e-5f);
    }

    [Fact]
    public void LayerNormHandValues()
    {
        // Row (1, 2, 3, 4): mean 2.5, biased variance 1.25.
        var x = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 1, 4);
        var y = F.LayerNorm(x, [4], Tensor.FromArray(new float[] { 1, 2, 1, 1 }, 4), Tensor.FromArray(new float[] { 0, 0, 0, 10 }, 4), 0f);
        float r = 1f / MathF.Sqrt(1.25f);
        TensorAssert.Close(new[] { -1.5f * r, -1f * r, 0.5f * r, 1.5f * r + 10 }, y.ToArray(), 1e-6f);
    }

    [Theory]
    [InlineData(768)]
    [InlineData(45)]
    [InlineData(7)]
    public void FusedLayerNormRowMatchesScalarReference(int n)
    {
        var rng = new Rng((ulong)n);
        var x = Tensor.Randn([n], rng, mean: 30f, std: 0.5f).ToArray(); // |mean| ≫ std: the centred variance matters
        var w = Tensor.Randn([n], rng).ToArray(); var b = Tensor.Randn([n], rng).ToArray();
        foreach (var (ww, bb) in new[] { (w, b), (w, Array.Empty<float>()), (Array.Empty<float>(), b), (Array.Empty<float>(), Array.Empty<float>()) })
        {
            var fast = new float[n]; var slow = new float[n];
            global::Vlm.Core.Kernels.NormKernels.LayerNormRow(x, fast, ww, bb, 1e-5f, out var m1, out var r1);
            global::Vlm.Core.Kernels.NormKernels.LayerNormRowReference(x, slow, ww, bb, 1e-5f, out var m2, out var r2);
            // mean/std = 60: float32 input rounding alone moves x̂ by ~1e-5.
            TensorAssert.Close(slow, fast, 6e-5f, 2e-5f);
            Assert.Equal(m2, m1, 4);
            Assert.Equal(r2, r1, 3);
        }
    }

    [Theory]
    [InlineData(768)]
    [InlineData(45)]
    public void FusedLayerNormBackwardRowMatchesReference(int n)
    {
        var rng = new Rng((ulong)n + 100);
        var x = Tensor.Randn([n], rng, mean: 1f, std: 2f).ToArray(); var g = Tensor.Randn([n], rng).ToArray(); var w = Tensor.Randn([n], rng).ToArray();
        foreach (var ww in new[] { w, Array.Empty<float>() })
        {
            float[] dx1 = new float[n], dx2 = new float[n];
            float[] dw1 = Enumerable.Repeat(0.5f, n).ToArray(), dw2 = Enumerable.Repeat(0.5f, n).ToArray();
            float[] db1 = Enumerable.Repeat(-1f, n).ToArray(), db2 = Enumerable.Repeat(-1f, n).ToArray();
            global::Vlm.Core.Kernels.NormKernels.LayerNormBackwardRow(x, g, ww, 0.9f, 0.45f, dx1, dw1, db1, new float[n]);
            global::Vlm.Core.Kernels.NormKernels.LayerNormBackwardRowReference(x, g, ww, 0.9f, 0.45f, dx2, dw2, db2, new float[n]);
            TensorAssert.Close(dx2, dx1, 1e-5f, 1e-5f, "dx");
            TensorAssert.Close(dw2, dw1, 1e-5f, 1e-5f, "dw");
            TensorAssert.Close(db2, db1, 1e-6f, 1e-6f, "db");
        }
    }

    [Fact]
    public void LayerNormGradientsOnNonContiguousInput()
    {
        var rng = new Rng(5);
        GradCheck.Check(t => F.LayerNorm(t[0].Transpose(0, 1), [6], t[1], t[2]),
            [Tensor.Randn([3, 2, 6], rng), Tensor.Randn([6], rng), Tensor.Randn([6], rng)]);
        GradCheck.Check(t => F.LayerNorm(t[0], [2, 3], t[1]), [Tensor.Randn([4, 2, 3], rng), Tensor.Randn([2, 3], rng)]);
        GradCheck.Check(t => F.LayerNorm(t[0], [5], null, t[1]), [Tensor.Randn([3, 5], rng), Tensor.Randn([5], rng)]);
    }

    [Fact]
    public void LayerNormRejectsMismatchedShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => F.LayerNorm(Tensor.Zeros(2, 4), [3]));
        Assert.Contains("normalized shape", ex.Message);
        Assert.Throws<ArgumentException>(() => F.LayerNorm(Tensor.Zeros(2, 4), [4], Tensor.Zeros(5)));
    }

    [Fact]
    public void NormalizeMatchesTorchIncludingZeroVectors()
    {
        FunctionalRefs.Check("normalize", x => F.Normalize(x("x"), 2f, 1), ["x"]);
        FunctionalRefs.Check("normalize_last", x => F.Normalize(x("x"), dim: -1), ["x"]);
    }

    [Fact]
    public void NormalizeGradients()
    {
        var rng = new Rng(6);
        GradCheck.Check(t => F.Normalize(t[0], 2f, 1), [Tensor.Randn([3, 4, 2], rng)]);
        GradCheck.Check(t => F.Normalize(t[0].T, 2f, -1), [Tensor.Randn([5, 3], rng)]);
        GradCheck.Check(t => F.Normalize(t[0], 3f, 0), [Tensor.Rand([4, 3], rng, 0.5f, 2f)], eps: 1e-3f);
        var x = Tensor.FromArray(new float[] { 3, 4 }, 2);
        TensorAssert.Close(new[] { 0.6f, 0.8f }, F.Normalize(x, 2f, 0).ToArray(), 1e-7f);
        TensorAssert.Close(new[] { 3f / 7, 4f / 7 }, F.Normalize(x, 1f, 0).ToArray(), 1e-6f);
    }

    [Theory]
    [InlineData(768)]
    [InlineData(37)]
    [InlineData(5)]
    public void AddLayerNormMatchesAddThenLayerNorm(int n)
    {
        var rng = new Rng((ulong)n);
        var x = Tensor.Randn([3, 4, n], rng);
        var r = Tensor.Randn([4, 3, n], rng).Transpose(0, 1);    // non-contiguous residual
        var w = Tensor.Randn([n], rng); var b = Tensor.Randn([n], rng);
        using (Tensor.NoGrad())
        {
            var s = x.Add(r);
            var expect = F.LayerNorm(s, [n], w, b, 1e-6f);
            TensorAssert.Close(expect, F.AddLayerNorm(x, r, [n], w, b, 1e-6f), 1e-6f, 1e-5f);
            var (sum, normed) = F.AddLayerNormWithSum(x, r, [n], w, b, 1e-6f);
            TensorAssert.Close(s, sum, 0f, 0f);
            TensorAssert.Close(expect, normed, 1e-6f, 1e-5f);
            TensorAssert.Close(F.LayerNorm(s, [n]), F.AddLayerNorm(x, r, [n]), 1e-6f, 1e-5f);
            // A broadcast residual goes through the composed ops.
            var rb = Tensor.Randn([n], rng);
            TensorAssert.Close(F.LayerNorm(x.Add(rb), [n], w, b), F.AddLayerNorm(x, rb, [n], w, b), 1e-6f, 1e-5f);
            // Normalising over the last two dims.
            TensorAssert.Close(F.LayerNorm(s, [4, n]), F.AddLayerNorm(x, r, [4, n]), 1e-6f, 1e-5f);
        }
    }

    [Fact]
    public void AddLayerNormGradientsAndErrors()
    {
        var rng = new Rng(12);
        GradCheck.Check(t => F.AddLayerNorm(t[0], t[1], [6], t[2], t[3]),
            [Tensor.Randn([2, 3, 6], rng), Tensor.Randn([2, 3, 6], rng), Tensor.Randn([6], rng), Tensor.Randn([6], rng)]);
        GradCheck.Check(t =>
        {
            var (s, y) = F.AddLayerNormWithSum(t[0], t[1].Transpose(0, 1), [5], t[2], t[3]);
            return s.Mul(0.3f).Add(y);
        }, [Tensor.Randn([3, 2, 5], rng), Tensor.Randn([2, 3, 5], rng), Tensor.Randn([5], rng), Tensor.Randn([5], rng)]);
        using (Tensor.NoGrad())
        {
            var ex = Assert.Throws<ArgumentException>(() => F.AddLayerNorm(Tensor.Zeros(2, 4), Tensor.Zeros(2, 4), [5]));
            Assert.Contains("normalized shape", ex.Message);
            ex = Assert.Throws<ArgumentException>(() => F.AddLayerNorm(Tensor.Zeros(2, 4), Tensor.Zeros(2, 4), [4], Tensor.Zeros(3)));
            Assert.Contains("weight", ex.Message);
        }
    }
}
