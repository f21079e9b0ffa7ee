using Vlm.Core;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>F.Linear (GEMM with fused bias / GELU epilogue and a direct backward) against x·Wᵀ + b composed from
/// MatMul and Add, and finite differences.</summary>
public class FunctionalLinearTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void ForwardMatchesComposite(bool withBias, bool gelu)
    {
        var rng = new Rng(11);
        var x = Tensor.Randn([2, 5, 37], rng);
        var w = Tensor.Randn([300, 37], rng);
        var b = withBias ? Tensor.Randn([300], rng) : null;
        Tensor expected;
        using (Tensor.NoGrad())
        {
            expected = x.MatMul(w.T);
            if (b != null) expected = expected.Add(b);
            if (gelu) expected = expected.Gelu();
            var y = F.Linear(x, w, b, gelu);
            Assert.Equal([2, 5, 300], y.ShapeArray());
            TensorAssert.Close(expected, y, 1e-4f, 1e-4f);
        }
    }

    [Fact]
    public void NonContiguousInputAndWeight()
    {
        var rng = new Rng(12);
        var x = Tensor.Randn([9, 4], rng).T;          // (4, 9) transposed view
        var w = Tensor.Randn([9, 6], rng).T;          // (6, 9) transposed view
        var b = Tensor.Randn([6], rng);
        using (Tensor.NoGrad())
            TensorAssert.Close(x.MatMul(w.T).Add(b), F.Linear(x, w, b), 1e-5f, 1e-5f);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GradientsMatchFiniteDifferences(bool gelu)
    {
        var rng = new Rng(13);
        var x = Tensor.Randn([2, 3, 4], rng);
        var w = Tensor.Randn([5, 4], rng);
        var b = Tensor.Randn([5], rng);
        GradCheck.Check(t => F.Linear(t[0], t[1], t[2], gelu), [x, w, b]);
        GradCheck.Check(t => F.Linear(t[0], t[1], null, gelu), [x, w]);
    }

    [Fact]
    public void GradientsOfTransposedViewInputs()
    {
        var rng = new Rng(14);
        var x = Tensor.Randn([4, 3], rng);
        var w = Tensor.Randn([4, 5], rng);
        GradCheck.Check(t => F.Linear(t[0].T, t[1].T), [x, w]);
    }

    [Fact]
    public void GradientsMatchCompositeOnLargeShapes()
    {
        // Sizes past the GEMM's k and row blocks, compared with the MatMul + Add graph.
        var rng = new Rng(15);
        var x1 = Tensor.Randn([3, 100, 300], rng);
        var w1 = Tensor.Randn([260, 300], rng, std: 0.05f);
        var b1 = Tensor.Randn([260], rng);
        var x2 = x1.Detach(); var w2 = w1.Detach(); var b2 = b1.Detach();
        foreach (var t in new[] { x1, w1, b1, x2, w2, b2 }) t.RequiresGrad = true;
        F.Linear(x1, w1, b1, gelu: true).Square().Sum().Backward();
        x2.MatMul(w2.T).Add(b2).Gelu().Square().Sum().Backward();
        TensorAssert.Close(x2.Grad!, x1.Grad!, 1e-3f, 1e-3f, "dx");
        TensorAssert.Close(w2.Grad!, w1.Grad!, 1e-3f, 1e-3f, "dw");
        TensorAssert.Close(b2.Grad!, b1.Grad!, 1e-3f, 1e-3f, "db");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RecordedGeluNodeMatchesUnfusedGraphExactly(bool withBias)
    {
        // The fused linear_gelu node (GEMM into the pre-activation, one GELU pass; GELU' applied to g before the
        // products) runs the same kernels as Linear(...).Gelu(): values and gradients are bit-identical. Shapes past
        // the GEMM's blocks and not multiples of its tiles; the input is a non-contiguous view.
        var rng = new Rng(16);
        var xBase = Tensor.Randn([301, 2, 67], rng);
        var w1 = Tensor.Randn([130, 67], rng, std: 0.1f);
        var b1 = withBias ? Tensor.Randn([130], rng) : null;
        var gy = Tensor.Randn([2, 301, 130], rng);
        var x1 = xBase.Detach(); var x2 = xBase.Detach();
        var w2 = w1.Detach(); var b2 = b1?.Detach();
        foreach (var t in new[] { x1, w1, b1, x2, w2, b2 }) if (t != null) t.RequiresGrad = true;
        var y1 = F.Linear(x1.Transpose(0, 1), w1, b1, gelu: true);
        var y2 = F.Linear(x2.Transpose(0, 1), w2, b2).Gelu();
        Assert.Equal("linear_gelu", y1.GradFn!.Name);
        Assert.Equal(y2.ToArray(), y1.ToArray());
        y1.Backward(gy);
        y2.Backward(gy);
        Assert.Equal(x2.Grad!.ToArray(), x1.Grad!.ToArray());
        Assert.Equal(w2.Grad!.ToArray(), w1.Grad!.ToArray());
        if (withBias) Assert.Equal(b2!.Grad!.ToArray(), b1!.Grad!.ToArray());
    }

    [Fact]
    public void RecordedGeluGradientsOfViewsMatchFiniteDifferences()
    {
        var rng = new Rng(17);
        var x = Tensor.Randn([3, 2, 5], rng);
        var w = Tensor.Randn([7, 3], rng);
        var b = Tensor.Randn([7], rng);
        GradCheck.Check(t => F.Linear(t[0].Permute(1, 2, 0), t[1].T.T, t[2], gelu: true), [x, w, b]);
        // Only the weight requires grad (frozen input): the node must still produce dW and db alone.
        GradCheck.Check(t => F.Linear(x.Permute(1, 2, 0), t[0], t[1], gelu: true), [w, b]);
    }

    [Fact]
    public void BiasGradientReleasesTheOutputGradient()
    {
        // The bias gradient's column sums must not leave a view holding g (its buffer would never be recycled).
        var g = Tensor.Randn([40, 300], new Rng(18));
        Assert.True(g.OwnsBufferExclusively);
        var s = g.Sum(0);
        Assert.True(g.OwnsBufferExclusively);
        TensorAssert.Close(g.Transpose(0, 1).Contiguous().Sum(1), s, 1e-5f, 1e-5f);
    }

    [Fact]
    public void BadShapesNameTheProblem()
    {
        var x = Tensor.Zeros(2, 3);
        Assert.Contains("in_features=4", Assert.Throws<ArgumentException>(() => F.Linear(x, Tensor.Zeros(5, 4))).Message);
        Assert.Contains("bias", Assert.Throws<ArgumentException>(() => F.Linear(x, Tensor.Zeros(5, 3), Tensor.Zeros(4))).Message);
        Assert.Contains("weight", Assert.Throws<ArgumentException>(() => F.Linear(x, Tensor.Zeros(3))).Message);
    }

    [Fact]
    public void QuickGeluActivationMatchesLinearThenQuickGeluAndDifferentiates()
    {
        var rng = new Rng(21);
        var x = Tensor.Randn([2, 3, 13], rng);
        var w = Tensor.Randn([37, 13], rng); var b = Tensor.Randn([37], rng);
        Tensor fused, composed;
        using (Tensor.NoGrad())
        {
            fused = F.Linear(x, w, b, Vlm.Core.Kernels.GemmEpilogue.QuickGelu);
            composed = F.Linear(x, w, b).QuickGelu();
        }
        TensorAssert.Close(composed, fused, 1e-6f, 1e-5f);
        // Non-contiguous input, no bias.
        var xt = Tensor.Randn([13, 4], rng).T;
        using (Tensor.NoGrad())
            TensorAssert.Close(F.Linear(xt, w).QuickGelu(), F.Linear(xt, w, null, Vlm.Core.Kernels.GemmEpilogue.QuickGelu), 1e-6f, 1e-5f);
        // Recording composes Linear and QuickGelu, so gradients reach x, W and b.
        GradCheck.Check(t => F.Linear(t[0], t[1], t[2], Vlm.Core.Kernels.GemmEpilogue.QuickGelu),
            [Tensor.Randn([3, 5], rng), Tensor.Randn([4, 5], rng), Tensor.Randn([4], rng)]);
        Assert.Throws<ArgumentOutOfRangeException>(() => F.Linear(x, w, b, (Vlm.Core.Kernels.GemmEpilogue)99));
    }
}
