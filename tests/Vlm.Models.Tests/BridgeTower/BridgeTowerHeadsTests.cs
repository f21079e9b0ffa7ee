using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>Paper heads HF lacks (VQA, NLVR2, SNLI-VE) and the task API.</summary>
public class BridgeTowerHeadsTests
{
    private static BridgeTowerConfig Config(string c) => BridgeTowerConfig.Load(Fixtures.Path(c, "config.json"));
    private static Dictionary<string, Tensor> Inputs(string c) => Fixtures.Load(c, "inputs.safetensors");

    [Fact]
    public void Vqa_head_from_pretrained_weights_scores_answers_with_scaled_bce()
    {
        var cfg = Config("bridgetower_model") with { Id2Label = ["yes", "no", "2", "red"], NumLabels = 4 };
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var vqa = new BridgeTowerForVqa(cfg, w, new Rng(3));
        Assert.NotNull(vqa.FreshHeadParameters);
        Assert.Equal([128, 128], vqa.FreshHeadParameters!["vqa_classifier.0.weight"].ShapeArray());
        Assert.Equal([4, 128], vqa.FreshHeadParameters["vqa_classifier.3.weight"].ShapeArray());
        vqa.Eval();
        var inp = Inputs("bridgetower_model");
        var targets = Tensor.FromArray(new float[] { 1f, 0f, 0.3f, 0f, 0f, 0.6f, 0f, 1f }, 2, 4);
        BridgeTowerHeadOutput o;
        using (Tensor.NoGrad()) o = vqa.Forward(inp["input_ids"], inp["attention_mask"], inp["pixel_values"], targets);
        Assert.Equal([2, 4], o.Logits.ShapeArray());
        var x = o.Logits.ToArray(); var y = targets.ToArray();
        double bce = 0;
        for (int i = 0; i < x.Length; i++) bce += -(y[i] * Math.Log(1 / (1 + Math.Exp(-x[i]))) + (1 - y[i]) * Math.Log(1 - 1 / (1 + Math.Exp(-x[i]))));
        Assert.Equal(bce / x.Length * 4, o.Loss!.Item(), 4);
        var top = vqa.AnswerQuestion(inp["input_ids"].Narrow(0, 0, 1), inp["attention_mask"].Narrow(0, 0, 1), inp["pixel_values"].Narrow(0, 0, 1), k: 2);
        Assert.Equal(2, top.Length);
        Assert.True(top[0].Score >= top[1].Score);
        Assert.Equal(cfg.Id2Label![top[0].Index], top[0].Answer);
        Assert.Equal(1f / (1f + MathF.Exp(-x[top[0].Index])), top[0].Score, 5);
    }

    [Fact]
    public void Nlvr2_second_image_token_type_starts_from_row_1_and_round_trips()
    {
        var cfg = Config("bridgetower_model");
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var nlvr = new BridgeTowerForNlvr2(cfg, w, new Rng(5));
        var tt = nlvr.BridgeTower.TokenTypeEmbeddings;
        Assert.Equal([3, 64], tt.ShapeArray());
        TensorAssert.Close(tt.Narrow(0, 1, 1), tt.Narrow(0, 2, 1), 0f, 0f, "row 2 = row 1");
        nlvr.Eval();
        var inp = Inputs("bridgetower_model");
        var px = inp["pixel_values"];
        BridgeTowerHeadOutput same, swapped;
        using (Tensor.NoGrad())
        {
            same = nlvr.Forward(inp["input_ids"], inp["attention_mask"], px, px, Tensor.FromArray(new long[] { 1, 0 }, 2));
            swapped = nlvr.Forward(inp["input_ids"], inp["attention_mask"], px, px.Flip0());
        }
        Assert.Equal([2, 2], same.Logits.ShapeArray());
        Assert.True(float.IsFinite(same.Loss!.Item()));
        Assert.False(same.Logits.ToArray().SequenceEqual(swapped.Logits.ToArray()));
        // An NLVR2 checkpoint (3 token types, trained head) loads back unchanged.
        var saved = nlvr.Parameters.StateDict().Concat(nlvr.FreshHeadParameters!.StateDict()).ToDictionary(kv => kv.Key, kv => kv.Value.Detach());
        var again = new BridgeTowerForNlvr2(cfg, new InMemoryWeights(saved));
        Assert.Null(again.FreshHeadParameters);
        again.Eval();
        using (Tensor.NoGrad())
            TensorAssert.Close(same.Logits, again.Forward(inp["input_ids"], inp["attention_mask"], px, px).Logits, 0f, 0f, "reloaded");
    }

    [Fact]
    public void Snli_ve_head_has_three_classes_and_cross_entropy()
    {
        var cfg = Config("bridgetower_model");
        var snli = new BridgeTowerForSnliVe(cfg, null, new Rng(6));
        snli.Eval();
        var inp = Inputs("bridgetower_model");
        BridgeTowerHeadOutput o;
        using (Tensor.NoGrad()) o = snli.Forward(inp["input_ids"], inp["attention_mask"], inp["pixel_values"], Tensor.FromArray(new long[] { 2, 0 }, 2));
        Assert.Equal([2, 3], o.Logits.ShapeArray());
        var l = o.Logits.ToArray();
        double Lse(int r) => Math.Log(Enumerable.Range(0, 3).Sum(j => Math.Exp(l[r * 3 + j])));
        double ce = ((Lse(0) - l[2]) + (Lse(1) - l[3])) / 2;
        Assert.Equal(ce, o.Loss!.Item(), 4);
    }

