// One set of vision-language pre-training parts, two configurations:
//  - BLIP (arXiv 2201.12086 §3): ViT + a BERT text encoder whose layers all own cross-attention (unimodal when no
//    image is given, image-grounded otherwise) + an image-grounded decoder that shares every text-encoder weight
//    except self-attention (and has its own LM head); objectives ITC + ITM + LM.
//  - ALBEF (arXiv 2107.07651 §3): ViT + a 12-layer BERT whose first 6 layers are text-only and last 6 fuse the image
//    by cross-attention, with an MLM head; objectives ITC + ITM + MLM.
// Both keep momentum copies of the vision encoder, text encoder and projections, and feature queues (Momentum.cs).
// Parameter names follow HF BLIP (vision_model, text_encoder, text_decoder, vision_proj, text_proj, itm_head), so the
// BLIP configuration exports into HF BlipForImageTextRetrieval / BlipForConditionalGeneration folders.
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Nn;
using Vlm.Training.Data;

namespace Vlm.Training.Blip;

public enum PretrainKind { Blip, Albef }

public sealed record BlipPretrainConfig
{
    /// <summary>Vision / text sizes (HF BlipConfig); <c>ImageTextHiddenSize</c> is the ITC embedding width.</summary>
    public required BlipConfig Model { get; init; }
    public PretrainKind Kind { get; init; } = PretrainKind.Blip;
    /// <summary>ALBEF: number of text-only layers (the rest fuse the image). BLIP: 0.</summary>
    public int FusionStart { get; init; }
    public int QueueSize { get; init; } = 57600;
    public double Momentum { get; init; } = 0.995;
    public float Alpha { get; init; } = 0.4f;
    /// <summary>Steps over which α ramps linearly from 0 (0 = constant α).</summary>
    public long AlphaRampSteps { get; init; }
    public float TempInit { get; init; } = 0.07f;
    public float TempMin { get; init; } = 0.001f;
    public float TempMax { get; init; } = 0.5f;
    public float LabelSmoothing { get; init; } = 0.1f;
    /// <summary>Added to the hard-negative softmax weights before the positives are zeroed (reference: 1e-4).</summary>
    public float NegativeWeightEps { get; init; } = 1e-4f;
    /// <summary>BLIP: the [ENC] id that replaces the first token for ITM.</summary>
    public int EncTokenId { get; init; }
    /// <summary>ALBEF: the mask token and the ids never masked (padding, [CLS], [SEP] …).</summary>
    public int MaskTokenId { get; init; }
    public long[] SpecialTokenIds { get; init; } = [];
    /// <summary>ALBEF: the first id a random replacement may take (ids below it are special).</summary>
    public int FirstOrdinaryTokenId { get; init; }
    public float MlmProbability { get; init; } = 0.15f;

    public int EmbedDim => Model.ImageTextHiddenSize;
    public int TextLayers => Model.TextConfig.NumHiddenLayers;

    /// <summary>BLIP: ITC + ITM + LM, decoder sharing all but self-attention with the encoder.</summary>
    public static BlipPretrainConfig Blip(BlipConfig model, int encTokenId) => new() { Model = model, Kind = PretrainKind.Blip, EncTokenId = encTokenId };

    /// <summary>ALBEF: ITC + ITM + MLM with <paramref name="textLayers"/> text-only layers (default half of
    /// text_config.num_hidden_layers: 6 + 6 for BERT-base).</summary>
    public static BlipPretrainConfig Albef(BlipConfig model, int maskTokenId, long[] specialTokenIds, int firstOrdinaryTokenId, int? textLayers = null) => new()
    {
        Model = model, Kind = PretrainKind.Albef, FusionStart = textLayers ?? model.TextConfig.NumHiddenLayers / 2,
        MaskTokenId = maskTokenId, SpecialTokenIds = specialTokenIds, FirstOrdinaryTokenId = firstOrdinaryTokenId,
    };

