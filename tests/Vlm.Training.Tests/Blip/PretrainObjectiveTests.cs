using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn;
using Vlm.TestSupport;
using Vlm.Training.Blip;

namespace Vlm.Training.Tests.Blip;

/// <summary>The objectives against PyTorch 1.13 (Data/pretrain_refs.py → pretrain_refs.safetensors).</summary>
public sealed class PretrainObjectiveTests
{
    private static readonly Lazy<Dictionary<string, Tensor>> Refs = new(() =>
        SafeTensors.Load(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Training.Tests", "Blip", "Data", "pretrain_refs.safetensors")));

    private static Tensor R(string name) => Refs.Value[name];

    [Theory]
    [InlineData("diag", 0.4f, false)]
    [InlineData("idx", 0.4f, true)]
    [InlineData("alpha0", 0f, false)]
    public void ItcLossAndGradientsMatchTorch(string name, float alpha, bool withIdx)
    {
        var imgRaw = R("itc.img_raw").Clone().RequireGrad();
        var txtRaw = R("itc.txt_raw").Clone().RequireGrad();
        var temp = Tensor.Scalar(0.07f).RequireGrad();
        var idx = withIdx ? R("itc.idx").ToInt64Array() : null;
        var idxQ = withIdx ? R("itc.idx_q").ToInt64Array() : null;
        var o = PretrainObjectives.Itc(F.Normalize(imgRaw, dim: -1), F.Normalize(txtRaw, dim: -1), R("itc.img_m"), R("itc.txt_m"),
            R("itc.img_q"), R("itc.txt_q"), temp, alpha, idx, idxQ);
        o.Loss.Backward();
        TensorAssert.Close(R($"itc.{name}.loss"), o.Loss.Reshape(1), 1e-5f, 1e-5f, "loss");
        TensorAssert.Close(R($"itc.{name}.sim_i2t"), o.SimI2T, 1e-4f, 1e-5f, "sim_i2t");
        TensorAssert.Close(R($"itc.{name}.sim_t2i"), o.SimT2I, 1e-4f, 1e-5f, "sim_t2i");
        TensorAssert.Close(R($"itc.{name}.grad_img"), imgRaw.Grad!, 1e-5f, 1e-4f, "d image");
        TensorAssert.Close(R($"itc.{name}.grad_txt"), txtRaw.Grad!, 1e-5f, 1e-4f, "d text");
        TensorAssert.Close(R($"itc.{name}.grad_temp"), temp.Grad!.Reshape(1), 1e-4f, 1e-4f, "d temp");
        // Negative-sampling weights: softmax over the batch + 1e-4, positives zeroed.
        TensorAssert.Close(R($"itc.{name}.w_t2i"), Tensor.FromArray(PretrainObjectives.NegativeWeights(o.SimT2I, idx), 4, 4), 1e-6f, 1e-5f, "w_t2i");
        TensorAssert.Close(R($"itc.{name}.w_i2t"), Tensor.FromArray(PretrainObjectives.NegativeWeights(o.SimI2T, idx), 4, 4), 1e-6f, 1e-5f, "w_i2t");
    }

    [Fact]
    public void IdxAwareTargetsCountEveryColumnOfTheSameImage()
    {
        var gt = PretrainObjectives.GroundTruth(4, 6, [0, 1, 0, 2], [1, -100, 0, 3, -100, 2]).ToArray();
        // row 0 (image 0): batch columns 0, 2 and queue slot 2 → 1/3 each
        Assert.Equal(new[] { 1f / 3, 0, 1f / 3, 0, 0, 0, 1f / 3, 0, 0, 0 }, gt[..10]);
        // row 1 (image 1): batch column 1 and queue slot 0 → 1/2
        Assert.Equal(new[] { 0, 0.5f, 0, 0, 0.5f, 0, 0, 0, 0, 0 }, gt[10..20]);
        var diag = PretrainObjectives.GroundTruth(3, 2, null, null).ToArray();
        Assert.Equal(new float[] { 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0 }, diag);
    }

    [Fact]
    public void ItmAssemblyLossAndGradientsMatchTorch()
    {
        var text = R("itm.text_emb").Clone().RequireGrad();
        var image = R("itm.image_emb").Clone().RequireGrad();
        var w = R("itm.W").Clone().RequireGrad();
        var b = R("itm.b").Clone().RequireGrad();
        var negImg = R("itm.neg_img").ToInt64Array().Select(x => (int)x).ToArray();
        var negTxt = R("itm.neg_txt").ToInt64Array().Select(x => (int)x).ToArray();
        var o = PretrainObjectives.Itm((tr, ir) => text.IndexSelect(0, tr).Add(image.IndexSelect(0, ir)).Tanh(), x => x.MatMul(w.T).Add(b), negImg, negTxt);
        o.Loss.Backward();
        TensorAssert.Close(R("itm.loss"), o.Loss.Reshape(1), 1e-5f, 1e-5f, "loss");
        TensorAssert.Close(R("itm.logits"), o.Logits, 1e-5f, 1e-5f, "logits");
        TensorAssert.Close(R("itm.grad_text"), text.Grad!, 1e-5f, 1e-4f, "d text");
        TensorAssert.Close(R("itm.grad_image"), image.Grad!, 1e-5f, 1e-4f, "d image");
        TensorAssert.Close(R("itm.grad_W"), w.Grad!, 1e-5f, 1e-4f, "d W");
        TensorAssert.Close(R("itm.grad_b"), b.Grad!, 1e-5f, 1e-4f, "d b");
    }

    [Fact]
    public void LmInputsLabelsAndSmoothedLossMatchTorch()
    {
        var (dec, labels) = PretrainObjectives.DecoderInputs(R("lm.ids"), bosId: 10, padId: 0);
        Assert.Equal(R("lm.dec_ids").ToInt64Array(), dec.ToInt64Array());
        Assert.Equal(R("lm.labels").ToInt64Array(), labels.ToInt64Array());
        var logits = R("lm.logits").Clone().RequireGrad();
        var loss = PretrainObjectives.LmLoss(logits, labels, 0.1f);
        loss.Backward();
        TensorAssert.Close(R("lm.loss"), loss.Reshape(1), 1e-5f, 1e-5f, "loss");
        TensorAssert.Close(R("lm.grad_logits"), logits.Grad!, 1e-6f, 1e-4f, "d logits");
        var (_, promptLabels) = PretrainObjectives.DecoderInputs(R("lm.ids"), 10, 0, promptLength: 3);
        Assert.Equal(R("lm.prompt_labels").ToInt64Array(), promptLabels.ToInt64Array());
        TensorAssert.Close(R("lm.prompt_loss"), PretrainObjectives.LmLoss(R("lm.logits"), promptLabels, 0.1f).Reshape(1), 1e-5f, 1e-5f, "prompt loss");
    }

    [Fact]
    public void LabelSmoothingMatchesTorchCrossEntropy()
    {
        var x = R("ls.x"); var y = R("ls.y");
        var smoothed = F.CrossEntropy(x, y, labelSmoothing: 0.1f);
        TensorAssert.Close(R("ls.loss"), smoothed.Reshape(1), 1e-6f, 1e-5f, "smoothed");
        TensorAssert.Close(R("ls.loss_plain"), F.CrossEntropy(x, y).Reshape(1), 1e-6f, 1e-5f, "plain");
        Assert.NotEqual(R("ls.loss").Item(), R("ls.loss_plain").Item());
    }

    [Fact]
    public void MomentumUpdateIsBitExactWithTorch()
    {
        var online = VarBuilder.Init(new Rng(1)); var p = online.Param("w", [1000], Init.Zeros);
        var mom = VarBuilder.Init(new Rng(2)); var pm = mom.Param("w", [1000], Init.Zeros);
        R("ema.param").Span.CopyTo(p.Span);
        R("ema.param_m").Span.CopyTo(pm.Span);
        var copy = new MomentumCopy(online.Finish(), mom.Finish());
        Assert.False(pm.RequiresGrad);
        copy.Update(0.995);
        Assert.Equal(R("ema.updated").ToArray(), pm.ToArray());
        copy.CopyParams();
        Assert.Equal(p.ToArray(), pm.ToArray());
    }

    [Fact]
    public void QueueWrapsAroundAndKeepsIds()
    {
        var q = new FeatureQueue(5, 2, new Rng(3));
        Assert.All(q.Idx, i => Assert.Equal(-100L, i));
        var norms = q.Image.ToArray().Chunk(2).Select(v => v[0] * v[0] + v[1] * v[1]);
        Assert.All(norms, n => Assert.Equal(1f, n, 5));
        Tensor Feat(float s) => Tensor.FromArray([s, s, s + 1, s + 1], 2, 2);
        q.Enqueue(Feat(10), Feat(-10), [7, 8]);
        Assert.Equal(2, q.Ptr);
        q.Enqueue(Feat(20), Feat(-20), [9, 10]);
        Assert.Equal(4, q.Ptr);
        q.Enqueue(Feat(30), Feat(-30), [11, 12]);   // slots 4 and 0: wraps
        Assert.Equal(1, q.Ptr);
        Assert.Equal(new long[] { 12, 8, 9, 10, 11 }, q.Idx);
        Assert.Equal(new float[] { 31, 31, 11, 11, 20, 20, 21, 21, 30, 30 }, q.Image.ToArray());
        Assert.Equal(new float[] { -29, -29, -9, -9, -20, -20, -19, -19, -30, -30 }, q.Text.ToArray());
        // The reference's case Q % B == 0: the pointer returns to 0 exactly.
        var r = new FeatureQueue(4, 2, new Rng(3));
        r.Enqueue(Feat(1), Feat(1)); r.Enqueue(Feat(2), Feat(2));
        Assert.Equal(0, r.Ptr);
        Assert.Throws<ArgumentException>(() => r.Enqueue(Tensor.Zeros(5, 2), Tensor.Zeros(5, 2)));
    }

    [Fact]
    public void SamplingNeverDrawsAPositiveAndFollowsTheWeights()
    {
        // Diagonal excluded: over many draws from a peaked similarity matrix the positive never appears.
        var rng = new Rng(9);
        var sim = Tensor.FromArray(new float[] { 50, 0, 0, 0, 0, 50, 0, 0, 0, 0, 50, 0, 0, 0, 0, 50 }, 4, 4);
        var itc = new ItcOutput(Tensor.Scalar(0), sim, sim, sim, sim);
        for (int k = 0; k < 500; k++)
        {
            var (ni, nt) = PretrainObjectives.SampleHardNegatives(itc, null, rng);
            for (int i = 0; i < 4; i++) { Assert.NotEqual(i, ni[i]); Assert.NotEqual(i, nt[i]); }
            var (ni2, nt2) = PretrainObjectives.SampleHardNegatives(itc, [0, 1, 0, 1], rng);   // same image = positive
            for (int i = 0; i < 4; i++) { Assert.Equal(1, (ni2[i] + i) % 2); Assert.Equal(1, (nt2[i] + i) % 2); }
        }
        // Frequencies follow the weights (row 0: 0, 1, 2, 5 → 1/8, 2/8, 5/8), within 4 standard deviations.
        var w = new float[] { 0, 1, 2, 5, 1, 0, 1, 1, 1, 1, 0, 1, 3, 3, 3, 0 };
        int n = 40000;
        var counts = new int[4];
        for (int k = 0; k < n; k++) counts[PretrainObjectives.Multinomial(w, 4, rng)[0]]++;
        Assert.Equal(0, counts[0]);
        double[] p = [0, 1 / 8.0, 2 / 8.0, 5 / 8.0];
        for (int j = 1; j < 4; j++)
            Assert.InRange(counts[j] / (double)n, p[j] - 4 * Math.Sqrt(p[j] * (1 - p[j]) / n), p[j] + 4 * Math.Sqrt(p[j] * (1 - p[j]) / n));
        // A row with no candidate is a clear error, not a silent pick of the positive.
        var ex = Assert.Throws<InvalidOperationException>(() => PretrainObjectives.Multinomial([0, 0, 1, 0], 2, rng));
        Assert.Contains("row 0", ex.Message);
    }
}
