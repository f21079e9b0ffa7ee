using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class FunctionalLossTests
{
    [Theory]
    [InlineData("mean", Reduction.Mean)]
    [InlineData("sum", Reduction.Sum)]
    [InlineData("none", Reduction.None)]
    public void CrossEntropyMatchesTorchWithIgnoreIndexAndSmoothing(string name, Reduction r)
    {
        FunctionalRefs.Check($"ce_{name}", x => F.CrossEntropy(x("x"), x("t"), reduction: r), ["x"]);
        FunctionalRefs.Check($"ce_ls_{name}", x => F.CrossEntropy(x("x"), x("t"), labelSmoothing: 0.1f, reduction: r), ["x"]);
    }

    [Fact]
    public void CrossEntropyOverExtraDimsAndCustomIgnoreIndex()
    {
        FunctionalRefs.Check("ce_nd", x => F.CrossEntropy(x("x"), x("t"), labelSmoothing: 0.2f), ["x"]);
        FunctionalRefs.Check("ce_ignore7", x => F.CrossEntropy(x("x"), x("t"), ignoreIndex: 2), ["x"]);
    }

    [Fact]
    public void CrossEntropyWithClassWeights()
    {
        FunctionalRefs.Check("ce_weight", x => F.CrossEntropy(x("x"), x("t"), weight: x("w")), ["x"]);
        FunctionalRefs.Check("ce_weight_ls", x => F.CrossEntropy(x("x"), x("t"), labelSmoothing: 0.15f, weight: x("w")), ["x"]);
        FunctionalRefs.Check("ce_weight_ls_none", x => F.CrossEntropy(x("x"), x("t"), labelSmoothing: 0.15f, reduction: Reduction.None, weight: x("w")), ["x"]);
        Assert.Throws<ArgumentException>(() => F.CrossEntropy(Tensor.Zeros(2, 3), Tensor.FromArray(new long[] { 0, 1 }, 2), weight: Tensor.Ones(4)));
    }

    [Fact]
    public void CrossEntropyHandValueAndAllIgnoredIsNaN()
    {
        var logits = Tensor.FromArray(new float[] { 0, 0, MathF.Log(2) }, 1, 3); // p = (1/4, 1/4, 1/2)
        Assert.Equal(MathF.Log(2), F.CrossEntropy(logits, Tensor.FromArray(new long[] { 2 }, 1)).Item(), 6);
        Assert.True(float.IsNaN(F.CrossEntropy(logits, Tensor.FromArray(new long[] { -100 }, 1)).Item()));
        var ex = Assert.Throws<ArgumentException>(() => F.CrossEntropy(logits, Tensor.FromArray(new long[] { 3 }, 1)));
        Assert.Contains("out of range", ex.Message);
        Assert.Throws<ArgumentException>(() => F.CrossEntropy(logits, Tensor.FromArray(new long[] { 0, 1 }, 2)));
    }

    [Fact]
    public void CrossEntropyGradientsOnLanguageModelShapes()
    {
        var rng = new Rng(8);
        var tgt = Tensor.FromArray(new long[] { 1, -100, 4, 0, 2, -100 }, 6);
        // (B, T, V) logits flattened, as a causal LM loss does; logits come in as a transposed view.
        GradCheck.Check(t => F.CrossEntropy(t[0].Transpose(0, 1).Reshape(-1, 5), tgt, labelSmoothing: 0.1f),
            [Tensor.Randn([3, 2, 5], rng)]);
        GradCheck.Check(t => F.CrossEntropy(t[0], Tensor.FromArray(new long[] { 0, 2, 1, 1 }, 2, 2), reduction: Reduction.None),
            [Tensor.Randn([2, 3, 2], rng)]);
    }
}

public class FunctionalElementwiseLossTests
{
    [Theory]
    [InlineData("mean", Reduction.Mean)]
    [InlineData("sum", Reduction.Sum)]
    [InlineData("none", Reduction.None)]
    public void BceWithLogitsMatchesTorch(string name, Reduction r)
        => FunctionalRefs.Check($"bce_{name}", x => F.BinaryCrossEntropyWithLogits(x("x"), x("t"), reduction: r), ["x", "t"]);

    [Fact]
    public void BceWithLogitsWeightsAndStability()
    {
        FunctionalRefs.Check("bce_weighted", x => F.BinaryCrossEntropyWithLogits(x("x"), x("t"), x("w"), posWeight: x("pw")), ["x", "t"]);
        // Huge logits stay finite: ℓ(100, 0) = 100, ℓ(−100, 1) = 100, ℓ(100, 1) ≈ 0.
        var l = F.BinaryCrossEntropyWithLogits(Tensor.FromArray(new float[] { 100, -100, 100 }, 3), Tensor.FromArray(new float[] { 0, 1, 1 }, 3), reduction: Reduction.None).ToArray();
        TensorAssert.Close(new float[] { 100, 100, 0 }, l, 1e-5f);
        var rng = new Rng(1);
        var w = Tensor.Rand([3], rng, 0.5f, 1.5f); var pw = Tensor.Rand([1], rng, 0.5f, 2f);
        GradCheck.Check(t => F.BinaryCrossEntropyWithLogits(t[0].T, t[1], w, Reduction.Sum, pw),
            [Tensor.Randn([3, 2], rng), Tensor.Rand([2, 3], rng)]);
    }

    [Theory]
    [InlineData("batchmean", Reduction.BatchMean)]
    [InlineData("mean", Reduction.Mean)]
    [InlineData("sum", Reduction.Sum)]
    [InlineData("none", Reduction.None)]
    public void KlDivMatchesTorch(string name, Reduction r)
        => FunctionalRefs.Check($"kl_{name}", x => F.KlDiv(x("x"), x("t"), r), ["x", "t"]);

    [Fact]
    public void KlDivLogTargetAndGradients()
    {
        FunctionalRefs.Check("kl_logtarget", x => F.KlDiv(x("x"), x("t"), Reduction.BatchMean, logTarget: true), ["x", "t"]);
        var rng = new Rng(2);
        GradCheck.Check(t => F.KlDiv(F.LogSoftmax(t[0], -1), F.Softmax(t[1], -1), Reduction.BatchMean), [Tensor.Randn([2, 4], rng), Tensor.Randn([2, 4], rng)]);
    }

    [Fact]
    public void MseLossReductions()
    {
        var a = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        var b = Tensor.FromArray(new float[] { 0, 2, 5, 4 }, 2, 2);
        Assert.Equal(1.25f, F.MseLoss(a, b).Item(), 6);
        Assert.Equal(5f, F.MseLoss(a, b, Reduction.Sum).Item(), 6);
        TensorAssert.Close(new float[] { 1, 0, 4, 0 }, F.MseLoss(a, b, Reduction.None).ToArray(), 0);
    }
}