    public void Validate()
    {
        Model.Validate("pretrain config");
        var t = Model.TextConfig;
        if (!t.IsDecoder) throw new ArgumentException("pre-training needs text_config.is_decoder = true (layers with cross-attention)");
        if (Model.VisionConfig.HiddenSize != t.EncoderHiddenSize)
            throw new ArgumentException($"text_config.encoder_hidden_size {t.EncoderHiddenSize} must equal vision_config.hidden_size {Model.VisionConfig.HiddenSize}");
        if (QueueSize < 0) throw new ArgumentException($"queue size {QueueSize} is negative");
        if (Momentum < 0 || Momentum > 1) throw new ArgumentException($"momentum {Momentum} is outside [0, 1]");
        if (Alpha < 0 || Alpha > 1) throw new ArgumentException($"alpha {Alpha} is outside [0, 1]");
        if (Kind == PretrainKind.Albef && (FusionStart <= 0 || FusionStart >= t.NumHiddenLayers))
            throw new ArgumentException($"ALBEF needs 0 < text layers ({FusionStart}) < text_config.num_hidden_layers ({t.NumHiddenLayers})");
        if (Kind == PretrainKind.Blip && FusionStart != 0) throw new ArgumentException("BLIP's text encoder has cross-attention in every layer (FusionStart 0)");
        foreach (var (id, name) in new[] { (EncTokenId, "enc token"), (MaskTokenId, "mask token"), (t.BosTokenId, "bos ([DEC]) token"), (t.PadTokenId, "pad token") })
            if (id < 0 || id >= t.VocabSize) throw new ArgumentException($"{name} id {id} is outside the vocabulary ({t.VocabSize})");
    }
}

/// <summary>Losses of one step; <see cref="Total"/> = ITC + ITM + (LM or MLM), as the reference sums them.</summary>
public sealed record PretrainLosses(Tensor Total, Tensor Itc, Tensor Itm, Tensor Text, double ItmAccuracy, double MlmAccuracy, float Alpha, float Temperature)
{
    public Dictionary<string, double> Metrics(PretrainKind kind) => new()
    {
        ["loss"] = Total.Item(), ["itc_loss"] = Itc.Item(), ["itm_loss"] = Itm.Item(), [kind == PretrainKind.Blip ? "lm_loss" : "mlm_loss"] = Text.Item(),
        ["itm_acc"] = ItmAccuracy, ["temp"] = Temperature, ["alpha"] = Alpha,
    };
}

/// <summary>The parts of one encoder side (online or momentum) that ITC reads.</summary>
internal sealed class UnimodalParts : Module
{
    public BlipVisionModel Vision { get; }
    public BlipTextModel Text { get; }
    public Linear VisionProj { get; }
    public Linear TextProj { get; }
    private readonly int _textLayers;

    public UnimodalParts(BlipVisionModel vision, BlipTextModel text, Linear visionProj, Linear textProj, int textLayers)
    {
        Vision = Add(vision); Text = Add(text); VisionProj = Add(visionProj); TextProj = Add(textProj);
        _textLayers = textLayers;
    }

    /// <summary>Text-only encoding (B, T, D): all layers without cross-attention (BLIP) or the text layers (ALBEF).</summary>
    public Tensor EncodeText(Tensor ids, Tensor mask)
    {
        var h = Text.Embeddings.Forward(ids, 0);
        return Text.ForwardLayers(h, BlipTextModel.SelfMask(mask, ids.Size(0), ids.Size(1), 0, false), null, null, 0, _textLayers);
    }

    public Tensor ImageFeature(Tensor imageEmbeds) => F.Normalize(VisionProj.Forward(imageEmbeds.Select(1, 0)), dim: -1);   // (B, E)
    public Tensor TextFeature(Tensor textEmbeds) => F.Normalize(TextProj.Forward(textEmbeds.Select(1, 0)), dim: -1);        // (B, E)
}

public sealed class BlipPretrainModel : Module
{
    public BlipPretrainConfig Config { get; }
    public ParameterStore Parameters { get; }
    public ParameterStore MomentumParameters { get; }
    public BlipVisionModel Vision { get; }
    /// <summary>The text encoder (ALBEF: text + fusion layers, the `bert` of <see cref="MlmModel"/>).</summary>
    public BlipTextModel TextEncoder { get; }
    /// <summary>BLIP: the image-grounded decoder (weights shared with the encoder except self-attention).</summary>
    public BlipTextLMHeadModel? Decoder { get; }
    /// <summary>ALBEF: the text encoder with its MLM head (`text_encoder.bert`, `text_encoder.cls`).</summary>
    public BlipTextLMHeadModel? MlmModel { get; }
    public Linear VisionProj { get; }
    public Linear TextProj { get; }
    public Linear ItmHead { get; }
    /// <summary>The learnable ITC temperature (shape [], clamped to [TempMin, TempMax] before each step).</summary>
    public Tensor Temp { get; }
    public MomentumCopy Momentum { get; }
    public FeatureQueue Queue { get; }
    private readonly UnimodalParts _online, _momentum;

