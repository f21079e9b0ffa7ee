using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn;
using Vlm.TestSupport;

namespace Vlm.Nn.Tests;

[Collection(BufferPoolCollection.Name)]
public class LayerTests
{
    private static VarBuilder Vb(ulong seed = 1) => VarBuilder.Init(new Rng(seed));

    [Fact]
    public void LinearMatchesFormulaOverLeadingDims()
    {
        var rng = new Rng(1);
        var lin = new Linear(4, 3, Vb()["fc"]);
        var x = Tensor.Randn([2, 5, 4], rng);
        var y = lin.Forward(x);
        Assert.Equal(new[] { 2, 5, 3 }, y.ShapeArray());
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 5; t++)
                for (int o = 0; o < 3; o++)
                {
                    double s = lin.Bias![o];
                    for (int i = 0; i < 4; i++) s += x[b, t, i] * lin.Weight[o, i];
                    Assert.Equal(s, y[b, t, o], 5);
                }
        Assert.Equal("fc.weight", lin.Weight.Name);
        Assert.Throws<ArgumentException>(() => lin.Forward(Tensor.Zeros(2, 5)));
    }

    [Fact]
    public void LinearGradients()
    {
        var rng = new Rng(2);
        var lin = new Linear(3, 2, Vb());
        GradCheck.Check(x => lin.Forward(x[0]), [Tensor.Randn([2, 2, 3], rng), lin.Weight, lin.Bias!]);
        var noBias = new Linear(3, 2, Vb(), bias: false);
        Assert.Null(noBias.Bias);
        // Non-contiguous input (a transposed view).
        GradCheck.Check(x => noBias.Forward(x[0].Transpose(0, 1)), [Tensor.Randn([3, 4], rng), noBias.Weight]);
    }

    [Fact]
    public void LayerNormMatchesFormulaAndGradients()
    {
        var rng = new Rng(3);
        var ln = new LayerNorm(6, Vb(), eps: 1e-5f);
        using (Tensor.NoGrad())
        {
            ln.Weight!.CopyFrom(Tensor.Randn([6], rng));
            ln.Bias!.CopyFrom(Tensor.Randn([6], rng));
        }
        var x = Tensor.Randn([2, 3, 6], rng, 1f, 3f);
        var y = ln.Forward(x);
        for (int r = 0; r < 6; r++)
        {
            int b = r / 3, t = r % 3;
            double mean = 0, var = 0;
            for (int i = 0; i < 6; i++) mean += x[b, t, i];
            mean /= 6;
            for (int i = 0; i < 6; i++) var += (x[b, t, i] - mean) * (x[b, t, i] - mean);
            var /= 6; // biased variance, like PyTorch
            for (int i = 0; i < 6; i++)
                Assert.Equal((x[b, t, i] - mean) / Math.Sqrt(var + 1e-5) * ln.Weight[i] + ln.Bias[i], y[b, t, i], 4);
        }
        GradCheck.Check(v => ln.Forward(v[0]), [Tensor.Randn([2, 6], rng), ln.Weight, ln.Bias]);
        Assert.Throws<ArgumentException>(() => ln.Forward(Tensor.Zeros(2, 5)));
    }

    [Fact]
    public void EmbeddingLooksUpRowsAndAccumulatesRepeatedIds()
    {
        var emb = new Embedding(5, 3, Vb(), paddingIdx: 0);
        Assert.All(emb.Weight.ToArray()[..3], v => Assert.Equal(0f, v));
        var ids = Tensor.FromArray(new long[] { 1, 4, 1, 0 }, 2, 2);
        var y = emb.Forward(ids);
        Assert.Equal(new[] { 2, 2, 3 }, y.ShapeArray());
        for (int j = 0; j < 3; j++)
        {
            Assert.Equal(emb.Weight[4, j], y[0, 1, j]);
            Assert.Equal(emb.Weight[1, j], y[1, 0, j]);
        }
        y.Sum().Backward();
        Assert.Equal(2f, emb.Weight.Grad![1, 0]);
        Assert.Equal(1f, emb.Weight.Grad[4, 2]);
        Assert.Equal(0f, emb.Weight.Grad[2, 0]);
        Assert.Equal(0f, emb.Weight.Grad[0, 1]); // padding row: used once, but no gradient
        var ex = Assert.ThrowsAny<Exception>(() => emb.Forward(Tensor.FromArray(new long[] { 5 }, 1)));
        Assert.Contains("5", ex.Message);
        Assert.Throws<ArgumentException>(() => emb.Forward(Tensor.Zeros(2)));
        var rng = new Rng(4);
        GradCheck.Check(v => emb.Forward(Tensor.FromArray(new int[] { 3, 2, 3 }, 3)).Mul(v[1]), [emb.Weight, Tensor.Randn([3, 3], rng)]);
    }

    /// <summary>Direct 7-loop convolution, the reference for Conv2d.</summary>
    private static float[] NaiveConv(Tensor x, Tensor w, Tensor? b, int stride, int pad, out int oh, out int ow)
    {
        int B = x.Size(0), C = x.Size(1), H = x.Size(2), W = x.Size(3), O = w.Size(0), kh = w.Size(2), kw = w.Size(3);
        oh = (H + 2 * pad - kh) / stride + 1; ow = (W + 2 * pad - kw) / stride + 1;
        var r = new float[B * O * oh * ow];
        for (int bi = 0; bi < B; bi++)
            for (int o = 0; o < O; o++)
                for (int y = 0; y < oh; y++)
                    for (int xx = 0; xx < ow; xx++)
                    {
                        double s = b is null ? 0 : b[o];
                        for (int c = 0; c < C; c++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++)
                                {
                                    int iy = y * stride - pad + ky, ix = xx * stride - pad + kx;
                                    if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += x[bi, c, iy, ix] * w[o, c, ky, kx];
                                }
                        r[((bi * O + o) * oh + y) * ow + xx] = (float)s;
                    }
        return r;
    }

    [Fact]
    public void Conv2dMatchesDirectLoopWithStrideAndPadding()
    {
        var rng = new Rng(5);
        var conv = new Conv2d(3, 4, 3, Vb()["patch"], stride: 2, padding: 1);
        var x = Tensor.Randn([2, 3, 7, 6], rng);
        var y = conv.Forward(x);
        var expected = NaiveConv(x, conv.Weight, conv.Bias, 2, 1, out int oh, out int ow);
        Assert.Equal(new[] { 2, 4, oh, ow }, y.ShapeArray());
        TensorAssert.Close(expected, y.ToArray(), 1e-5f, 1e-5f);
        // Patch embedding (kernel = stride, no bias), as in ViT/CLIP.
        var patch = new Conv2d(3, 5, 2, Vb(), stride: 2, bias: false);
        var yp = patch.Forward(x.Narrow(3, 0, 6));
        TensorAssert.Close(NaiveConv(x.Narrow(3, 0, 6).Contiguous(), patch.Weight, null, 2, 0, out _, out _), yp.ToArray(), 1e-5f, 1e-5f);
        Assert.Throws<ArgumentException>(() => conv.Forward(Tensor.Zeros(2, 2, 5, 5)));
    }

    [Fact]
    public void Conv2dGradients()
    {
        var rng = new Rng(6);
        var conv = new Conv2d(2, 3, 2, Vb(), stride: 1, padding: 1);
        GradCheck.Check(v => conv.Forward(v[0]), [Tensor.Randn([1, 2, 3, 4], rng), conv.Weight, conv.Bias!]);
    }

    [Theory]
    [InlineData("gelu")]
    [InlineData("gelu_new")]
    [InlineData("gelu_pytorch_tanh")]
    [InlineData("gelu_fast")]
    [InlineData("quick_gelu")]
    [InlineData("relu")]
    [InlineData("silu")]
    [InlineData("swish")]
    [InlineData("tanh")]
    [InlineData("sigmoid")]
    public void ActivationsMatchTheirFormulas(string name)
    {
        static double Erf(double x)
        {
            // High-order series, independent of the library's implementation.
            double s = 0, term = x;
            for (int n = 0; n < 200; n++) { s += term / (2 * n + 1); term *= -x * x / (n + 1); }
            return 2 / Math.Sqrt(Math.PI) * s;
        }
        Func<double, double> f = name switch
        {
            "gelu" => v => 0.5 * v * (1 + Erf(v / Math.Sqrt(2))),
            "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
            "quick_gelu" => v => v / (1 + Math.Exp(-1.702 * v)),
            "relu" => v => Math.Max(v, 0),
            "silu" or "swish" => v => v / (1 + Math.Exp(-v)),
            "tanh" => Math.Tanh,
            "sigmoid" => v => 1 / (1 + Math.Exp(-v)),
            _ => throw new InvalidOperationException(),
        };
        var vals = new float[] { -4f, -2.5f, -1f, -0.3f, 0f, 0.2f, 0.7f, 1.5f, 3.2f };
        var y = Activations.Get(name)(Tensor.FromArray(vals, 3, 3)).ToArray();
        for (int i = 0; i < vals.Length; i++) Assert.Equal(f(vals[i]), y[i], 5);
        var rng = new Rng(7);
        // Keep relu's kink away from the finite-difference stencil.
        var x = Tensor.Randn([2, 4], rng);
        if (name == "relu") x = x.Add(x.Sign0Guard());
        GradCheck.Check(v => Activations.Get(name)(v[0]), [x.Contiguous()]);
    }

    [Theory]
    [InlineData("gelu")]
    [InlineData("gelu_python")]
    [InlineData("quick_gelu")]
    [InlineData("linear")]
    [InlineData("gelu_new")]
    [InlineData("relu")]
    public void FusedEpilogueGivesTheActivationsBits(string name)
    {
        var lin = new Linear(24, 40, Vb(5)["fc"]);
        var x = Tensor.Randn([3, 7, 24], new Rng(6));
        var epi = Activations.Epilogue(name);
        if (name is "gelu_new" or "relu") { Assert.Null(epi); return; }   // these run as their own op
        Assert.NotNull(epi);
        // In no-grad the activation runs in the GEMM epilogue; while recording it is its own op after the GEMM.
        foreach (bool record in new[] { false, true })
        {
            using var scope = record ? null : Tensor.NoGrad();
            var expect = Activations.Get(name)(lin.Forward(x));
            var got = lin.Forward(x, epi!.Value);
            TensorAssert.Equal(expect, got, $"{name}, record={record}");
        }
    }

    [Fact]
    public void IntermediatesAreFreedAndNeverTheKeptOne()
    {
        // While recording, a freed intermediate stays with the node that read it until that backward has run.
        var a = Tensor.Randn([64, 80], new Rng(8));
        a.RequiresGrad = true;
        var doubled = a.Mul(2f);
        var exped = doubled.Exp();
        Intermediates.Free(doubled);
        Assert.Equal(64 * 80, doubled.ToArray().Length);   // exp's node still holds the buffer
        exped.Sum().Backward();
        // Back in the pool once the graph no longer needs it.
        Assert.Throws<ObjectDisposedException>(() => doubled.ToArray());
        var xs = a.ToArray(); var g = a.Grad!.ToArray();
        for (int i = 0; i < xs.Length; i++) Assert.Equal(2 * MathF.Exp(2 * xs[i]), g[i], 1e-4f * MathF.Exp(2 * xs[i]));
        using (Tensor.NoGrad())
        {
            var c = a.Mul(3f);
            Intermediates.Free(c, keep: c);         // an op that returned its input
            Assert.Equal(a.Mul(3f).ToArray(), c.ToArray());
            long before = BufferPool.ThreadFreshAllocations;
            var d = a.Mul(4f);
            Intermediates.Free(d);
            var e = a.Mul(5f);                      // reuses d's buffer from the pool
            Assert.Equal(1, BufferPool.ThreadFreshAllocations - before);
            Assert.Equal(a.Mul(5f).ToArray(), e.ToArray());
        }
    }

    [Fact]
    public void UnknownActivationNamesTheValue()
    {
        var ex = Assert.Throws<ArgumentException>(() => Activations.Get("gelu_magic", "text_config.hidden_act"));
        Assert.Contains("'gelu_magic'", ex.Message);
        Assert.Contains("text_config.hidden_act", ex.Message);
        Assert.Contains("quick_gelu", ex.Message);
    }

    [Fact]
    public void DropoutIsIdentityInEvalAndSeededInTraining()
    {
        var x = Tensor.Ones(4000);
        Tensor Run(ulong seed)
        {
            var ctx = new DropoutContext(seed);
            var d = new Dropout(0.25f, ctx);
            return d.Forward(x);
        }
        var a = Run(9).ToArray();
        Assert.Equal(a, Run(9).ToArray());
        Assert.NotEqual(a, Run(10).ToArray());
        int zeros = a.Count(v => v == 0f);
        Assert.InRange(zeros, 850, 1150);
        Assert.All(a, v => Assert.True(v == 0f || v == 1f / 0.75f));
        var eval = new Dropout(0.25f, new DropoutContext());
        eval.Eval();
        Assert.Same(x, eval.Forward(x));
        Assert.Throws<ArgumentException>(() => new Dropout(1.5f, new DropoutContext()));
        Assert.Throws<ArgumentException>(() => new Dropout(-0.1f, new DropoutContext()));
    }

    [Fact]
    public void DropoutContextStateResumesTheMaskStream()
    {
        var x = Tensor.Ones(64);
        var ctx = new DropoutContext(5);
        var d = new Dropout(0.5f, ctx);
        d.Forward(x);
        var state = ctx.GetState();
        var next = d.Forward(x).ToArray();
        var resumed = new DropoutContext(123);
        resumed.SetState(state);
        Assert.Equal(next, new Dropout(0.5f, resumed).Forward(x).ToArray());
        // One context per model: the VarBuilder and the finished store hand out the same one.
        var vb = VarBuilder.Init(new Rng(1));
        _ = new Linear(2, 2, vb);
        Assert.Same(vb.Dropout, vb.Finish().Dropout);
    }

    [Fact]
    public void MultiHeadAttentionMatchesPerHeadLoopAndIgnoresMaskedKeys()
    {
        var rng = new Rng(8);
        var vb = Vb(3);
        var mha = new MultiHeadAttention(8, 2, vb["attn"]);
        var x = Tensor.Randn([2, 3, 8], rng);
        var y = mha.Forward(x);
        Assert.Equal(new[] { 2, 3, 8 }, y.ShapeArray());
        var q = mha.Query.Forward(x); var k = mha.Key.Forward(x); var v = mha.Value.Forward(x);
        var merged = Tensor.Zeros(2, 3, 8);
        for (int b = 0; b < 2; b++)
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 3; i++)
                {
                    var s = new double[3];
                    for (int j = 0; j < 3; j++)
                    {
                        for (int d = 0; d < 4; d++) s[j] += q[b, i, h * 4 + d] * k[b, j, h * 4 + d];
                        s[j] /= 2; // √4
                    }
                    double m = s.Max(), z = s.Sum(e => Math.Exp(e - m));
                    for (int d = 0; d < 4; d++)
                    {
                        double o = 0;
                        for (int j = 0; j < 3; j++) o += Math.Exp(s[j] - m) / z * v[b, j, h * 4 + d];
                        merged[b, i, h * 4 + d] = (float)o;
                    }
                }
        TensorAssert.Close(mha.Output.Forward(merged), y, 1e-5f, 1e-4f);
        Assert.Equal(new[] { "attn.q_proj.weight", "attn.q_proj.bias", "attn.k_proj.weight", "attn.k_proj.bias", "attn.v_proj.weight", "attn.v_proj.bias", "attn.out_proj.weight", "attn.out_proj.bias" },
            vb.Store.Named.Select(kv => kv.Key).ToArray());

        // The last key is padding: changing its content must not change any output.
        var mask = AttentionOps.ExtendedMask(Tensor.FromArray(new long[] { 1, 1, 0, 1, 1, 0 }, 2, 3));
        var ctx = Tensor.Randn([2, 3, 8], rng);
        var y1 = mha.Forward(x, ctx, mask);
        using (Tensor.NoGrad()) ctx.Narrow(1, 2, 1).CopyFrom(Tensor.Randn([2, 1, 8], rng));
        TensorAssert.Close(y1, mha.Forward(x, ctx, mask), 1e-6f, 1e-6f);
        // Causal: the first query sees only the first key, so later tokens cannot change it.
        var c1 = mha.Forward(x, causal: true);
        var x2 = x.Clone();
        using (Tensor.NoGrad()) x2.Narrow(1, 1, 2).CopyFrom(Tensor.Randn([2, 2, 8], rng));
        TensorAssert.Close(c1.Narrow(1, 0, 1), mha.Forward(x2, causal: true).Narrow(1, 0, 1), 1e-6f, 1e-6f);
    }

    [Fact]
    public void AttentionGradientsAndHeadHelpers()
    {
        var rng = new Rng(9);
        var x = Tensor.Randn([2, 3, 6], rng);
        var split = AttentionOps.SplitHeads(x, 3);
        Assert.Equal(new[] { 2, 3, 3, 2 }, split.ShapeArray());
        Assert.Equal(x[1, 2, 5], split[1, 2, 2, 1]);
        TensorAssert.Close(x, AttentionOps.MergeHeads(split), 0, 0);
        Assert.Throws<ArgumentException>(() => AttentionOps.SplitHeads(x, 4));
        var mask = AttentionOps.ExtendedMask(Tensor.FromArray(new long[] { 1, 1, 0, 1, 1, 1 }, 2, 3));
        GradCheck.Check(t => AttentionOps.ScaledDotProduct(t[0], t[1], t[2], mask),
            [Tensor.Randn([2, 1, 2, 3], rng), Tensor.Randn([2, 1, 3, 3], rng), Tensor.Randn([2, 1, 3, 3], rng)]);
    }

    [Fact]
    public void VarBuilderLoadingReportsEveryProblemInOneError()
    {
        var rng = new Rng(10);
        var good = new Dictionary<string, Tensor>
        {
            ["enc.fc.weight"] = Tensor.Randn([3, 4], rng),
            ["enc.fc.bias"] = Tensor.Randn([3], rng),
            ["enc.ln.weight"] = Tensor.Randn([3], rng),
            ["enc.ln.bias"] = Tensor.Randn([3], rng),
        };
        void Build(VarBuilder vb)
        {
            _ = new Linear(4, 3, vb["enc"]["fc"]);
            _ = new LayerNorm(3, vb["enc"]["ln"]);
        }
        var okVb = VarBuilder.FromWeights(new InMemoryWeights(good));
        Build(okVb);
        var store = okVb.Finish();
        TensorAssert.Close(good["enc.fc.weight"], store["enc.fc.weight"], 0, 0);

        var bad = new Dictionary<string, Tensor>(good);
        bad.Remove("enc.fc.bias");
        bad["enc.ln.weight"] = Tensor.Randn([4], rng);
        bad["enc.extra"] = Tensor.Randn([1], rng);
        var vb = VarBuilder.FromWeights(new InMemoryWeights(bad, "bad.safetensors"));
        Build(vb);
        var ex = Assert.Throws<InvalidDataException>(() => vb.Finish());
        Assert.Contains("bad.safetensors", ex.Message);
        Assert.Contains("enc.fc.bias", ex.Message);
        Assert.Contains("enc.ln.weight: file [4], model [3]", ex.Message);
        Assert.Contains("enc.extra", ex.Message);
    }
}

