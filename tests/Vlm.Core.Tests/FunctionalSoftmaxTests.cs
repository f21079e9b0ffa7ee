using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class FunctionalSoftmaxTests
{
    [Fact]
    public void SoftmaxMatchesTorchOnLastMiddleAndFirstDims()
    {
        FunctionalRefs.Check("softmax_last", x => F.Softmax(x("x"), -1), ["x"]);
        FunctionalRefs.Check("log_softmax_last", x => F.LogSoftmax(x("x"), -1), ["x"], atol: 3e-5f);
        FunctionalRefs.Check("softmax_mid", x => F.Softmax(x("x"), 1), ["x"]);
        FunctionalRefs.Check("log_softmax_first", x => F.LogSoftmax(x("x"), 0), ["x"]);
    }

    [Fact]
    public void SoftmaxHandValuesAndInfinities()
    {
        var x = Tensor.FromArray(new float[] { 1, 2, 3, float.NegativeInfinity, 0, 0 }, 2, 3);
        var e = new[] { MathF.Exp(1), MathF.Exp(2), MathF.Exp(3) };
        float s = e.Sum();
        TensorAssert.Close(new[] { e[0] / s, e[1] / s, e[2] / s, 0f, 0.5f, 0.5f }, F.Softmax(x, 1).ToArray(), 1e-6f);
        var ls = F.LogSoftmax(x, 1).ToArray();
        Assert.Equal(float.NegativeInfinity, ls[3]);
        Assert.Equal(MathF.Log(0.5f), ls[4], 6);
        // A row of all -inf is NaN in torch.
        var allInf = Tensor.Full([1, 3], float.NegativeInfinity);
        Assert.All(F.Softmax(allInf, -1).ToArray(), v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void SoftmaxRowsSumToOneOnNonContiguousInput()
    {
        var rng = new Rng(3);
        var x = Tensor.Randn([4, 5, 6], rng).Transpose(0, 2); // (6, 5, 4) view
        var y = F.Softmax(x, 1);
        var yc = F.Softmax(x.Contiguous(), 1);
        TensorAssert.Close(yc, y, 0, 0);
        var sums = y.Sum(1).ToArray();
        TensorAssert.Close(Enumerable.Repeat(1f, sums.Length).ToArray(), sums, 1e-6f);
    }

    [Fact]
    public void SoftmaxGradients()
    {
        var rng = new Rng(4);
        GradCheck.Check(t => F.Softmax(t[0], -1), [Tensor.Randn([3, 7], rng)]);
        GradCheck.Check(t => F.Softmax(t[0].Transpose(0, 1), 0), [Tensor.Randn([4, 3, 2], rng)]);
        GradCheck.Check(t => F.LogSoftmax(t[0], 1), [Tensor.Randn([2, 5, 3], rng)]);
        GradCheck.Check(t => F.LogSoftmax(t[0], -1), [Tensor.Randn([6, 4], rng)]);
    }

    [Fact]
    public void SoftmaxOfScalarIsOneAndBadDimThrows()
    {
        Assert.Equal(1f, F.Softmax(Tensor.Scalar(3f), 0).Item());
        Assert.Throws<ArgumentOutOfRangeException>(() => F.Softmax(Tensor.Zeros(2, 3), 2));
    }
}