    public BlipPretrainModel(BlipPretrainConfig config, Rng rng)
    {
        config.Validate();
        Config = config;
        var c = config.Model;
        var tc = c.TextConfig;
        var init = Init.Normal(0f, c.InitializerRange);
        var vb = VarBuilder.Init(rng);
        Vision = Add(new BlipVisionModel(vb["vision_model"], c.VisionConfig, c.InitializerRange));
        if (config.Kind == PretrainKind.Blip)
        {
            TextEncoder = Add(new BlipTextModel(vb["text_encoder"], tc));
            // BLIP ties the decoder's `bert` to the encoder except modules under "attention" (self-attention):
            // embeddings, cross-attention and feed-forward are one set of tensors.
            var store = vb.Store;
            using (vb.ShareParameters(name =>
                   name.StartsWith("text_decoder.bert.", StringComparison.Ordinal) && !name.Contains(".attention.", StringComparison.Ordinal)
                       ? store["text_encoder." + name["text_decoder.bert.".Length..]] : null))
                Decoder = Add(new BlipTextLMHeadModel(vb["text_decoder"], tc));
        }
        else
        {
            MlmModel = Add(new BlipTextLMHeadModel(vb["text_encoder"], tc, config.FusionStart));
            TextEncoder = MlmModel.Bert;
        }
        VisionProj = Add(new Linear(c.VisionConfig.HiddenSize, config.EmbedDim, vb["vision_proj"], weightInit: init, biasInit: Init.Zeros));
        TextProj = Add(new Linear(tc.HiddenSize, config.EmbedDim, vb["text_proj"], weightInit: init, biasInit: Init.Zeros));
        ItmHead = Add(new Linear(tc.HiddenSize, 2, vb["itm_head"], weightInit: init, biasInit: Init.Zeros));
        Temp = vb.Param("temp", [], Init.Constant(config.TempInit));
        Parameters = vb.Finish();
        int textLayers = config.Kind == PretrainKind.Blip ? tc.NumHiddenLayers : config.FusionStart;
        _online = new UnimodalParts(Vision, TextEncoder, VisionProj, TextProj, textLayers);

        // The momentum side: same names in its own store (never given to an optimizer), then copied.
        var mvb = VarBuilder.Init(new Rng(0));
        var mVision = new BlipVisionModel(mvb["vision_model"], c.VisionConfig, c.InitializerRange);
        var mText = new BlipTextModel(config.Kind == PretrainKind.Blip ? mvb["text_encoder"] : mvb["text_encoder"]["bert"], tc, config.FusionStart);
        var mVisionProj = new Linear(c.VisionConfig.HiddenSize, config.EmbedDim, mvb["vision_proj"], weightInit: init, biasInit: Init.Zeros);
        var mTextProj = new Linear(tc.HiddenSize, config.EmbedDim, mvb["text_proj"], weightInit: init, biasInit: Init.Zeros);
        MomentumParameters = mvb.Finish();
        _momentum = Add(new UnimodalParts(mVision, mText, mVisionProj, mTextProj, textLayers));
        Momentum = new MomentumCopy(Parameters, MomentumParameters);
        Momentum.CopyParams();
        Queue = new FeatureQueue(config.QueueSize, config.EmbedDim, rng);
    }

    /// <summary>The online unimodal features: image states (B, 1+N, Dv), text states (B, T, D) and the normalised
    /// ITC features (B, E) of each.</summary>
    public (Tensor ImageEmbeds, Tensor TextEmbeds, Tensor ImageFeat, Tensor TextFeat) EncodeUnimodal(Tensor pixels, Tensor ids, Tensor mask)
    {
        var image = Vision.Forward(pixels);
        var text = _online.EncodeText(ids, mask);
        return (image, text, _online.ImageFeature(image), _online.TextFeature(text));
    }

