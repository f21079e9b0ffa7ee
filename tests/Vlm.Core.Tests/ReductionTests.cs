using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class ReductionTests
{
    private static readonly Tensor M = Tensor.FromArray(new float[] { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8 }, 3, 4);

    [Fact]
    public void MaxMinWithIndicesPickTheFirstExtreme()
    {
        var (v, i) = M.MaxWithIndices(1);
        Assert.Equal([4f, 9f, 8f], v.ToArray());
        Assert.Equal([2L, 1L, 3L], i.ToInt64Array());
        Assert.Equal(DType.Int64, i.DType);
        var (v0, i0) = M.MinWithIndices(0, keepDim: true);
        Assert.Equal(new[] { 1, 4 }, v0.ShapeArray());
        Assert.Equal([3f, 1f, 2f, 1f], v0.ToArray());
        Assert.Equal([0L, 0L, 1L, 0L], i0.ToInt64Array());
        // ties → first index
        var ties = Tensor.FromArray(new float[] { 1, 7, 7, 2 }, 4);
        Assert.Equal(1L, ties.ArgMax().ToInt64Array()[0]);
        Assert.Equal(0L, ties.ArgMin().ToInt64Array()[0]);
        Assert.Equal([2L, 1L, 3L], M.ArgMax(1).ToInt64Array());
        Assert.Equal([0L, 0L, 1L, 0L], M.ArgMin(0).ToInt64Array());
        Assert.Equal(5L, M.ArgMax().ToInt64Array()[0]);
        Assert.Equal(9f, M.Max().Item());
        Assert.Equal(1f, M.Min().Item());
        Assert.Equal([9f], M.Amax([0, 1]).ToArray());
        Assert.Equal([3f, 1f, 2f, 1f], M.Amin([0]).ToArray());
        Assert.Equal([4f, 9f, 8f], M.T.Max(0).ToArray()); // non-contiguous input
    }

    [Fact]
    public void NaNWinsMaxAndMinLikeTorch()
    {
        var x = Tensor.FromArray(new float[] { 1, float.NaN, 3 }, 3);
        var (v, i) = x.MaxWithIndices(0);
        Assert.True(float.IsNaN(v.Item()));
        Assert.Equal(1L, i.ToInt64Array()[0]);
        Assert.True(float.IsNaN(x.Min().Item()));
        Assert.True(float.IsNaN(x.Amax([0]).Item()));
    }

    [Fact]
    public void VarStdLogSumExpCumsum()
    {
        double[] row = [3, 1, 4, 1];
        double mean = row.Average();
        double ss = row.Sum(v => (v - mean) * (v - mean));
        TensorAssert.Close(new[] { (float)(ss / 3) }, M.Narrow(0, 0, 1).Var(1).ToArray());
        TensorAssert.Close(new[] { (float)(ss / 4) }, M.Narrow(0, 0, 1).Var([1], correction: 0).ToArray());
        TensorAssert.Close(new[] { (float)Math.Sqrt(ss / 3) }, M.Narrow(0, 0, 1).Std(1).ToArray());
        var all = M.ToArray().Select(v => (double)v).ToArray();
        double am = all.Average();
        TensorAssert.Close(new[] { (float)(all.Sum(v => (v - am) * (v - am)) / 11) }, new[] { M.Var().Item() });
        var lse = M.LogSumExp(1).ToArray();
        for (int r = 0; r < 3; r++)
        {
            double s = 0;
            for (int c = 0; c < 4; c++) s += Math.Exp(M[r, c]);
            Assert.Equal(Math.Log(s), lse[r], 5);
        }
        // stable for large values; all −inf gives −inf
        Assert.Equal(1000f + MathF.Log(2f), Tensor.FromArray(new float[] { 1000, 1000 }, 2).LogSumExp(0).Item(), 3);
        Assert.Equal(float.NegativeInfinity, Tensor.Full([3], float.NegativeInfinity).LogSumExp(0).Item());
        Assert.Equal([3f, 4f, 8f, 9f], M.Narrow(0, 0, 1).Cumsum(1).ToArray());
        Assert.Equal([3f, 1f, 4f, 1f, 8f, 10f, 6f, 7f, 13f, 13f, 11f, 15f], M.Cumsum(0).ToArray());
    }

    [Fact]
    public void Gradients()
    {
        var rng = new Rng(21);
        // distinct values so max/min have no ties
        Tensor Distinct(params int[] shape)
        {
            int n = shape.Aggregate(1, (a, b) => a * b);
            var vals = Enumerable.Range(0, n).Select(i => (float)i * 0.37f - 2f).ToArray();
            rng.Shuffle(vals);
            return Tensor.FromArray(vals, shape);
        }
        GradCheck.Check(x => x[0].Max(1), [Distinct(3, 4)]);
        GradCheck.Check(x => x[0].T.Min(0, keepDim: true), [Distinct(3, 4)]);
        GradCheck.Check(x => x[0].Amax([0, 2], keepDim: true), [Distinct(2, 3, 4)]);
        GradCheck.Check(x => x[0].Max(), [Distinct(2, 3)]);
        GradCheck.Check(x => x[0].Var([1], 1, false), [Tensor.Randn([3, 5], rng)]);
        GradCheck.Check(x => x[0].T.Var([0, 1], 0, true), [Tensor.Randn([3, 4], rng)]);
        GradCheck.Check(x => x[0].Std(1), [Tensor.Randn([3, 5], rng)]);
        GradCheck.Check(x => x[0].LogSumExp([1, 2]), [Tensor.Randn([2, 3, 4], rng)]);
        GradCheck.Check(x => x[0].T.LogSumExp(0, keepDim: true), [Tensor.Randn([3, 4], rng)]);
        GradCheck.Check(x => x[0].Cumsum(1), [Tensor.Randn([2, 5, 3], rng)]);
        GradCheck.Check(x => x[0].T.Cumsum(-1), [Tensor.Randn([4, 3], rng)]);
    }

    [Fact]
    public void TiesShareTheGradientOfFullMaxButNotOfMaxOverDim()
    {
        var x = Tensor.FromArray(new float[] { 1, 5, 5 }, 3).RequireGrad();
        x.Max().Backward();
        Assert.Equal([0f, 0.5f, 0.5f], x.Grad!.ToArray());
        var y = Tensor.FromArray(new float[] { 1, 5, 5 }, 3).RequireGrad();
        y.Max(0).Backward();
        Assert.Equal([0f, 1f, 0f], y.Grad!.ToArray());
    }
}
