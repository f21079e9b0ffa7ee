using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Nn.Optim;
using Vlm.Training.Blip;

namespace Vlm.Training.Tests.Blip;

public sealed class PretrainModelTests
{
    public const int Vocab = 40, Pad = 0, Cls = 1, Sep = 2, Mask = 3, Enc = 38, Dec = 39;

    public static BlipConfig TinyModel(int textLayers) => new()
    {
        TextConfig = new BlipTextConfig
        {
            VocabSize = Vocab, HiddenSize = 32, EncoderHiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = textLayers, NumAttentionHeads = 4,
            MaxPositionEmbeddings = 16, BosTokenId = Dec, PadTokenId = Pad, SepTokenId = Sep, EosTokenId = Sep,
        },
        VisionConfig = new BlipVisionConfig { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 16, PatchSize = 8 },
        ImageTextHiddenSize = 16,
    };

    public static BlipPretrainConfig TinyBlip(int queue = 8) => BlipPretrainConfig.Blip(TinyModel(2), Enc) with { QueueSize = queue };

    public static BlipPretrainConfig TinyAlbef(int queue = 8) =>
        BlipPretrainConfig.Albef(TinyModel(4), Mask, [Pad, Cls, Sep], firstOrdinaryTokenId: 4) with { QueueSize = queue };

    /// <summary>B pairs: random pixels, ids [CLS] w… [SEP] pad….</summary>
    public static (Tensor pixels, Tensor ids, Tensor mask) Batch(int b, ulong seed)
    {
        var rng = new Rng(seed);
        var pixels = Tensor.Randn([b, 3, 16, 16], rng);
        int l = 8;
        var ids = new long[b * l]; var mask = new float[b * l];
        for (int i = 0; i < b; i++)
        {
            int len = 4 + rng.NextInt(l - 4);
            for (int j = 0; j < len; j++)
            {
                ids[i * l + j] = j == 0 ? Cls : j == len - 1 ? Sep : 4 + rng.NextInt(Vocab - 6);
                mask[i * l + j] = 1f;
            }
        }
        return (pixels, Tensor.FromArray(ids, b, l), Tensor.FromArray(mask, b, l));
    }