    /// <summary>The momentum features (B, E) of images and texts (no gradient).</summary>
    public (Tensor ImageFeatM, Tensor TextFeatM) EncodeMomentum(Tensor pixels, Tensor ids, Tensor mask)
    {
        using (Tensor.NoGrad())
            return (_momentum.ImageFeature(_momentum.Vision.Forward(pixels)), _momentum.TextFeature(_momentum.EncodeText(ids, mask)));
    }

    /// <summary>Clamps the temperature in place to [TempMin, TempMax] (the reference's <c>temp.clamp_</c>).</summary>
    public float ClampTemperature()
    {
        var s = Temp.Span;
        s[0] = Math.Clamp(s[0], Config.TempMin, Config.TempMax);
        return s[0];
    }

    /// <summary>Fused [CLS] states (3B, D) of the ITM rows: BLIP re-encodes the texts (first token → [ENC]) with
    /// cross-attention to the images; ALBEF runs its fusion layers on the text-layer states.</summary>
    private Tensor Fuse(Tensor textRows, Tensor imageRows, Tensor ids, Tensor mask, Tensor textEmbeds, Tensor imageEmbeds)
    {
        var image = imageEmbeds.IndexSelect(0, imageRows);
        var m = mask.IndexSelect(0, textRows);
        int n = textRows.Size(0), t = ids.Size(1);
        if (Config.Kind == PretrainKind.Blip)
        {
            var a = ids.IndexSelect(0, textRows).ToInt64Array();
            for (int i = 0; i < n; i++) a[i * t] = Config.EncTokenId;
            return TextEncoder.Forward(Tensor.FromArray(a, n, t), m, image, null, isDecoder: false).Select(1, 0);
        }
        var h = textEmbeds.IndexSelect(0, textRows);
        var selfMask = BlipTextModel.SelfMask(m, n, t, 0, false);
        return TextEncoder.ForwardLayers(h, selfMask, image, null, Config.FusionStart, Config.TextLayers).Select(1, 0);
    }

    /// <summary>ITM match probabilities softmax(itm_head(fused [CLS]))[:, 1] of B (image, text) pairs, no gradient
    /// (CapFilt's filter). BLIP encodes with [ENC] as the first token, as in training.</summary>
    public float[] ItmMatchProbability(Tensor pixels, Tensor ids, Tensor mask)
    {
        using (Tensor.NoGrad())
        {
            int b = ids.Size(0);
            if (pixels.Size(0) != b) throw new ArgumentException($"ITM needs one image per text: {pixels.Size(0)} images, {b} texts");
            var image = Vision.Forward(pixels);
            var text = Config.Kind == PretrainKind.Albef ? _online.EncodeText(ids, mask) : ids;
            var rows = Tensor.FromArray(Enumerable.Range(0, b).Select(i => (long)i).ToArray(), b);
            var p = F.Softmax(ItmHead.Forward(Fuse(rows, rows, ids, mask, text, image)), 1).ToArray();
            return Enumerable.Range(0, b).Select(i => p[2 * i + 1]).ToArray();
        }
    }

    /// <summary>ITC cosine similarities (images × texts) of the online features, no gradient.</summary>
    public Tensor ItcSimilarity(Tensor pixels, Tensor ids, Tensor mask)
    {
        using (Tensor.NoGrad())
        {
            var image = _online.ImageFeature(Vision.Forward(pixels));
            var text = _online.TextFeature(_online.EncodeText(ids, mask));
            return image.MatMul(text.T);
        }
    }

    /// <summary>BLIP only: captions (CapFilt's captioner) with the decoder from [DEC], stopping on sep_token_id.</summary>
    public Models.Generation.GenerationResult Generate(Tensor pixels, Models.Generation.GenerationOptions options)
    {
        if (Decoder is null) throw new InvalidOperationException("only the BLIP configuration has a decoder");
        using (Tensor.NoGrad())
        {
            var image = Vision.Forward(pixels);
            int b = image.Size(0);
            var tc = Config.Model.TextConfig;
            var bos = Tensor.FromArray(Enumerable.Repeat((long)tc.BosTokenId, b).ToArray(), b, 1);
            var o = options with { EosTokenIds = [tc.SepTokenId], PadTokenId = tc.PadTokenId };
            using var session = new BlipDecoderSession(Decoder, image, null);
            return Models.Generation.Generator.Generate(session, bos, null, o);
        }
    }

