using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;
using Vlm.Tokenizers;
using Vlm.Vision;
using Vlm.Vision.Processing;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>The string / image level API: tokenizer + image processor wired to the models (random weights sized
/// to the fixture RoBERTa vocabulary).</summary>
public class BridgeTowerProcessorTests
{
    private static readonly Lazy<BridgeTowerProcessor> Proc = new(() => new BridgeTowerProcessor(
        AutoTokenizer.FromFolder(Fixtures.Path("tokenizers", "roberta")),
        new BridgeTowerImageProcessor { ShortestEdge = 32, SizeDivisor = 32 }));

    private static BridgeTowerConfig Config(int vocab) => BridgeTowerConfig.FromJson($$$"""
        {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "contrastive_hidden_size": 16, "logit_scale_init_value": 2.6592,
         "id2label": {"0": "yes", "1": "no", "2": "two"},
         "text_config": {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": {{{vocab}}}, "max_position_embeddings": 64},
         "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8}}
        """);

    private static Image Picture(int w, int h, int seed)
    {
        var rng = new Rng((ulong)seed);
        var data = new byte[w * h * 3];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(rng.NextDouble() * 256);
        return new Image(w, h, PixelMode.RGB, data);
    }

    [Fact]
    public void Itm_scores_from_strings_equal_the_tensor_api()
    {
        var p = Proc.Value;
        var itm = new BridgeTowerForImageAndTextRetrieval(Config(p.Tokenizer.VocabSize), null, new Rng(1));
        var img = Picture(48, 40, 2);
        string[] texts = ["two cats on a couch", "a dog"];
        var s = p.ItmScores(itm, img, texts);
        var (ids, mask) = p.EncodeTexts(texts);
        Assert.Equal(0, ids[1, ids.Size(1) - 1] - p.Tokenizer.PadId); // the shorter text is right-padded
        var px = p.EncodeImages([img]);
        Assert.Equal([1, 3, 32, 32], px.ShapeArray());
        for (int i = 0; i < 2; i++)
        {
            var one = itm.ItmScores(ids.Narrow(0, i, 1).Contiguous(), mask.Narrow(0, i, 1).Contiguous(), px);
            Assert.Equal(one[0].MatchProbability, s[i].MatchProbability, 5);
        }
    }

    [Fact]
    public void Fill_mask_retrieval_and_vqa_from_strings()
    {
        var p = Proc.Value;
        var cfg = Config(p.Tokenizer.VocabSize);
        var mlm = new BridgeTowerForMaskedLM(cfg, null, new Rng(3));
        var preds = p.FillMask(mlm, Picture(32, 32, 4), $"a {p.Tokenizer.MaskToken} cat", k: 3);
        Assert.Single(preds);
        Assert.Equal(3, preds[0].Length);
        Assert.True(preds[0][0].Probability >= preds[0][1].Probability);

        var itc = new BridgeTowerForContrastiveLearning(cfg, null, new Rng(5));
        var itm = new BridgeTowerForImageAndTextRetrieval(cfg, null, new Rng(6));
        var images = new[] { Picture(32, 40, 7), Picture(40, 32, 8), Picture(36, 36, 9) };
        var hits = p.Retrieve(itc, "a red car", images, 2, itm);
        Assert.Equal(2, hits.Length);
        Assert.NotEqual(hits[0].Index, hits[1].Index);
        Assert.All(hits, h => Assert.NotNull(h.ItmProbability));
        var plain = p.Retrieve(itc, "a red car", images, 3);
        Assert.Equal(hits.Select(h => h.Index).Order(), plain.Take(2).Select(h => h.Index).Order());

        var vqa = new BridgeTowerForVqa(cfg, null, new Rng(10));
        var answers = p.AnswerQuestion(vqa, images[0], "how many?", k: 3);
        Assert.Equal(["no", "two", "yes"], answers.Select(a => a.Answer!).Order(StringComparer.Ordinal).ToArray());
    }
}