    [Fact]
    public void Itm_scores_are_the_reference_logits()
    {
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_itm"));
        var itm = new BridgeTowerForImageAndTextRetrieval(Config("bridgetower_itm"), w);
        var inp = Inputs("bridgetower_itm");
        var expected = Fixtures.Load("bridgetower_itm", "outputs.safetensors")["logits"];
        var s = itm.ItmScores(inp["input_ids"], inp["attention_mask"], inp["pixel_values"]);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(expected[i, 1], s[i].MatchLogit, 4);
            Assert.Equal(expected[i, 0], s[i].NoMatchLogit, 4);
            Assert.Equal(1 / (1 + Math.Exp(expected[i, 0] - expected[i, 1])), s[i].MatchProbability, 4);
        }
        Assert.True(itm.Training); // the API restores the mode it found
    }

    [Fact]
    public void Separate_embeddings_equal_the_joint_forward_and_retrieval_ranks_them()
    {
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_contrastive"));
        var itc = new BridgeTowerForContrastiveLearning(Config("bridgetower_contrastive"), w);
        var inp = Inputs("bridgetower_contrastive");
        var expected = Fixtures.Load("bridgetower_contrastive", "outputs.safetensors");
        var texts = itc.EmbedTexts(inp["input_ids"], inp["attention_mask"]);
        var images = itc.EmbedImages(inp["pixel_values"]);
        TensorAssert.Close(expected["text_embeds"], texts, 1e-4f, 1e-4f, "text");
        TensorAssert.Close(expected["image_embeds"], images, 1e-4f, 1e-4f, "image");

        var q = inp["input_ids"].Narrow(0, 1, 1).Contiguous();
        var qm = inp["attention_mask"].Narrow(0, 1, 1).Contiguous();
        var hits = BridgeTowerTasks.Retrieve(itc, q, qm, images, k: 2);
        var t = texts.ToArray(); var im = images.ToArray(); int c = texts.Size(1);
        float Sim(int j) => Enumerable.Range(0, c).Sum(d => t[c + d] * im[j * c + d]);
        Assert.Equal(2, hits.Length);
        Assert.Equal(Sim(hits[0].Index), hits[0].ContrastiveScore, 4);
        Assert.True(hits[0].ContrastiveScore >= hits[1].ContrastiveScore);

        using var iw = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_itm"));
        var itm = new BridgeTowerForImageAndTextRetrieval(Config("bridgetower_itm"), iw);
        var reranked = BridgeTowerTasks.Retrieve(itc, q, qm, images, 2, itm, i => inp["pixel_values"].Narrow(0, i, 1).Contiguous());
        Assert.Equal(2, reranked.Length);
        Assert.True(reranked[0].ItmProbability >= reranked[1].ItmProbability);
        foreach (var h in reranked)
        {
            var px = inp["pixel_values"].Narrow(0, h.Index, 1).Contiguous();
            Assert.Equal(itm.ItmScores(q, qm, px)[0].MatchProbability, h.ItmProbability!.Value, 5);
        }
    }

    [Fact]
    public void Fill_mask_returns_sorted_softmax_of_the_logits()
    {
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_mlm"));
        var mlm = new BridgeTowerForMaskedLM(Config("bridgetower_mlm"), w);
        var inp = Inputs("bridgetower_mlm");
        var ids = inp["input_ids"].Narrow(0, 0, 1).Contiguous().Clone();
        ids[0, 2] = 7; // use id 7 as the mask token
        var mask = inp["attention_mask"].Narrow(0, 0, 1).Contiguous();
        var px = inp["pixel_values"].Narrow(0, 0, 1).Contiguous();
        var preds = mlm.FillMask(ids, mask, px, maskTokenId: 7, k: 3);
        Assert.True(preds.ContainsKey(2));
        Tensor logits;
        using (Tensor.NoGrad()) { mlm.Eval(); logits = mlm.Forward(ids, mask, px).Logits; }
        var row = Enumerable.Range(0, 120).Select(v => logits[0, 2, v]).ToArray();
        double z = row.Sum(v => Math.Exp(v - row.Max()));
        int best = Array.IndexOf(row, row.Max());
        Assert.Equal(best, preds[2][0].TokenId);
        Assert.Equal(1 / z, preds[2][0].Probability, 5);
        Assert.True(preds[2][0].Probability >= preds[2][1].Probability && preds[2][1].Probability >= preds[2][2].Probability);
    }
}

internal static class TensorTestExtensions
{
    /// <summary>Reverses dim 0 (a copy).</summary>
    public static Tensor Flip0(this Tensor t)
    {
        var r = Tensor.Zeros(t.ShapeArray());
        for (int i = 0; i < t.Size(0); i++) r.Narrow(0, i, 1).CopyFrom(t.Narrow(0, t.Size(0) - 1 - i, 1));
        return r;
    }
}
