// BLIP task heads (arXiv 2201.12086): image-text matching / contrastive similarity (§3.2 ITM + ITC heads),
// VQA as answer generation (§5.3), and image captioning (§3.2 LM), as HF transformers v4.47.1 `modeling_blip.py`
// builds them (BlipForImageTextRetrieval, BlipForQuestionAnswering, BlipForConditionalGeneration), including HF's
// generation conventions (BLIP stops on sep_token_id; captioning replaces the first prompt token with bos and drops
// the prompt's last column).
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.Generation;
using Vlm.Nn;

namespace Vlm.Models.Blip;

/// <summary>Loading helpers: HF folders load unchanged (strict: every stored key must be used).</summary>
public static class BlipLoader
{
    public static (BlipConfig config, ParameterStore store, T model) Load<T>(string folder, Func<VarBuilder, BlipConfig, T> build) where T : Module
    {
        var config = BlipConfig.Load(folder);
        using var src = CheckpointLoader.Open(folder);
        var vb = VarBuilder.FromWeights(src);
        var model = build(vb, config);
        var store = vb.Finish();
        model.Eval();
        return (config, store, model);
    }
}

/// <summary>A BLIP decoder over fixed encoder states, with a KV cache, for <see cref="Generator"/>.</summary>
public sealed class BlipDecoderSession : IIncrementalDecoder, IDisposable
{
    private readonly BlipTextLMHeadModel _decoder;
    private Tensor _encoder;        // (B, Lenc, E)
    private Tensor? _encoderMask;   // (B, Lenc)
    private BlipKvCache _cache;
    private bool _ownsEncoder;      // after a reorder the rows are this session's own copies

    public BlipDecoderSession(BlipTextLMHeadModel decoder, Tensor encoder, Tensor? encoderMask)
    {
        _decoder = decoder; _encoder = encoder; _encoderMask = encoderMask;
        _cache = new BlipKvCache(decoder.Config.NumHiddenLayers);
    }

    public int CachedLength => _cache.Length;

    public Tensor Step(Tensor newIds, Tensor attentionMask)
    {
        var h = _decoder.Bert.Forward(newIds, attentionMask, _encoder, _encoderMask, isDecoder: true, _cache);
        var last = h.Narrow(1, h.Size(1) - 1, 1);                                     // (B, 1, D)
        var scores = _decoder.Head(last);                                              // (B, 1, V)
        var logits = scores.Squeeze(1);                                                // (B, V)
        Intermediates.FreeAll(h, last);
        Intermediates.Free(scores, keep: logits);
        return logits;
    }

    public void Reset()
    {
        _cache.Release();
        _cache = new BlipKvCache(_decoder.Config.NumHiddenLayers);
    }

    public void Reorder(int[] rows)
    {
        var t = Tensor.FromArray(rows.Select(r => (long)r).ToArray(), rows.Length);
        var (oldEnc, oldMask) = (_encoder, _encoderMask);
        _encoder = _encoder.IndexSelect(0, t);
        _encoderMask = _encoderMask?.IndexSelect(0, t);
        if (_ownsEncoder) Intermediates.FreeAll(oldEnc, oldMask);
        _ownsEncoder = true;
        _cache.Reorder(rows);
    }

    /// <summary>Returns the cached keys/values (and reordered encoder rows) to the buffer pool in no-grad decoding;
    /// the caller's encoder states are left alone.</summary>
    public void Dispose()
    {
        _cache.Release();
        if (_ownsEncoder) Intermediates.FreeAll(_encoder, _encoderMask);
    }
}

/// <summary>HF BlipForImageTextRetrieval.</summary>
public sealed class BlipForImageTextRetrieval : Module
{
    public BlipConfig Config { get; }
    public BlipVisionModel Vision { get; }
    public BlipTextModel TextEncoder { get; }
    private readonly Linear _visionProj, _textProj, _itm;

    public BlipForImageTextRetrieval(VarBuilder vb, BlipConfig c)
    {
        Config = c;
        var init = Init.Normal(0f, c.InitializerRange);
        Vision = Add(new BlipVisionModel(vb["vision_model"], c.VisionConfig, c.InitializerRange));
        TextEncoder = Add(new BlipTextModel(vb["text_encoder"], c.TextConfig));
        _visionProj = Add(new Linear(c.VisionConfig.HiddenSize, c.ImageTextHiddenSize, vb["vision_proj"], weightInit: init, biasInit: Init.Zeros));
        _textProj = Add(new Linear(c.TextConfig.HiddenSize, c.ImageTextHiddenSize, vb["text_proj"], weightInit: init, biasInit: Init.Zeros));
        _itm = Add(new Linear(c.TextConfig.HiddenSize, 2, vb["itm_head"], weightInit: init, biasInit: Init.Zeros));
    }