internal static class TestTensorExtensions
{
    /// <summary>0.1·sign(x) (0 → 0.1): shifts values away from 0 for kinked functions.</summary>
    public static Tensor Sign0Guard(this Tensor x)
    {
        var a = x.ToArray();
        return Tensor.FromArray(a.Select(v => v >= 0 ? 0.1f : -0.1f).ToArray(), x.ShapeArray());
    }
}

public class AttentionModuleTests
{
    [Fact]
    public void CrossAttentionShapesAndGradientsThroughProjections()
    {
        var rng = new Rng(12);
        var mha = new MultiHeadAttention(4, 2, VarBuilder.Init(new Rng(2)), kvDim: 6,
            names: new AttentionNames("query", "key", "value", "dense"));
        Assert.Equal("query.weight", mha.Query.Weight.Name);
        Assert.Equal(new[] { 4, 6 }, mha.Key.Weight.ShapeArray());
        var x = Tensor.Randn([2, 3, 4], rng);
        var ctx = Tensor.Randn([2, 5, 6], rng);
        Assert.Equal(new[] { 2, 3, 4 }, mha.Forward(x, ctx).ShapeArray());
        GradCheck.Check(t => mha.Forward(t[0], t[1]), [x, ctx, mha.Query.Weight, mha.Key.Weight, mha.Value.Bias!, mha.Output.Weight]);
    }

    [Fact]
    public void AttentionDropoutFollowsTrainingFlagAndSeed()
    {
        var rng = new Rng(13);
        var x = Tensor.Randn([1, 6, 8], rng);
        Tensor Run(ulong seed, bool train)
        {
            var vb = VarBuilder.Init(new Rng(3));
            vb.Dropout.Reseed(seed);
            var mha = new MultiHeadAttention(8, 2, vb, attentionDropout: 0.5f);
            mha.Train(train);
            return mha.Forward(x);
        }
        Assert.Equal(Run(1, true).ToArray(), Run(1, true).ToArray());
        Assert.NotEqual(Run(1, true).ToArray(), Run(2, true).ToArray());
        Assert.Equal(Run(1, false).ToArray(), Run(2, false).ToArray());
    }

    [Fact]
    public void LinearAcceptsVectorInput()
    {
        var lin = new Linear(3, 2, VarBuilder.Init(new Rng(4)));
        var v = Tensor.FromArray(new float[] { 1, 2, 3 }, 3);
        var y = lin.Forward(v);
        Assert.Equal(new[] { 2 }, y.ShapeArray());
        TensorAssert.Close(lin.Forward(v.Unsqueeze(0)).Reshape(2), y, 0, 0);
    }
}
