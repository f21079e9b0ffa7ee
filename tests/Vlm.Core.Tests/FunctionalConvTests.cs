using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class FunctionalConvTests
{
    [Fact]
    public void Conv2dMatchesTorchWithStridePaddingAndPatches()
    {
        FunctionalRefs.Check("conv_s2p1", x => F.Conv2d(x("x"), x("w"), x("b"), stride: 2, padding: 1), ["x", "w", "b"], atol: 2e-5f);
        FunctionalRefs.Check("conv_s1p0", x => F.Conv2d(x("x"), x("w")), ["x", "w"], atol: 2e-5f);
        FunctionalRefs.Check("conv_rect", x => F.Conv2d(x("x"), x("w"), x("b"), (1, 2), (2, 1)), ["x", "w", "b"], atol: 2e-5f);
        FunctionalRefs.Check("conv_patch", x => F.Conv2d(x("x"), x("w"), x("b"), stride: 4), ["x", "w", "b"], atol: 2e-5f);
        // im2col in two blocks of output positions (K = 2048: 512 positions per block, 529 in all).
        FunctionalRefs.Check("conv_blocks", x => F.Conv2d(x("x"), x("w"), x("b"), stride: 1, padding: 1), ["x", "w", "b"], atol: 5e-5f);
    }

    [Fact]
    public void Conv2dMatchesADirectLoop()
    {
        var rng = new Rng(1);
        var x = Tensor.Randn([2, 2, 5, 6], rng); var w = Tensor.Randn([3, 2, 3, 2], rng); var b = Tensor.Randn([3], rng);
        var y = F.Conv2d(x, w, b, (2, 1), (1, 0));
        int Ho = (5 + 2 - 3) / 2 + 1, Wo = (6 - 2) / 1 + 1;
        Assert.Equal(new[] { 2, 3, Ho, Wo }, y.ShapeArray());
        for (int n = 0; n < 2; n++)
            for (int o = 0; o < 3; o++)
                for (int oy = 0; oy < Ho; oy++)
                    for (int ox = 0; ox < Wo; ox++)
                    {
                        float s = b[o];
                        for (int c = 0; c < 2; c++)
                            for (int ki = 0; ki < 3; ki++)
                                for (int kj = 0; kj < 2; kj++)
                                {
                                    int iy = oy * 2 - 1 + ki, ix = ox + kj;
                                    if (iy >= 0 && iy < 5) s += x[n, c, iy, ix] * w[o, c, ki, kj];
                                }
                        Assert.Equal(s, y[n, o, oy, ox], 4);
                    }
    }

    [Fact]
    public void Conv2dGradientsOnNonContiguousInput()
    {
        var rng = new Rng(2);
        GradCheck.Check(t => F.Conv2d(t[0].Transpose(2, 3), t[1], t[2], stride: 2, padding: 1),
            [Tensor.Randn([1, 2, 5, 4], rng), Tensor.Randn([2, 2, 3, 3], rng), Tensor.Randn([2], rng)]);
        GradCheck.Check(t => F.Conv2d(t[0], t[1], null, stride: 2),
            [Tensor.Randn([3, 1, 4, 5], rng), Tensor.Randn([2, 1, 2, 2], rng)]);
    }

    [Fact]
    public void Conv2dRejectsBadShapes()
    {
        Assert.Contains("input channels", Assert.Throws<ArgumentException>(() => F.Conv2d(Tensor.Zeros(1, 3, 8, 8), Tensor.Zeros(4, 2, 3, 3))).Message);
        Assert.Contains("larger", Assert.Throws<ArgumentException>(() => F.Conv2d(Tensor.Zeros(1, 1, 2, 2), Tensor.Zeros(1, 1, 3, 3))).Message);
        Assert.Throws<ArgumentException>(() => F.Conv2d(Tensor.Zeros(1, 1, 4, 4), Tensor.Zeros(1, 1, 3, 3), Tensor.Zeros(2)));
    }
}

