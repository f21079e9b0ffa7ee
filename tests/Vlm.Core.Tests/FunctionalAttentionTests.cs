using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class FunctionalAttentionTests
{
    [Fact]
    public void AttentionMatchesTorchMath()
    {
        FunctionalRefs.Check("attn_plain", x => F.ScaledDotProductAttention(x("q"), x("k"), x("v")), ["q", "k", "v"]);
        FunctionalRefs.Check("attn_causal", x => F.ScaledDotProductAttention(x("q"), x("k"), x("v"), causal: true, scale: 0.3f), ["q", "k", "v"]);
        FunctionalRefs.Check("attn_boolmask", x => F.ScaledDotProductAttention(x("q"), x("k"), x("v"), x("m")), ["q", "k", "v"]);
        FunctionalRefs.Check("attn_floatmask", x => F.ScaledDotProductAttention(x("q"), x("k"), x("v"), x("mask")), ["q", "k", "v"]);
    }

    [Fact]
    public void HfExtendedMaskGivesUniformRowsWhereEveryKeyIsMasked()
    {
        FunctionalRefs.Check("attn_hfmask", x => F.ScaledDotProductAttention(x("q"), x("k"), x("v"), x("mask")), ["q", "k", "v"]);
        var (o, p) = F.ScaledDotProductAttentionWithProbs(FunctionalRefs.Get("attn_hfmask.q"), FunctionalRefs.Get("attn_hfmask.k"),
            FunctionalRefs.Get("attn_hfmask.v"), FunctionalRefs.Get("attn_hfmask.mask"));
        TensorAssert.Close(FunctionalRefs.Get("attn_hfmask.probs"), p, 1e-6f, 1e-5f);
        TensorAssert.Close(FunctionalRefs.Get("attn_hfmask.out"), o, 1e-5f, 1e-4f);
        Assert.All(p.Select(0, 1).ToArray(), v => Assert.Equal(1f / 7, v, 6));
        var (_, p2) = F.ScaledDotProductAttentionWithProbs(FunctionalRefs.Get("attn_plain.q"), FunctionalRefs.Get("attn_plain.k"), FunctionalRefs.Get("attn_plain.v"));
        TensorAssert.Close(FunctionalRefs.Get("attn_plain.probs"), p2, 1e-6f, 1e-5f);
    }

    [Fact]
    public void FullyMaskedBooleanRowIsNaNLikeTorch()
    {
        var rng = new Rng(1);
        var q = Tensor.Randn([1, 1, 2, 4], rng); var k = Tensor.Randn([1, 1, 3, 4], rng); var v = Tensor.Randn([1, 1, 3, 4], rng);
        var m = Tensor.FromArray(new[] { true, false, true, false, false, false }, 2, 3);
        var o = F.ScaledDotProductAttention(q, k, v, m).ToArray();
        Assert.All(o.Take(4), x => Assert.False(float.IsNaN(x)));
        Assert.All(o.Skip(4), x => Assert.True(float.IsNaN(x)));
    }

    [Fact]
    public void TransposedViewsAreReadInPlaceAndGiveTheSameResult()
    {
        var rng = new Rng(2);
        // (B, T, H, D) projections viewed as (B, H, T, D), as every HF attention does.
        var q = Tensor.Randn([2, 5, 3, 4], rng).Transpose(1, 2);
        var k = Tensor.Randn([2, 6, 3, 4], rng).Transpose(1, 2);
        var v = Tensor.Randn([2, 6, 3, 4], rng).Transpose(1, 2);
        var mask = Tensor.Randn([2, 1, 1, 6], rng);
        var a = F.ScaledDotProductAttention(q, k, v, mask);
        var b = F.ScaledDotProductAttention(q.Contiguous(), k.Contiguous(), v.Contiguous(), mask);
        TensorAssert.Close(b, a, 0, 0);
        // Stored heads-last, so merging heads back is a view.
        Assert.True(a.Transpose(1, 2).IsContiguous);
        // And against the composed ops.
        var s = q.MatMul(k.T).Mul(0.5f).Add(mask);
        TensorAssert.Close(F.Softmax(s, -1).MatMul(v), a, 1e-5f, 1e-5f);
    }

    [Fact]
    public void AttentionGradientsWithBroadcastMasksCausalAndViews()
    {
        var rng = new Rng(3);
        var mask = Tensor.Randn([2, 1, 1, 4], rng);
        GradCheck.Check(t => F.ScaledDotProductAttention(t[0], t[1], t[2], mask),
            [Tensor.Randn([2, 2, 3, 5], rng), Tensor.Randn([2, 2, 4, 5], rng), Tensor.Randn([2, 2, 4, 3], rng)]);
        GradCheck.Check(t => F.ScaledDotProductAttention(t[0].Transpose(1, 2), t[1].Transpose(1, 2), t[2].Transpose(1, 2), causal: true),
            [Tensor.Randn([1, 4, 2, 3], rng), Tensor.Randn([1, 4, 2, 3], rng), Tensor.Randn([1, 4, 2, 3], rng)]);
        var bmask = Tensor.FromArray(new[] { true, true, false, true, false, true }, 2, 3);
        GradCheck.Check(t => F.ScaledDotProductAttention(t[0], t[1], t[2], bmask, scale: 0.7f),
            [Tensor.Randn([1, 2, 2, 3], rng), Tensor.Randn([1, 2, 3, 3], rng), Tensor.Randn([1, 2, 3, 2], rng)]);
    }

    [Fact]
    public void LearnedAdditiveBiasGetsItsGradient()
    {
        var rng = new Rng(6);
        // A relative-position bias (H, Tq, Tk) shared over the batch, as BEiT adds to the scores.
        GradCheck.Check(t => F.ScaledDotProductAttention(t[0], t[1], t[2], t[3]),
            [Tensor.Randn([2, 2, 3, 4], rng), Tensor.Randn([2, 2, 4, 4], rng), Tensor.Randn([2, 2, 4, 3], rng), Tensor.Randn([2, 3, 4], rng)]);
        // Only the bias requires grad.
        var q = Tensor.Randn([1, 2, 3, 4], rng); var k = Tensor.Randn([1, 2, 3, 4], rng); var v = Tensor.Randn([1, 2, 3, 4], rng);
        GradCheck.Check(t => F.ScaledDotProductAttention(q.Detach(), k.Detach(), v.Detach(), t[0], causal: true), [Tensor.Randn([1, 2, 1, 3], rng)]);
    }

    [Fact]
    public void HfStyleSplitAndMergeOfHeadsDifferentiates()
    {
        var rng = new Rng(5);
        var mask = Tensor.FromArray(new float[] { 0, 0, 0, -1e9f, 0, -1e9f, 0, 0 }, 2, 1, 1, 4);
        // x (B, T, C) → (B, H, T, D) views → attention → (B, T, C), as BERT-style self-attention does.
        Tensor Block(Tensor x)
        {
            var h = x.Reshape(2, 4, 3, 2).Transpose(1, 2);
            var o = F.ScaledDotProductAttention(h, h.Mul(0.5f), h.Add(1f), mask);
            return o.Transpose(1, 2).Reshape(2, 4, 6);
        }
        GradCheck.Check(t => Block(t[0]), [Tensor.Randn([2, 4, 6], rng)]);
    }

    [Fact]
    public void AttentionDropoutIsSeededAndDifferentiable()
    {
        var rng = new Rng(4);
        var q = Tensor.Randn([1, 2, 3, 4], rng); var k = Tensor.Randn([1, 2, 5, 4], rng); var v = Tensor.Randn([1, 2, 5, 4], rng);
        var (o1, p1) = F.ScaledDotProductAttentionWithProbs(q, k, v, dropoutP: 0.3f, rng: new Rng(11));
        var (o2, p2) = F.ScaledDotProductAttentionWithProbs(q, k, v, dropoutP: 0.3f, rng: new Rng(11));
        TensorAssert.Close(o1, o2, 0, 0);
        Assert.Contains(0f, p1.ToArray());
        // Returned probabilities are post-dropout and give the output exactly through a plain matmul.
        TensorAssert.Close(p1.MatMul(v), o1, 1e-5f, 1e-5f);
        GradCheck.Check(t => F.ScaledDotProductAttention(t[0], t[1], t[2], dropoutP: 0.3f, rng: new Rng(12)),
            [Tensor.Randn([1, 2, 3, 4], rng), Tensor.Randn([1, 2, 5, 4], rng), Tensor.Randn([1, 2, 5, 4], rng)]);
        Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(q, k, v, dropoutP: 0.1f));
    }

    [Fact]
    public void BadShapesAreRejectedWithClearErrors()
    {
        var q = Tensor.Zeros(1, 2, 3, 4);
        Assert.Contains("mismatch", Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(q, Tensor.Zeros(1, 2, 3, 5), Tensor.Zeros(1, 2, 3, 4))).Message);
        Assert.Contains("cannot be broadcast", Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(q, q, q, Tensor.Zeros(2, 1, 1, 3))).Message);
        Assert.Throws<ArgumentException>(() => F.ScaledDotProductAttention(Tensor.Zeros(2, 3, 4), q, q));
    }
}