    public static BlipForImageTextRetrieval FromFolder(string folder) => BlipLoader.Load(folder, (vb, c) => new BlipForImageTextRetrieval(vb, c)).model;

    /// <summary>ITM logits (B, 2) of text-encoder outputs that cross-attended to the image (their [CLS] row is used).</summary>
    public Tensor ItmLogits(Tensor crossText) => _itm.Forward(crossText.Select(1, 0));

    /// <summary>L2-normalised ITC features (B, E) of vision states (their [CLS] row).</summary>
    public Tensor ImageFeatures(Tensor image) => F.Normalize(_visionProj.Forward(image.Select(1, 0)), dim: -1);

    /// <summary>L2-normalised ITC features (B, E) of uni-modal text-encoder outputs (their [CLS] row).</summary>
    public Tensor TextFeatures(Tensor text) => F.Normalize(_textProj.Forward(text.Select(1, 0)), dim: -1);

    /// <returns>itm_score: ITM logits (B, 2) when <paramref name="useItmHead"/>, else the cosine matrix
    /// (images, texts); the vision last hidden state; the text-encoder output ("question_embeds").</returns>
    public (Tensor itmScore, Tensor lastHiddenState, Tensor questionEmbeds) Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixels,
        bool useItmHead = true, bool interpolatePosEncoding = false)
    {
        var image = Vision.Forward(pixels, interpolatePosEncoding);                    // (B, 1+N, Dv)
        if (useItmHead)
        {
            if (image.Size(0) != inputIds.Size(0)) throw new ArgumentException($"ITM needs one image per text: {image.Size(0)} images, {inputIds.Size(0)} texts");
            var q = TextEncoder.Forward(inputIds, attentionMask, image, null, isDecoder: false);
            return (ItmLogits(q), image, q);
        }
        // ITC path: the text encoder without cross-attention.
        var t = TextEncoder.Forward(inputIds, attentionMask, null, null, isDecoder: false);
        var imgFeat = ImageFeatures(image);                                            // (Bi, E)
        var txtFeat = TextFeatures(t);                                                 // (Bt, E)
        return (imgFeat.MatMul(txtFeat.T), image, t);
    }
}

/// <summary>HF BlipForQuestionAnswering: vision encoder, question encoder (cross-attends to the image) and answer
/// decoder (cross-attends to the question encoding).</summary>
public sealed class BlipForQuestionAnswering : Module
{
    public BlipConfig Config { get; }
    public BlipVisionModel Vision { get; }
    public BlipTextModel TextEncoder { get; }
    public BlipTextLMHeadModel TextDecoder { get; }

    public BlipForQuestionAnswering(VarBuilder vb, BlipConfig c)
    {
        Config = c;
        if (c.TextConfig.EncoderHiddenSize != c.TextConfig.HiddenSize)
            throw new InvalidDataException($"BlipForQuestionAnswering: the answer decoder cross-attends to the question encoder, so text_config.encoder_hidden_size ({c.TextConfig.EncoderHiddenSize}) must equal text_config.hidden_size ({c.TextConfig.HiddenSize})");
        Vision = Add(new BlipVisionModel(vb["vision_model"], c.VisionConfig, c.InitializerRange));
        TextEncoder = Add(new BlipTextModel(vb["text_encoder"], c.TextConfig));
        TextDecoder = Add(new BlipTextLMHeadModel(vb["text_decoder"], c.TextConfig));
    }

    public static BlipForQuestionAnswering FromFolder(string folder) => BlipLoader.Load(folder, (vb, c) => new BlipForQuestionAnswering(vb, c)).model;

    /// <summary>Image → vision states; question → encoder states (B, Lq, D).</summary>
    public (Tensor image, Tensor question) Encode(Tensor inputIds, Tensor? attentionMask, Tensor pixels, bool interpolatePosEncoding = false)
    {
        var image = Vision.Forward(pixels, interpolatePosEncoding);
        var q = TextEncoder.Forward(inputIds, attentionMask, image, null, isDecoder: false);
        return (image, q);
    }

