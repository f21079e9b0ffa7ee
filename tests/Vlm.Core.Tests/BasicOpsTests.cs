using Vlm.Core;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class BasicOpsTests
{
    [Fact]
    public void AddBroadcastsLikeNumPy()
    {
        var a = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var b = Tensor.FromArray(new float[] { 10, 20, 30 }, 3);
        var c = Tensor.FromArray(new float[] { 100, 200 }, 2, 1);
        TensorAssert.Close(new float[] { 11, 22, 33, 14, 25, 36 }, (a + b).ToArray());
        TensorAssert.Close(new float[] { 101, 102, 103, 204, 205, 206 }, (a + c).ToArray());
        Assert.Throws<ArgumentException>(() => a.Add(Tensor.Zeros(2)));
    }

    [Fact]
    public void ViewsShareStorageAndTransposeIsNotContiguous()
    {
        var a = Tensor.FromArray(Enumerable.Range(0, 24).Select(i => (float)i).ToArray(), 2, 3, 4);
        var t = a.Transpose(1, 2);
        Assert.False(t.IsContiguous);
        Assert.Equal(new[] { 2, 4, 3 }, t.ShapeArray());
        Assert.Equal(a[1, 2, 3], t[1, 3, 2]);
        a[1, 2, 3] = -1;
        Assert.Equal(-1, t[1, 3, 2]);
        var n = a.Narrow(2, 1, 2);
        Assert.Equal(a[0, 1, 2], n[0, 1, 1]);
        var c = t.Contiguous();
        Assert.True(c.IsContiguous);
        Assert.Equal(a[0, 1, 3], c[0, 3, 1]);
    }

    [Fact]
    public void MatMulMatchesNaiveOnTransposedAndBatchedViews()
    {
        var rng = new Rng(1);
        var a = Tensor.Randn([2, 3, 5, 4], rng);
        var b = Tensor.Randn([3, 6, 4], rng).Transpose(-1, -2); // (3, 4, 6), a view
        var r = a.MatMul(b);
        Assert.Equal(new[] { 2, 3, 5, 6 }, r.ShapeArray());
        for (int i = 0; i < 2; i++)
            for (int h = 0; h < 3; h++)
                for (int m = 0; m < 5; m++)
                    for (int n = 0; n < 6; n++)
                    {
                        float s = 0;
                        for (int k = 0; k < 4; k++) s += a[i, h, m, k] * b[h, k, n];
                        Assert.Equal(s, r[i, h, m, n], 4);
                    }
    }

    [Fact]
    public void GradientsOfBroadcastArithmetic()
    {
        var rng = new Rng(2);
        GradCheck.Check(x => x[0].Mul(x[1]).Add(x[2]).Div(x[3]),
            [Tensor.Randn([2, 3], rng), Tensor.Randn([3], rng), Tensor.Randn([2, 1], rng), Tensor.Rand([2, 3], rng, 1f, 2f)]);
    }

    [Fact]
    public void GradientsOfMatMulSumAndViews()
    {
        var rng = new Rng(3);
        GradCheck.Check(x => x[0].MatMul(x[1].T).Transpose(0, 1).Sum(1, keepDim: true),
            [Tensor.Randn([2, 4, 3], rng), Tensor.Randn([5, 3], rng)]);
        GradCheck.Check(x => x[0].Narrow(1, 1, 2).Reshape(-1).Unsqueeze(0).Expand(3, -1),
            [Tensor.Randn([2, 4], rng)]);
    }

    [Fact]
    public void GradientAccumulatesAcrossBackwardCalls()
    {
        var w = Tensor.FromArray(new float[] { 1, 2 }, 2).RequireGrad();
        w.Mul(3f).Sum().Backward();
        w.Mul(3f).Sum().Backward();
        TensorAssert.Close(new float[] { 6, 6 }, w.Grad!.ToArray());
    }

    [Fact]
    public void NoGradRecordsNothing()
    {
        var w = Tensor.Ones(3).RequireGrad();
        using (Tensor.NoGrad())
        {
            var y = w.Mul(2f);
            Assert.False(y.RequiresGrad);
            Assert.Null(y.GradFn);
        }
        Assert.NotNull(w.Mul(2f).GradFn);
    }
}