public class FunctionalInterpolateTests
{
    [Theory]
    [InlineData("bicubic_up", 8, 9, false)]
    [InlineData("bicubic_down", 3, 4, false)]
    [InlineData("bicubic_up_ac", 8, 9, true)]
    [InlineData("bicubic_same", 5, 6, false)]
    public void BicubicMatchesTorch(string name, int h, int w, bool ac)
        => FunctionalRefs.Check(name, x => F.InterpolateBicubic(x("x"), h, w, ac), ["x"]);

    [Theory]
    [InlineData("bilinear_up", 8, 9, false)]
    [InlineData("bilinear_down", 3, 4, false)]
    [InlineData("bilinear_up_ac", 8, 9, true)]
    public void BilinearMatchesTorch(string name, int h, int w, bool ac)
        => FunctionalRefs.Check(name, x => F.InterpolateBilinear(x("x"), h, w, ac), ["x"]);

    [Fact]
    public void ScaleFactorCallsMatchTorch()
    {
        // F.interpolate(x, scale_factor=(1.7, 1.3)): size floor(5·1.7) × floor(6·1.3), coordinates mapped with 1/scale.
        FunctionalRefs.Check("bicubic_scale", x => F.Interpolate(x("x"), 8, 7, InterpolateMode.Bicubic, false, 1.7, 1.3), ["x"]);
        FunctionalRefs.Check("bilinear_scale", x => F.Interpolate(x("x"), 3, 9, InterpolateMode.Bilinear, false, 0.6, 1.5), ["x"]);
    }

    [Fact]
    public void InterpolationGradientsAndErrors()
    {
        var rng = new Rng(3);
        GradCheck.Check(t => F.InterpolateBicubic(t[0].Transpose(2, 3), 5, 3), [Tensor.Randn([1, 2, 4, 3], rng)]);
        GradCheck.Check(t => F.InterpolateBilinear(t[0], 2, 7, alignCorners: true), [Tensor.Randn([2, 1, 3, 4], rng)]);
        Assert.Throws<ArgumentException>(() => F.InterpolateBicubic(Tensor.Zeros(2, 3, 4), 5, 5));
        Assert.Throws<ArgumentException>(() => F.InterpolateBicubic(Tensor.Zeros(1, 1, 3, 4), 0, 5));
        // A constant image stays constant (weights sum to 1).
        var c = F.InterpolateBicubic(Tensor.Full([1, 1, 3, 3], 2.5f), 7, 5).ToArray();
        Assert.All(c, v => Assert.Equal(2.5f, v, 5));
    }

    /// <summary>Weight and bias gradients summed over a batch are bit-identical from run to run (fixed chunks summed
    /// in order), so seeded training with a patch embedding is reproducible; and they equal the per-sample sum.</summary>
    [Fact]
    public void Conv2dBatchGradientsAreDeterministic()
    {
        var rng = new Rng(3);
        var x = Tensor.Randn([9, 3, 16, 16], rng);
        var w = Tensor.Randn([8, 3, 4, 4], rng);
        var b = Tensor.Randn([8], rng);
        var go = Tensor.Randn([9, 8, 4, 4], rng);
        (float[] dw, float[] db) Grads(Tensor input)
        {
            var wl = w.Clone().RequireGrad(); var bl = b.Clone().RequireGrad();
            F.Conv2d(input, wl, bl, stride: 4).Backward(go.Narrow(0, 0, input.Size(0)).Contiguous());
            return (wl.Grad!.ToArray(), bl.Grad!.ToArray());
        }
        var first = Grads(x);
        for (int r = 0; r < 20; r++)
        {
            var again = Grads(x);
            Assert.Equal(first.dw, again.dw);
            Assert.Equal(first.db, again.db);
        }
        var sum = new float[first.dw.Length];
        for (int n = 0; n < 9; n++)
        {
            var wl = w.Clone().RequireGrad();
            F.Conv2d(x.Narrow(0, n, 1).Contiguous(), wl, b, stride: 4).Backward(go.Narrow(0, n, 1).Contiguous());
            var g = wl.Grad!.ToArray();
            for (int i = 0; i < sum.Length; i++) sum[i] += g[i];
        }
        TensorAssert.Close(sum, first.dw, 1e-4f, 1e-5f, "dW vs per-sample sum");
    }
}
