using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class JoinIndexTests
{
    private static Tensor Seq(params int[] shape) =>
        Tensor.FromArray(Enumerable.Range(0, shape.Aggregate(1, (a, b) => a * b)).Select(i => (float)i).ToArray(), shape);

    [Fact]
    public void CatStackSplitChunk()
    {
        var a = Seq(2, 3); var b = Seq(2, 1).Add(100f);
        var c = Tensor.Cat([a, b], 1);
        Assert.Equal(new[] { 2, 4 }, c.ShapeArray());
        Assert.Equal([0f, 1, 2, 100, 3, 4, 5, 101], c.ToArray());
        Assert.Equal([0f, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], Tensor.Cat([a, a], 0).ToArray());
        var s = Tensor.Stack([a, a.Add(10f)], 1);
        Assert.Equal(new[] { 2, 2, 3 }, s.ShapeArray());
        Assert.Equal([0f, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15], s.ToArray());
        Assert.Equal(new[] { 2, 3, 2 }, Tensor.Stack([a, a], -1).ShapeArray());
        var parts = Seq(7, 2).Split(3, 0);
        Assert.Equal([3, 3, 1], parts.Select(p => p.Size(0)));
        Assert.Equal([12f, 13f], parts[2].ToArray());
        var sz = Seq(2, 6).Split([1, 2, 3], 1);
        Assert.Equal([3f, 4f, 5f, 9f, 10f, 11f], sz[2].ToArray());
        Assert.Equal([2, 2, 1], Seq(5).Chunk(3).Select(p => p.Numel));
        Assert.Equal(3, Seq(0).Chunk(3).Length);
        Assert.Throws<ArgumentException>(() => Tensor.Cat([a, Seq(3, 3)], 1));
        Assert.Throws<ArgumentException>(() => Seq(2, 6).Split([1, 2], 1));
        // ids concatenate too
        var ids = Tensor.Cat([Tensor.FromArray(new long[] { 1, 2 }, 2), Tensor.FromArray(new long[] { 3 }, 1)], 0);
        Assert.Equal([1L, 2L, 3L], ids.ToInt64Array());
        Assert.Equal(DType.Int64, ids.DType);
    }

    [Fact]
    public void IndexSelectEmbeddingGather()
    {
        var x = Seq(3, 4);
        var idx = Tensor.FromArray(new long[] { 2, 0, 2 }, 3);
        Assert.Equal([8f, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11], x.IndexSelect(0, idx).ToArray());
        Assert.Equal([2f, 0, 2, 6, 4, 6, 10, 8, 10], x.IndexSelect(1, idx).ToArray());
        var e = Tensor.Embedding(x, Tensor.FromArray(new int[] { 1, 1, 2, 0 }, 2, 2));
        Assert.Equal(new[] { 2, 2, 4 }, e.ShapeArray());
        Assert.Equal([4f, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3], e.ToArray());
        var ex = Assert.Throws<IndexOutOfRangeException>(() => Tensor.Embedding(x, Tensor.FromArray(new long[] { 0, 3 }, 2)));
        Assert.Contains("id 3", ex.Message);
        Assert.Contains("[0, 3)", ex.Message);
        Assert.Throws<IndexOutOfRangeException>(() => x.IndexSelect(0, Tensor.FromArray(new long[] { -1 }, 1)));
        var g = x.Gather(1, Tensor.FromArray(new long[] { 3, 0, 1, 1 }, 2, 2));
        Assert.Equal([3f, 0, 5, 5], g.ToArray());
        Assert.Equal([8f, 5, 2], x.Gather(0, Tensor.FromArray(new long[] { 2, 1, 0 }, 1, 3)).ToArray());
        var sa = Tensor.Zeros(2, 3).ScatterAdd(1, Tensor.FromArray(new long[] { 0, 0, 2, 1 }, 2, 2), Seq(2, 2).Add(1f));
        Assert.Equal([3f, 0, 0, 0, 4, 3], sa.ToArray());
    }

    [Fact]
    public void MaskedFillWhereCompareLogical()
    {
        var x = Seq(2, 3);
        var mask = Tensor.FromArray(new[] { true, false, true }, 3);
        Assert.Equal([-1f, 1, -1, -1, 4, -1], x.MaskedFill(mask, -1f).ToArray());
        Assert.Equal(new[] { 2, 1, 3 }, Seq(1, 3).MaskedFill(Tensor.FromArray(new[] { true, false }, 2, 1, 1), 0f).ShapeArray());
        // a transposed (non-contiguous) uint8 mask
        var mT = Tensor.FromBytes(new byte[] { 1, 0, 0, 1, 1, 0 }, DType.UInt8, 3, 2).T; // (2, 3): [[1,0,1],[0,1,0]]
        Assert.Equal([-1f, 1, -1, 3, -1, 5], x.MaskedFill(mT, -1f).ToArray());
        Assert.Throws<ArgumentException>(() => x.MaskedFill(x, 0f));
        Assert.Throws<ArgumentException>(() => x.IndexSelect(0, Tensor.FromArray(new float[] { 0 }, 1)));
        var w = Tensor.Where(x.Gt(2f), x, Tensor.Scalar(-5f));
        Assert.Equal([-5f, -5, -5, 3, 4, 5], w.ToArray());
        Assert.Equal(DType.Bool, x.Ge(2f).DType);
        Assert.Equal([0f, 0, 1, 1, 1, 1], x.Ge(2f).ToArray());
        Assert.Equal([1f, 1, 0, 0, 0, 0], x.Lt(2f).ToArray());
        Assert.Equal([1f, 1, 1, 0, 0, 0], x.Le(2f).ToArray());
        Assert.Equal([0f, 0, 1, 0, 0, 0], x.Eq(2f).ToArray());
        Assert.Equal([1f, 1, 0, 1, 1, 1], x.Ne(2f).ToArray());
        Assert.Equal([0f, 0, 0, 1, 1, 1], x.Gt(Tensor.FromArray(new float[] { 2, 2, 2 }, 3)).ToArray());
        var nan = Tensor.FromArray(new float[] { float.NaN }, 1);
        Assert.Equal([0f], nan.Eq(nan).ToArray());
        Assert.Equal([1f], nan.Ne(nan).ToArray());
        var ids = Tensor.FromArray(new long[] { 0, 5, 1, 0 }, 4);
        Assert.Equal([1f, 0, 0, 1], ids.Eq(0f).ToArray());
        Assert.Equal([0f, 1, 1, 0], ids.Ne(0f).LogicalAnd(Tensor.FromArray(new[] { true, true, true, false }, 4)).ToArray());
        Assert.Equal([1f, 0, 0, 1], ids.LogicalNot().ToArray());
        Assert.Equal([1f, 1, 1, 0], ids.LogicalOr(Tensor.FromArray(new[] { true, false, false, false }, 4)).ToArray());
        var longIds = Tensor.Where(ids.Eq(0f), Tensor.FromArray(new long[] { -100 }, 1), ids);
        Assert.Equal([-100L, 5, 1, -100], longIds.ToInt64Array());
        Assert.Equal([1f, 5, 1], Tensor.FromArray(new float[] { 1, 5, -2 }, 3).Maximum(Tensor.Scalar(1f)).ToArray());
    }

    [Fact]
    public void Gradients()
    {
        var rng = new Rng(31);
        Tensor Rn(params int[] s) => Tensor.Randn(s, rng);
        GradCheck.Check(x => Tensor.Cat([x[0], x[1].T, x[2]], 1), [Rn(2, 3), Rn(1, 2), Rn(2, 2)]);
        GradCheck.Check(x => Tensor.Stack([x[0], x[1]], 1), [Rn(2, 3), Rn(2, 3)]);
        GradCheck.Check(x => x[0].Split(2, 1)[1].Mul(x[0].Chunk(2, 1)[0]), [Rn(3, 4)]);
        var idx = Tensor.FromArray(new long[] { 2, 0, 2, 1 }, 4);
        GradCheck.Check(x => x[0].T.IndexSelect(1, idx), [Rn(3, 2)]);
        GradCheck.Check(x => Tensor.Embedding(x[0], Tensor.FromArray(new long[] { 1, 3, 1, 0, 1, 2 }, 2, 3)), [Rn(4, 3)]);
        GradCheck.Check(x => x[0].Gather(1, Tensor.FromArray(new long[] { 2, 2, 0, 1 }, 2, 2)), [Rn(3, 3)]);
        GradCheck.Check(x => x[0].ScatterAdd(0, Tensor.FromArray(new long[] { 1, 0, 1 }, 1, 3), x[1]), [Rn(2, 3), Rn(2, 3)]);
        var mask = Tensor.FromArray(new[] { true, false, false, true }, 4, 1);
        GradCheck.Check(x => x[0].MaskedFill(mask, 3f), [Rn(1, 3)]);
        GradCheck.Check(x => Tensor.Where(mask, x[0], x[1].T), [Rn(4, 3), Rn(3, 1)]);
        GradCheck.Check(x => x[0].Maximum(x[1]), [Rn(2, 3), Rn(3)]);
        GradCheck.Check(x => x[0].Minimum(x[1]), [Rn(2, 3), Rn(2, 1)]);
    }

    [Fact]
    public void SortTopKRepeatTriangles()
    {
        var x = Tensor.FromArray(new float[] { 1, 3, float.NaN, 3, 2 }, 5);
        var (sv, si) = x.Sort(descending: true);
        Assert.Equal([2L, 1, 3, 4, 0], si.ToInt64Array()); // NaN first, ties in index order (torch)
        Assert.Equal([3f, 3, 2, 1], sv.ToArray()[1..]);
        Assert.Equal([0L, 4, 1, 3, 2], x.Argsort().ToInt64Array());
        var (tv, ti) = Tensor.FromArray(new float[] { 1, 3, 3, 2 }, 4).TopK(2);
        Assert.Equal([3f, 3f], tv.ToArray());
        Assert.Equal([1L, 2L], ti.ToInt64Array());
        var m = Seq(2, 3);
        var (kv, ki) = m.TopK(1, dim: 0, largest: false);
        Assert.Equal(new[] { 1, 3 }, kv.ShapeArray());
        Assert.Equal([0f, 1, 2], kv.ToArray());
        Assert.Equal([0L, 0, 0], ki.ToInt64Array());
        Assert.Throws<ArgumentOutOfRangeException>(() => m.TopK(4, 1));

        var rp = Tensor.FromArray(new float[] { 1, 2 }, 2).Repeat(2, 3);
        Assert.Equal(new[] { 2, 6 }, rp.ShapeArray());
        Assert.Equal([1f, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2], rp.ToArray());
        Assert.Equal([0f, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], m.Repeat(1, 2).ToArray());

        var sq = Seq(3, 3).Add(1f);
        Assert.Equal([1f, 0, 0, 4, 5, 0, 7, 8, 9], sq.Tril().ToArray());
        Assert.Equal([1f, 2, 3, 0, 5, 6, 0, 0, 9], sq.Triu().ToArray());
        Assert.Equal([0f, 2, 3, 0, 0, 6, 0, 0, 0], sq.Triu(1).ToArray());
        Assert.Equal([1f, 2, 0, 4, 5, 6, 7, 8, 9], sq.Tril(1).ToArray());
        Assert.Equal([0f, 0, 0, 4, 0, 0, 7, 8, 0], sq.Tril(-1).ToArray());
        // a causal mask from bools, batched
        var causal = Tensor.FromArray(Enumerable.Repeat(true, 8).ToArray(), 2, 2, 2).Tril();
        Assert.Equal([1f, 0, 1, 1, 1, 0, 1, 1], causal.ToArray());
        Assert.Equal(DType.Bool, causal.DType);
    }

    [Fact]
    public void SortTopKRepeatTriangleGradients()
    {
        var rng = new Rng(41);
        var distinct = Tensor.FromArray(new float[] { 0.3f, -1.2f, 2.2f, 0.9f, -0.4f, 1.6f, -2f, 0.1f }, 2, 4);
        GradCheck.Check(x => x[0].TopK(2, 1).Values, [distinct.Clone()]);
        GradCheck.Check(x => x[0].T.Sort(1, descending: true).Values, [distinct.Clone()]);
        GradCheck.Check(x => x[0].Repeat(2, 1, 3), [Tensor.Randn([2, 2], rng)]);
        GradCheck.Check(x => x[0].T.Tril(), [Tensor.Randn([2, 3, 3], rng)]);
        GradCheck.Check(x => x[0].Triu(1), [Tensor.Randn([3, 4], rng)]);
    }

    [Fact]
    public void BadInputsGiveClearErrors()
    {
        var x = Seq(2, 3);
        var ex = Assert.Throws<IndexOutOfRangeException>(() => x.IndexSelect(1, Tensor.FromArray(new long[] { 0, 3 }, 2)));
        Assert.Contains("index 3", ex.Message);
        Assert.Contains("[0, 3)", ex.Message);
        Assert.Throws<IndexOutOfRangeException>(() => Tensor.Embedding(x, Tensor.FromArray(new int[] { -1 }, 1)));
        Assert.Throws<ArgumentException>(() => Tensor.Embedding(Seq(6), Tensor.FromArray(new long[] { 0 }, 1)));
        Assert.Throws<ArgumentException>(() => Tensor.Embedding(x, Tensor.FromArray(new float[] { 0 }, 1)));
        Assert.Throws<IndexOutOfRangeException>(() => x.Gather(1, Tensor.FromArray(new long[] { 0, 5 }, 1, 2)));
        Assert.Throws<ArgumentException>(() => x.Gather(1, Tensor.FromArray(new long[] { 0, 1 }, 2)));       // rank mismatch
        Assert.Throws<ArgumentException>(() => x.Gather(1, Tensor.FromArray(new long[] { 0, 0, 0 }, 3, 1))); // too large in dim 0
        Assert.Throws<ArgumentException>(() => Tensor.Cat(Array.Empty<Tensor>(), 0));
        Assert.Throws<ArgumentException>(() => Tensor.Cat([x, Tensor.FromArray(new long[] { 1, 2, 3 }, 1, 3)], 0)); // dtypes differ
        Assert.Throws<ArgumentException>(() => Tensor.Stack([x, Seq(3, 2)], 0));
        Assert.Throws<ArgumentException>(() => Tensor.Where(x.Gt(1f), x, Tensor.FromArray(new long[] { 1 }, 1)));
        Assert.Throws<ArgumentException>(() => x.Chunk(0));
        Assert.Throws<ArgumentException>(() => x.Repeat(2));
        Assert.Throws<ArgumentException>(() => Seq(3).Tril());
        Assert.Throws<ArgumentException>(() => x.Clamp());
        Assert.Throws<ArgumentException>(() => Seq(2, 0).Max(1));
    }

    [Fact]
    public void IntegerIdsAndNonContiguousInputs()
    {
        var x = Seq(3, 4);
        var xt = x.T; // (4, 3) view
        // int32 indices behave like int64
        Assert.Equal(x.IndexSelect(0, Tensor.FromArray(new long[] { 2, 1 }, 2)).ToArray(), x.IndexSelect(0, Tensor.FromArray(new int[] { 2, 1 }, 2)).ToArray());
        Assert.Equal([2f, 5f], xt.Gather(0, Tensor.FromArray(new int[] { 2, 1 }, 1, 2)).ToArray());
        Assert.Equal([4f, 5, 6, 7, 0, 1, 2, 3], Tensor.Embedding(x, Tensor.FromArray(new int[] { 1, 0 }, 2)).ToArray());
        Assert.Equal([1f, 5, 9, 100, 2, 6, 10, 100], Tensor.Cat([xt.Narrow(0, 1, 2), Tensor.Full([2, 1], 100f)], 1).ToArray());
        Assert.Equal(xt.Contiguous().IndexSelect(1, Tensor.FromArray(new long[] { 2, 0 }, 2)).ToArray(), xt.IndexSelect(1, Tensor.FromArray(new long[] { 2, 0 }, 2)).ToArray());
        var ids = Tensor.FromArray(new long[] { 5, 0, 7 }, 3);
        Assert.True(ids.Any());
        Assert.False(ids.All());
        Assert.Equal(2, ids.CountNonZero());
        Assert.Equal([0f, 1, 0], ids.Eq(Tensor.FromArray(new long[] { 4, 0, 8 }, 3)).ToArray());
        Assert.Equal([1f, 0, 0], ids.Gt(Tensor.FromArray(new int[] { 4, 0, 8 }, 3)).ToArray()); // int64 vs int32
        Assert.Equal([0f, 0, 1], ids.LogicalXor(Tensor.FromArray(new[] { true, false, false }, 3)).ToArray());
        // exact int64 comparison above 2^53
        var big = Tensor.FromArray(new long[] { (1L << 60) + 1 }, 1);
        Assert.Equal([0f], big.Eq(Tensor.FromArray(new long[] { 1L << 60 }, 1)).ToArray());
    }

    [Fact]
    public void EmbeddingGradientAccumulatesRepeatedIdsAndSkipsPadding()
    {
        var w = Seq(3, 2).RequireGrad();
        Tensor.Embedding(w, Tensor.FromArray(new long[] { 1, 1, 2, 0 }, 4), paddingIdx: 0).Sum().Backward();
        Assert.Equal([0f, 0, 2, 2, 1, 1], w.Grad!.ToArray());
    }
}