    /// <summary>One pre-training step's forward: clamps the temperature, updates the momentum copy, computes ITC
    /// (then enqueues the momentum features), ITM with hard negatives drawn from <paramref name="rng"/>, and LM (BLIP)
    /// or MLM (ALBEF, masking drawn from <paramref name="rng"/>).</summary>
    /// <param name="pixels">(B, 3, H, W)</param>
    /// <param name="ids">(B, T) int64, starting with the tokenizer's [CLS]/&lt;s&gt;, right-padded</param>
    /// <param name="mask">(B, T) keep-mask</param>
    /// <param name="idx">image ids for idx-aware ITC targets and negative sampling, or null (diagonal)</param>
    public PretrainLosses Forward(Tensor pixels, Tensor ids, Tensor mask, float alpha, Rng rng, long[]? idx = null)
    {
        int b = ids.Size(0);
        if (b < 2) throw new ArgumentException("pre-training needs a batch of at least 2 pairs (ITM draws in-batch negatives)");
        if (pixels.Size(0) != b || mask.Size(0) != b || mask.Size(1) != ids.Size(1))
            throw new ArgumentException($"batch mismatch: pixels {pixels.ShapeString}, ids {ids.ShapeString}, mask {mask.ShapeString}");
        float temp = ClampTemperature();
        var (imageEmbeds, textEmbeds, imageFeat, textFeat) = EncodeUnimodal(pixels, ids, mask);
        using (Tensor.NoGrad()) Momentum.Update(Config.Momentum);
        var (imageFeatM, textFeatM) = EncodeMomentum(pixels, ids, mask);
        var itc = PretrainObjectives.Itc(imageFeat, textFeat, imageFeatM, textFeatM, Queue.Image, Queue.Text, Temp, alpha, idx, idx is null ? null : Queue.Idx);
        // ITC copied the queue (Cat) before this write, as the reference enqueues after the loss.
        Queue.Enqueue(imageFeatM, textFeatM, idx);

        var (negImage, negText) = PretrainObjectives.SampleHardNegatives(itc, idx, rng, Config.NegativeWeightEps);
        var itm = PretrainObjectives.Itm((tr, ir) => Fuse(tr, ir, ids, mask, textEmbeds, imageEmbeds), ItmHead.Forward, negImage, negText);

        Tensor textLoss; double mlmAcc = 0;
        if (Config.Kind == PretrainKind.Blip)
        {
            var tc = Config.Model.TextConfig;
            var (decIds, labels) = PretrainObjectives.DecoderInputs(ids, tc.BosTokenId, tc.PadTokenId);
            var logits = Decoder!.Forward(decIds, mask, imageEmbeds, null);
            textLoss = PretrainObjectives.LmLoss(logits, labels, Config.LabelSmoothing);
        }
        else
        {
            var (masked, labels) = MlmMasking.Apply(ids.ToInt64Array(), new HashSet<long>(Config.SpecialTokenIds), Config.MaskTokenId,
                Config.FirstOrdinaryTokenId, Config.Model.TextConfig.VocabSize, rng, Config.MlmProbability);
            var mIds = Tensor.FromArray(masked, b, ids.Size(1));
            var h = TextEncoder.ForwardLayers(TextEncoder.Embeddings.Forward(mIds, 0), BlipTextModel.SelfMask(mask, b, ids.Size(1), 0, false),
                null, null, 0, Config.FusionStart);
            h = TextEncoder.ForwardLayers(h, BlipTextModel.SelfMask(mask, b, ids.Size(1), 0, false), imageEmbeds, null, Config.FusionStart, Config.TextLayers);
            (textLoss, mlmAcc) = PretrainObjectives.MlmLoss(MlmModel!.Head(h), Tensor.FromArray(labels, b, ids.Size(1)));
        }
        var total = itc.Loss.Add(itm.Loss).Add(textLoss);
        return new PretrainLosses(total, itc.Loss, itm.Loss, textLoss, itm.Accuracy, mlmAcc, alpha, temp);
    }
}