    /// <summary>Training forward: the labels are also the decoder inputs (pad them with pad_token_id, not −100);
    /// loss = shifted CE with text_config.label_smoothing, mean over every position.</summary>
    public (Tensor loss, Tensor imageEmbeds) Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixels, Tensor labels,
        Tensor? decoderAttentionMask = null, bool interpolatePosEncoding = false)
    {
        var (image, q) = Encode(inputIds, attentionMask, pixels, interpolatePosEncoding);
        var logits = TextDecoder.Forward(labels, decoderAttentionMask, q, attentionMask);
        return (TextDecoder.Loss(logits, labels), image);
    }

    /// <summary>HF generate(): the decoder starts from [bos], cross-attends to the question encoding with an
    /// all-ones mask (padded question positions included, as HF), and stops on sep_token_id.</summary>
    public GenerationResult Generate(Tensor inputIds, Tensor? attentionMask, Tensor pixels, GenerationOptions options, bool interpolatePosEncoding = false)
    {
        var (_, q) = Encode(inputIds, attentionMask, pixels, interpolatePosEncoding);
        int b = q.Size(0);
        var bos = Tensor.FromArray(Enumerable.Repeat((long)Config.TextConfig.BosTokenId, b).ToArray(), b, 1);
        var o = options with { EosTokenIds = [Config.TextConfig.SepTokenId], PadTokenId = Config.TextConfig.PadTokenId };
        using var session = new BlipDecoderSession(TextDecoder, q, null);
        return Generator.Generate(session, bos, null, o);
    }
}

/// <summary>HF BlipForConditionalGeneration (captioning).</summary>
public sealed class BlipForConditionalGeneration : Module
{
    public BlipConfig Config { get; }
    public BlipVisionModel Vision { get; }
    public BlipTextLMHeadModel TextDecoder { get; }

    public BlipForConditionalGeneration(VarBuilder vb, BlipConfig c)
    {
        Config = c;
        if (c.TextConfig.EncoderHiddenSize != c.VisionConfig.HiddenSize)
            throw new InvalidDataException($"BlipForConditionalGeneration: text_config.encoder_hidden_size ({c.TextConfig.EncoderHiddenSize}) must equal vision_config.hidden_size ({c.VisionConfig.HiddenSize})");
        Vision = Add(new BlipVisionModel(vb["vision_model"], c.VisionConfig, c.InitializerRange));
        TextDecoder = Add(new BlipTextLMHeadModel(vb["text_decoder"], c.TextConfig));
    }

    public static BlipForConditionalGeneration FromFolder(string folder) => BlipLoader.Load(folder, (vb, c) => new BlipForConditionalGeneration(vb, c)).model;

    /// <summary>Decoder logits (B, T, V) for every input position (causal, cross-attending to the image), and the
    /// shifted LM loss when <paramref name="labels"/> are given (−100 ignored).</summary>
    public (Tensor logits, Tensor? loss, Tensor imageEmbeds) Forward(Tensor pixels, Tensor inputIds, Tensor? attentionMask, Tensor? labels = null,
        bool interpolatePosEncoding = false)
    {
        var image = Vision.Forward(pixels, interpolatePosEncoding);
        var logits = TextDecoder.Forward(inputIds, attentionMask, image, null);
        return (logits, labels is null ? null : TextDecoder.Loss(logits, labels), image);
    }

    /// <summary>HF generate(): without a prompt the decoder starts from [bos]; with one, its first token is replaced
    /// by bos and its last column (the trailing [SEP]) and that of the mask are dropped. Stops on sep_token_id.</summary>
    public GenerationResult Generate(Tensor pixels, Tensor? inputIds, Tensor? attentionMask, GenerationOptions options, bool interpolatePosEncoding = false)
    {
        var image = Vision.Forward(pixels, interpolatePosEncoding);
        int b = image.Size(0);
        var tc = Config.TextConfig;
        Tensor prompt; Tensor? mask = null;
        if (inputIds is null) prompt = Tensor.FromArray(Enumerable.Repeat((long)tc.BosTokenId, b).ToArray(), b, 1);
        else
        {
            if (inputIds.Rank != 2 || inputIds.Size(0) != b) throw new ArgumentException($"prompt input_ids {inputIds.ShapeString} are not (batch {b}, len)");
            int l = inputIds.Size(1);
            if (l < 2) throw new ArgumentException("a caption prompt needs at least 2 tokens (HF drops its last column)");
            var a = inputIds.ToInt64Array();
            var p = new long[b * (l - 1)];
            for (int i = 0; i < b; i++)
                for (int j = 0; j < l - 1; j++) p[i * (l - 1) + j] = j == 0 ? tc.BosTokenId : a[i * l + j];
            prompt = Tensor.FromArray(p, b, l - 1);
            if (attentionMask != null)
            {
                if (!attentionMask.ShapeArray().SequenceEqual(inputIds.ShapeArray())) throw new ArgumentException($"attention_mask {attentionMask.ShapeString} does not match input_ids {inputIds.ShapeString}");
                mask = attentionMask.Narrow(1, 0, l - 1).Contiguous();
            }
        }
        var o = options with { EosTokenIds = [tc.SepTokenId], PadTokenId = tc.PadTokenId };
        using var session = new BlipDecoderSession(TextDecoder, image, null);
        return Generator.Generate(session, prompt, mask, o);
    }
}