/// <summary>The blocked inference forward of F.ScaledDotProductAttention (taken when nothing is recorded and no
/// probabilities or dropout are asked for) against the per-head reference path it replaced.</summary>
public class AttentionBlockedForwardTests
{
    private static Tensor Reference(Func<Tensor> f)
    {
        F.ForceReferenceAttention = true;
        try { return f(); }
        finally { F.ForceReferenceAttention = false; }
    }

    private static void Same(Func<Tensor> f, string what)
    {
        using var _ = Tensor.NoGrad();
        var fast = f();
        var slow = Reference(f);
        TensorAssert.Close(slow, fast, 2e-6f, 2e-5f, what);
    }

    public static TheoryData<int, int, int, int, int, int> Shapes() => new()
    {
        { 1, 1, 1, 1, 1, 1 },      // one of everything
        { 1, 1, 50, 13, 8, 5 },    // one head: rows split into blocks over the cores
        { 1, 3, 7, 9, 3, 4 },      // fewer heads than 2·cores, odd sizes
        { 2, 12, 25, 50, 64, 64 }, // BridgeTower cross shapes, small
        { 1, 12, 65, 65, 64, 64 },
        { 3, 2, 17, 1, 5, 7 },     // a single key
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesReferenceWithMasksCausalAndViews(int B, int H, int Tq, int Tk, int D, int Dv)
    {
        var rng = new Rng((ulong)(B * 1000 + H * 100 + Tq * 10 + Tk));
        // Heads-last storage read as (B, H, T, D) views, as the projections' outputs are.
        var q = Tensor.Randn([B, Tq, H, D], rng).Transpose(1, 2);
        var k = Tensor.Randn([B, Tk, H, D], rng).Transpose(1, 2);
        var v = Tensor.Randn([B, Tk, H, Dv], rng).Transpose(1, 2);
        Same(() => F.ScaledDotProductAttention(q, k, v), "plain");
        Same(() => F.ScaledDotProductAttention(q.Contiguous(), k.Contiguous(), v.Contiguous(), scale: 0.37f), "contiguous, scale");
        Same(() => F.ScaledDotProductAttention(q, k, v, causal: true), "causal");
        // HF extended padding mask (B, 1, 1, Tk): 0 keep, large negative drop; the last key of batch 0 dropped.
        var pad = new float[B * Tk];
        if (Tk > 1) pad[Tk - 1] = -3.4028235e38f;
        Same(() => F.ScaledDotProductAttention(q, k, v, Tensor.FromArray(pad, B, 1, 1, Tk)), "hf padding mask");
        // A full float bias (H, Tq, Tk) broadcast over the batch, and one read through a transposed view (stride ≠ 1).
        var bias = Tensor.Randn([H, Tq, Tk], rng);
        var stridedBias = Tensor.Randn([H, Tk, Tq], rng).Transpose(1, 2);
        Same(() => F.ScaledDotProductAttention(q, k, v, bias), "float bias");
        Same(() => F.ScaledDotProductAttention(q, k, v, stridedBias, causal: true), "strided bias, causal");
        // Boolean mask with some fully masked rows (NaN rows, as torch gives).
        var bm = new bool[Tq * Tk];
        for (int i = 0; i < bm.Length; i++) bm[i] = (i * 7 + 3) % 5 != 0;
        for (int j = 0; j < Tk; j++) bm[j] = false;
        Same(() => F.ScaledDotProductAttention(q, k, v, Tensor.FromArray(bm, Tq, Tk)), "bool mask");
    }

    [Fact]
    public void EmptyQueriesOrKeysMatchTheReference()
    {
        var rng = new Rng(8);
        var q0 = Tensor.Zeros(1, 2, 0, 4); var k3 = Tensor.Randn([1, 2, 3, 4], rng); var v3 = Tensor.Randn([1, 2, 3, 4], rng);
        using (Tensor.NoGrad())
        {
            Assert.Equal([1, 2, 0, 4], F.ScaledDotProductAttention(q0, k3, v3).ShapeArray());
            F.ForceReferenceAttention = true;
            try { Assert.Equal([1, 2, 0, 4], F.ScaledDotProductAttention(q0, k3, v3).ShapeArray()); }
            finally { F.ForceReferenceAttention = false; }
        }
        var q = Tensor.Randn([1, 2, 3, 4], rng); var k = Tensor.Zeros(1, 2, 0, 4); var v = Tensor.Zeros(1, 2, 0, 5);
        Same(() => F.ScaledDotProductAttention(q, k, v), "no keys");
        Assert.All(F.ScaledDotProductAttention(q, k, v).ToArray(), x => Assert.Equal(0f, x));
        Assert.Equal([1, 2, 3, 0], F.ScaledDotProductAttentionWithProbs(q, k, v).Probs.ShapeArray());
    }

    [Fact]
    public void FullyMaskedRowsAreNaNAndOthersAreNot()
    {
        using var _ = Tensor.NoGrad();
        var rng = new Rng(9);
        var q = Tensor.Randn([1, 2, 40, 8], rng); var k = Tensor.Randn([1, 2, 30, 8], rng); var v = Tensor.Randn([1, 2, 30, 8], rng);
        var m = new bool[40 * 30];
        for (int i = 0; i < m.Length; i++) m[i] = i / 30 != 11;   // query row 11 sees nothing
        var o = F.ScaledDotProductAttention(q, k, v, Tensor.FromArray(m, 40, 30));
        for (int h = 0; h < 2; h++)
            for (int r = 0; r < 40; r++)
                Assert.Equal(r == 11, float.IsNaN(o[0, h, r, 3]));
    }

    [Fact]
    public void RecordingAndProbabilitiesGiveTheSameBitsAsTheBlockedForward()
    {
        // With grad recorded (or probabilities asked for) the op keeps P for the backward, per whole head; the output
        // is still computed with the blocked forward's arithmetic, so it is bit for bit the same.
        var rng = new Rng(4);
        var q = Tensor.Randn([2, 3, 11, 6], rng).RequireGrad(); var k = Tensor.Randn([2, 3, 9, 6], rng); var v = Tensor.Randn([2, 3, 9, 5], rng);
        var mask = Tensor.Randn([2, 1, 1, 9], rng);
        var withGrad = F.ScaledDotProductAttention(q, k, v, mask);
        Assert.True(withGrad.RequiresGrad);
        Tensor fast;
        using (Tensor.NoGrad()) fast = F.ScaledDotProductAttention(q, k, v, mask);
        TensorAssert.Close(withGrad.Detach(), fast, 0f, 0f);
        var (o, p) = F.ScaledDotProductAttentionWithProbs(q.Detach(), k, v, mask);
        TensorAssert.Close(fast, o, 0f, 0f);
        // One head of 40 rows: the blocked forward splits its rows over the cores, the probabilities path does not.
        var q1 = Tensor.Randn([1, 1, 40, 6], rng); var k1 = Tensor.Randn([1, 1, 33, 6], rng); var v1 = Tensor.Randn([1, 1, 33, 6], rng);
        Tensor fast1;
        using (Tensor.NoGrad()) fast1 = F.ScaledDotProductAttention(q1, k1, v1, causal: true);
        TensorAssert.Close(fast1, F.ScaledDotProductAttentionWithProbs(q1, k1, v1, causal: true).Output, 0f, 0f);
        Assert.Equal([2, 3, 11, 9], p.ShapeArray());
    }
}