    private static List<double> Train(BlipPretrainConfig cfg, int steps)
    {
        var model = new BlipPretrainModel(cfg, new Rng(11));
        var opt = new AdamW(ParamGroups.ByName(model.Parameters, 0.05), 1e-3);
        var (pixels, ids, mask) = Batch(4, 5);
        var rng = new Rng(2);
        var losses = new List<double>();
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            var l = model.Forward(pixels, ids, mask, 0.4f, rng);
            l.Total.Backward();
            opt.Step();
            losses.Add(l.Total.Item());
        }
        return losses;
    }

    [Theory]
    [InlineData(PretrainKind.Blip)]
    [InlineData(PretrainKind.Albef)]
    public void AFewStepsOnAFixedBatchReduceTheLoss(PretrainKind kind)
    {
        var losses = Train(kind == PretrainKind.Blip ? TinyBlip() : TinyAlbef(), 12);
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        Assert.True(losses.TakeLast(3).Average() < losses.Take(3).Average() - 0.2, string.Join(", ", losses.Select(x => x.ToString("F3"))));
    }

    [Fact]
    public void BlipDecoderSharesAllButSelfAttentionAndTheStepUpdatesMomentumAndQueue()
    {
        var model = new BlipPretrainModel(TinyBlip(queue: 6), new Rng(11));
        var p = model.Parameters;
        Assert.Same(p["text_encoder.encoder.layer.0.crossattention.self.query.weight"], p["text_decoder.bert.encoder.layer.0.crossattention.self.query.weight"]);
        Assert.Same(p["text_encoder.embeddings.word_embeddings.weight"], p["text_decoder.bert.embeddings.word_embeddings.weight"]);
        Assert.Same(p["text_encoder.encoder.layer.1.output.dense.weight"], p["text_decoder.bert.encoder.layer.1.output.dense.weight"]);
        Assert.NotSame(p["text_encoder.encoder.layer.0.attention.self.query.weight"], p["text_decoder.bert.encoder.layer.0.attention.self.query.weight"]);
        Assert.NotSame(p["text_encoder.encoder.layer.0.attention.output.dense.weight"], p["text_decoder.bert.encoder.layer.0.attention.output.dense.weight"]);
        // Momentum pairs: vision, text encoder, projections; not the decoder, ITM head or temperature.
        var names = model.Momentum.Pairs.Select(x => x.Name).ToList();
        Assert.Contains("vision_model.post_layernorm.weight", names);
        Assert.Contains("text_proj.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("text_decoder", StringComparison.Ordinal) || n.StartsWith("itm_head", StringComparison.Ordinal) || n == "temp");
        Assert.All(model.Momentum.Pairs, x => Assert.Equal(x.Online.ToArray(), x.Momentum.ToArray()));

        var opt = new AdamW(ParamGroups.ByName(model.Parameters, 0.05), 1e-2);
        var (pixels, ids, mask) = Batch(4, 5);
        var l = model.Forward(pixels, ids, mask, 0.4f, new Rng(1));
        l.Total.Backward();
        Assert.Equal(4, model.Queue.Ptr);
        var before = model.Momentum.Pairs.Select(x => (x.Online.ToArray(), x.Momentum.ToArray())).ToList();
        opt.Step();
        Assert.All(model.Momentum.Pairs, x => Assert.Null(x.Momentum.Grad));
        model.Forward(pixels, ids, mask, 0.4f, new Rng(1));
        Assert.Equal(2, model.Queue.Ptr);   // 4 + 4 mod 6
        for (int i = 0; i < before.Count; i++)
        {
            var (_, online, mom) = model.Momentum.Pairs[i];
            var o = online.ToArray(); var m0 = before[i].Item2; var m1 = mom.ToArray();
            for (int k = 0; k < o.Length; k++) Assert.Equal(m0[k] * 0.995f + o[k] * (float)(1.0 - 0.995), m1[k]);
        }
        // The temperature is clamped before each step.
        model.Temp.Span[0] = 3f;
        model.Forward(pixels, ids, mask, 0.4f, new Rng(1));
        Assert.Equal(0.5f, model.Temp.Item());
    }

    [Fact]
    public void AlbefHasTextOnlyThenFusionLayers()
    {
        var model = new BlipPretrainModel(TinyAlbef(), new Rng(1));
        var p = model.Parameters;
        Assert.False(p.Contains("text_encoder.bert.encoder.layer.1.crossattention.self.query.weight"));
        Assert.True(p.Contains("text_encoder.bert.encoder.layer.2.crossattention.self.query.weight"));
        Assert.True(p.Contains("text_encoder.cls.predictions.decoder.weight"));
        Assert.DoesNotContain(p.Named, kv => kv.Key.StartsWith("text_decoder", StringComparison.Ordinal));
        Assert.Equal(2, BlipPretrainConfig.Albef(TinyModel(4), Mask, [Pad], 4).FusionStart);
        Assert.Equal(6, BlipPretrainConfig.Albef(new BlipConfig(), 103, [0], 999).FusionStart);
    }

    [Theory]
    [InlineData(PretrainKind.Blip)]
    [InlineData(PretrainKind.Albef)]
    public void InferenceHelpersScoreAndCaption(PretrainKind kind)
    {
        var model = new BlipPretrainModel(kind == PretrainKind.Blip ? TinyBlip() : TinyAlbef(), new Rng(11));
        model.Eval();
        var (pixels, ids, mask) = Batch(3, 5);
        var p = model.ItmMatchProbability(pixels, ids, mask);
        Assert.Equal(3, p.Length);
        Assert.All(p, x => Assert.InRange(x, 0f, 1f));
        var sim = model.ItcSimilarity(pixels, ids, mask);
        Assert.Equal([3, 3], sim.ShapeArray());
        Assert.All(sim.ToArray(), x => Assert.InRange(x, -1.0001f, 1.0001f));
        if (kind == PretrainKind.Blip)
        {
            var g = model.Generate(pixels, new Vlm.Models.Generation.GenerationOptions { MaxNewTokens = 4 });
            Assert.Equal(3, g.Sequences.Size(0));
            Assert.Equal(Dec, g.Sequences.ToInt64Array()[0]);
        }
        else Assert.Throws<InvalidOperationException>(() => model.Generate(pixels, new Vlm.Models.Generation.GenerationOptions()));
    }
}
