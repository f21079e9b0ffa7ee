// BridgeTower (Xu et al., arXiv 2206.08657): a RoBERTa text tower and a CLIP ViT vision tower whose top layers are
// bridged, layer by layer, into a cross-modal encoder of paired co-attention layers. This is a port of
// HF transformers v4.47.1 `BridgeTowerModel` (modeling_bridgetower.py) that loads HF checkpoints unchanged and
// reproduces its outputs, including where HF's own forward crashes (per-layer cross-modal transforms, one shared
// link tower for every layer), for which the port does what the configuration asks for.
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn;

namespace Vlm.Models.BridgeTower;

/// <summary>HF BridgeTowerModelOutput, plus the last uni-modal states the contrastive head needs.</summary>
public sealed class BridgeTowerModelOutput : IDisposable
{
    /// <summary>(B, L, hidden) last cross-modal text layer output.</summary>
    public required Tensor TextFeatures { get; init; }
    /// <summary>(B, 1 + patches, hidden) last cross-modal image layer output.</summary>
    public required Tensor ImageFeatures { get; init; }
    /// <summary>(B, 2·hidden) concat(text pooler(cls), image pooler(cls)).</summary>
    public required Tensor PoolerOutput { get; init; }
    /// <summary>Last text-tower layer output (B, L, text_hidden).</summary>
    public required Tensor LastTextHidden { get; init; }
    /// <summary>Last executed vision block output, batch-first (B, 1 + patches, vision_hidden), before ln_post.</summary>
    public required Tensor LastImageHidden { get; init; }
    /// <summary>Text tower states: embeddings, then one per text layer (B, L, text_hidden).</summary>
    public List<Tensor>? TextHiddenStates { get; init; }
    /// <summary>Vision states in HF's (seq, batch, vision_hidden) layout: after ln_pre, then one per executed block.</summary>
    public List<Tensor>? ImageHiddenStates { get; init; }
    /// <summary>Per cross-modal layer: (text (B, L, h), image (B, 1 + patches, h)).</summary>
    public List<(Tensor Text, Tensor Image)>? CrossHiddenStates { get; init; }
    /// <summary>Per cross-modal layer: self-attention probabilities (text (B, heads, L, L), image (B, heads, N, N)).</summary>
    public List<(Tensor Text, Tensor Image)>? Attentions { get; init; }
    /// <summary>Per cross-modal layer, when <see cref="BridgeTowerForwardOptions.OutputCrossAttentions"/>: cross-attention
    /// probabilities (text→image (B, heads, L, N), image→text (B, heads, N, L)). Not part of HF's outputs.</summary>
    public List<(Tensor TextToImage, Tensor ImageToText)>? CrossAttentions { get; init; }

    /// <summary>Returns every tensor of the output (states and attentions included) to the pool.</summary>
    public void Dispose()
    {
        TextFeatures.Dispose(); ImageFeatures.Dispose(); PoolerOutput.Dispose();
        LastTextHidden.Dispose(); LastImageHidden.Dispose();
        foreach (var t in TextHiddenStates ?? []) t.Dispose();
        foreach (var t in ImageHiddenStates ?? []) t.Dispose();
        foreach (var (a, b) in CrossHiddenStates ?? []) { a.Dispose(); b.Dispose(); }
        foreach (var (a, b) in Attentions ?? []) { a.Dispose(); b.Dispose(); }
        foreach (var (a, b) in CrossAttentions ?? []) { a.Dispose(); b.Dispose(); }
    }

    /// <summary>Outputs under HF's flattened ModelOutput names (hidden_states.2.1.0 = hidden_states[2][1][0]).</summary>
    public void AddNamed(IDictionary<string, Tensor> into, string prefix = "")
    {
        into[prefix + "text_features"] = TextFeatures;
        into[prefix + "image_features"] = ImageFeatures;
        into[prefix + "pooler_output"] = PoolerOutput;
        AddStates(into, prefix);
    }

    /// <summary>hidden_states.* and attentions.* only (heads' outputs carry these but not the features).</summary>
    public void AddStates(IDictionary<string, Tensor> into, string prefix = "")
    {
        if (TextHiddenStates != null)
            for (int i = 0; i < TextHiddenStates.Count; i++) into[$"{prefix}hidden_states.0.{i}"] = TextHiddenStates[i];
        if (ImageHiddenStates != null)
            for (int i = 0; i < ImageHiddenStates.Count; i++) into[$"{prefix}hidden_states.1.{i}"] = ImageHiddenStates[i];
        if (CrossHiddenStates != null)
            for (int i = 0; i < CrossHiddenStates.Count; i++)
            {
                into[$"{prefix}hidden_states.2.{i}.0"] = CrossHiddenStates[i].Text;
                into[$"{prefix}hidden_states.2.{i}.1"] = CrossHiddenStates[i].Image;
            }
        if (Attentions != null)
            for (int i = 0; i < Attentions.Count; i++)
            {
                into[$"{prefix}attentions.{i}.0"] = Attentions[i].Text;
                into[$"{prefix}attentions.{i}.1"] = Attentions[i].Image;
            }
    }
}

/// <summary>Options of one forward call (HF keyword arguments).</summary>
public sealed record BridgeTowerForwardOptions
{
    public bool OutputHiddenStates { get; init; }
    public bool OutputAttentions { get; init; }
    /// <summary>Also return the cross-attention probabilities of every cross-modal layer (attention maps).</summary>
    public bool OutputCrossAttentions { get; init; }
    /// <summary>Resize the position embeddings to the image's patch grid (other image sizes / aspect ratios).</summary>
    public bool InterpolatePosEncoding { get; init; }
    /// <summary>Token type of the image tokens (1; the NLVR2 head uses 2 for its second image; 0 means 1, as in HF).</summary>
    public int ImageTokenTypeIdx { get; init; } = 1;

    public static readonly BridgeTowerForwardOptions Default = new();
}

/// <summary>HF `BridgeTowerModel`: towers, bridges and the cross-modal encoder (parameter names without prefix).</summary>
public sealed class BridgeTowerModel : Module, IBridgeTowerEncoder
{
    public BridgeTowerConfig Config { get; }
    public BtContext Context { get; }
    public BtTextEmbeddings TextEmbeddings { get; }
    public IReadOnlyList<BtTextLayer> TextLayers { get; }
    public BtVisionTransformer Vision { get; }
    public Tensor TokenTypeEmbeddings { get; }
    private readonly BtLinear[] _textTransform, _imageTransform;
    private readonly BtCrossLayer[] _crossText, _crossImage;
    private readonly BtLinkTower[] _textLink, _imageLink;
    private readonly BtLayerNorm _crossTextLn, _crossImageLn;
    private readonly BtPooler _textPooler, _imagePooler;

    /// <param name="tokenTypes">rows of token_type_embeddings: 2 (HF), 3 for the NLVR2 head</param>
    public BridgeTowerModel(BridgeTowerConfig config, BtVars vb, BtContext? context = null, int tokenTypes = 2)
    {
        config.Validate();
        Config = config;
        Context = context ?? new BtContext();
        var t = config.TextConfig; var v = config.VisionConfig;
        int h = config.HiddenSize, n = config.NumHiddenLayers;
        var init = BtInit.Weight(config.InitializerFactor);

        if (config.ShareCrossModalTransformerLayers)
        {
            _textTransform = [Add(new BtLinear(vb["cross_modal_text_transform"], t.HiddenSize, h, init: init))];
            _imageTransform = [Add(new BtLinear(vb["cross_modal_image_transform"], v.HiddenSize, h, init: init))];
        }
        else
        {
            // One transform per cross-modal layer (HF builds these, then crashes calling the ModuleList).
            _textTransform = Enumerable.Range(0, n).Select(i => Add(new BtLinear(vb["cross_modal_text_transform"][i], t.HiddenSize, h, init: init))).ToArray();
            _imageTransform = Enumerable.Range(0, n).Select(i => Add(new BtLinear(vb["cross_modal_image_transform"][i], v.HiddenSize, h, init: init))).ToArray();
        }
        TokenTypeEmbeddings = vb["token_type_embeddings"].Param("weight", [tokenTypes, h], init);

        Vision = Add(new BtVisionTransformer(vb["vision_model"]["visual"], v,
            config.InitLayernormFromVisionEncoder && !v.ShareLayernorm));

        var tv = vb["text_model"];
        TextEmbeddings = Add(new BtTextEmbeddings(tv["embeddings"], t, Context));
        TextLayers = Enumerable.Range(0, t.NumHiddenLayers).Select(i => Add(new BtTextLayer(tv["encoder"]["layer"][i], t, Context))).ToArray();
        // HF's text model owns a pooler BridgeTowerModel never calls; it is part of every checkpoint.
        Add(new BtPooler(tv["pooler"], t.HiddenSize, t.InitializerFactor));

        _crossImage = Enumerable.Range(0, n).Select(i => Add(new BtCrossLayer(vb["cross_modal_image_layers"][i], t, Context))).ToArray();
        _crossText = Enumerable.Range(0, n).Select(i => Add(new BtCrossLayer(vb["cross_modal_text_layers"][i], t, Context))).ToArray();
        _imagePooler = Add(new BtPooler(vb["cross_modal_image_pooler"], h, config.InitializerFactor));
        _textPooler = Add(new BtPooler(vb["cross_modal_text_pooler"], h, config.InitializerFactor));
        _crossTextLn = Add(new BtLayerNorm(vb["cross_modal_text_layernorm"], h, config.LayerNormEps));
        _crossImageLn = Add(new BtLayerNorm(vb["cross_modal_image_layernorm"], h, config.LayerNormEps));
        if (config.ShareLinkTowerLayers)
        {
            // One link tower serves every bridge (HF builds one, then crashes indexing it when n ≥ 2).
            _textLink = [Add(new BtLinkTower(vb["cross_modal_text_link_tower"], config))];
            _imageLink = [Add(new BtLinkTower(vb["cross_modal_image_link_tower"], config))];
        }
        else
        {
            _textLink = Enumerable.Range(0, n - 1).Select(i => Add(new BtLinkTower(vb["cross_modal_text_link_tower"][i], config))).ToArray();
            _imageLink = Enumerable.Range(0, n - 1).Select(i => Add(new BtLinkTower(vb["cross_modal_image_link_tower"][i], config))).ToArray();
        }
    }

    private BtLinear TextTransform(int layer) => _textTransform[_textTransform.Length == 1 ? 0 : layer];
    private BtLinear ImageTransform(int layer) => _imageTransform[_imageTransform.Length == 1 ? 0 : layer];
    private BtLinkTower TextLink(int bridge) => _textLink[_textLink.Length == 1 ? 0 : bridge];
    private BtLinkTower ImageLink(int bridge) => _imageLink[_imageLink.Length == 1 ? 0 : bridge];

    /// <summary>The image transform of the last cross-modal layer (what the contrastive image embedding uses).</summary>
    internal BtLinear LastImageTransform => ImageTransform(Config.NumHiddenLayers - 1);

    /// <summary>HF get_extended_attention_mask: (B, L) 1/0 → additive (B, 1, 1, L) of 0 / float32 min.</summary>
    public static Tensor ExtendedMask(Tensor attentionMask)
    {
        if (attentionMask.Rank != 2) throw new ArgumentException($"attention_mask must be (batch, seq), got {attentionMask.ShapeString}");
        int b = attentionMask.Size(0), l = attentionMask.Size(1);
        var m = attentionMask.ToArray();
        var r = new float[m.Length];
        for (int i = 0; i < m.Length; i++) r[i] = (1f - m[i]) * float.MinValue;
        return Tensor.FromArray(r, b, 1, 1, l);
    }

    /// <summary>Token-type row <paramref name="index"/> as (1, hidden), validated.</summary>
    internal Tensor TokenType(int index) => TokenTypeRow(TokenTypeEmbeddings, index);

    /// <summary>Row <paramref name="index"/> of a token-type table as (1, hidden), validated (BridgeTower and METER).</summary>
    internal static Tensor TokenTypeRow(Tensor table, int index)
    {
        if (index < 0 || index >= table.Size(0))
            throw new ArgumentOutOfRangeException(nameof(index), $"image token type {index} but token_type_embeddings has {table.Size(0)} rows");
        return Tensor.Embedding(table, Tensor.FromArray(new long[] { index }, 1));
    }

    /// <summary>A (batch, seq, dim) vision state as HF's hidden_states hold it: a (seq, batch, dim) copy (BridgeTower and
    /// METER). The permuted view is let go once copied, so disposing the copy frees the branch (see Tensor.Dispose).</summary>
    internal static Tensor Lnd(Tensor x)
    {
        var view = x.Permute(1, 0, 2);
        var copy = view.Contiguous();
        Intermediates.Free(view, keep: copy);
        return copy;
    }

    /// <summary>Checks one forward call's inputs (BridgeTower and METER); returns (B, L).</summary>
    internal static (int B, int L) CheckInputs(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues)
    {
        if (inputIds.Rank != 2) throw new ArgumentException($"input_ids must be (batch, seq), got {inputIds.ShapeString}");
        int b = inputIds.Size(0), l = inputIds.Size(1);
        if (pixelValues.Rank != 4 || pixelValues.Size(0) != b)
            throw new ArgumentException($"pixel_values {pixelValues.ShapeString} must be (batch={b}, channels, H, W)");
        if (attentionMask != null && !attentionMask.Shape.SequenceEqual(inputIds.Shape))
            throw new ArgumentException($"attention_mask {attentionMask.ShapeString} must match input_ids {inputIds.ShapeString}");
        return (b, l);
    }

    /// <param name="inputIds">(B, L) int64 RoBERTa ids, right-padded with pad_token_id</param>
    /// <param name="attentionMask">(B, L) 1 = token, 0 = padding; null = all ones</param>
    /// <param name="pixelValues">(B, 3, H, W) normalised pixels (HF ignores pixel_mask: every image token is attended)</param>
    public BridgeTowerModelOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, BridgeTowerForwardOptions? options = null)
    {
        var o = options ?? BridgeTowerForwardOptions.Default;
        var (b, l) = CheckInputs(inputIds, attentionMask, pixelValues);
        var hsText = o.OutputHiddenStates ? new List<Tensor>() : null;
        var hsImage = o.OutputHiddenStates ? new List<Tensor>() : null;
        var hsCross = o.OutputHiddenStates ? new List<(Tensor, Tensor)>() : null;
        var attns = o.OutputAttentions ? new List<(Tensor, Tensor)>() : null;
        var crossAttns = o.OutputCrossAttentions ? new List<(Tensor, Tensor)>() : null;
        bool wantCross = crossAttns != null;

        var textEmbeds = TextEmbeddings.Forward(inputIds);                               // (B, L, Dt)
        hsText?.Add(textEmbeds);
        var textMask = ExtendedMask(attentionMask ?? Tensor.Ones(b, l));                 // (B, 1, 1, L)
        int split = Config.SplitIndex, nText = TextLayers.Count;
        for (int i = 0; i < split; i++)
        {
            var next = TextLayers[i].Forward(textEmbeds, textMask);
            if (hsText is null) BtInit.Free(textEmbeds);
            textEmbeds = next;
            hsText?.Add(textEmbeds);
        }

        var imageEmbeds = Vision.ForwardPre(pixelValues, o.InterpolatePosEncoding);       // (B, N, Dv)
        hsImage?.Add(Lnd(imageEmbeds));
        for (int i = 0; i < split; i++)
        {
            var next = Vision.Blocks[i].Forward(imageEmbeds);
            BtInit.Free(imageEmbeds);
            imageEmbeds = next;
            hsImage?.Add(Lnd(imageEmbeds));
        }

        // First cross-modal layer: inputs are the transformed uni-modal outputs (no bridge yet).
        var textType = TokenType(0);                                                     // (1, h)
        // HF: `image_token_type_idx if image_token_type_idx else 1`, so 0 also means 1.
        var imageType = TokenType(o.ImageTokenTypeIdx == 0 ? 1 : o.ImageTokenTypeIdx);   // (1, h)
        var ct = TextTransform(0).Forward(textEmbeds);
        var ctT = ct.Add(textType);
        var crossText = _crossTextLn.Forward(ctT);                                       // (B, L, h)
        Intermediates.FreeAll(ct, ctT);
        var post = Vision.ForwardPost(imageEmbeds);
        var ci = ImageTransform(0).Forward(post);
        var ciT = ci.Add(imageType);
        var crossImage = _crossImageLn.Forward(ciT);                                     // (B, N, h)
        Intermediates.FreeAll(post, ci, ciT);

        // The image mask is all ones (HF ignores pixel_mask), so its additive mask is zero and is skipped.
        var (crossTextFeat, pText, xText) = _crossText[0].Forward(crossText, crossImage, textMask, null, o.OutputAttentions, wantCross);
        var (crossImageFeat, pImage, xImage) = _crossImage[0].Forward(crossImage, crossText, null, textMask, o.OutputAttentions, wantCross);
        Intermediates.FreeAll(crossText, crossImage);
        hsCross?.Add((crossTextFeat, crossImageFeat));
        if (attns != null) attns.Add((pText!, pImage!));
        crossAttns?.Add((xText!, xImage!));

        for (int i = split, link = 0; i < nText; i++, link++)
        {
            var nextText = TextLayers[i].Forward(textEmbeds, textMask);
            if (hsText is null) BtInit.Free(textEmbeds);
            textEmbeds = nextText;
            var nextImage = Vision.Blocks[i].Forward(imageEmbeds);
            BtInit.Free(imageEmbeds);   // the image states list holds (seq, batch) copies, not these
            imageEmbeds = nextImage;

            var p2 = Vision.ForwardPost(imageEmbeds);
            var it = ImageTransform(link + 1).Forward(p2);
            var imageWithLn = it.Add(imageType);
            Intermediates.FreeAll(p2, it);
            var tt = TextTransform(link + 1).Forward(textEmbeds);
            var textWithType = tt.Add(textType);
            BtInit.Free(tt);

            var bridgedText = TextLink(link).Forward(textWithType, crossTextFeat);
            var bridgedImage = ImageLink(link).Forward(imageWithLn, crossImageFeat);
            Intermediates.FreeAll(textWithType, imageWithLn);
            if (hsCross is null) { Intermediates.FreeAll(crossTextFeat, crossImageFeat); }

            (crossTextFeat, pText, xText) = _crossText[link + 1].Forward(bridgedText, bridgedImage, textMask, null, o.OutputAttentions, wantCross);
            (crossImageFeat, pImage, xImage) = _crossImage[link + 1].Forward(bridgedImage, bridgedText, null, textMask, o.OutputAttentions, wantCross);
            Intermediates.FreeAll(bridgedText, bridgedImage);

            hsText?.Add(textEmbeds);
            hsImage?.Add(Lnd(imageEmbeds));
            hsCross?.Add((crossTextFeat, crossImageFeat));
            if (attns != null) attns.Add((pText!, pImage!));
        crossAttns?.Add((xText!, xImage!));
        }

        var textPooled = _textPooler.Forward(crossTextFeat);
        var imagePooled = _imagePooler.Forward(crossImageFeat);
        var pooled = Tensor.Cat([textPooled, imagePooled], -1);
        Intermediates.FreeAll(textPooled, imagePooled);
        return new BridgeTowerModelOutput
        {
            TextFeatures = crossTextFeat,
            ImageFeatures = crossImageFeat,
            PoolerOutput = pooled,
            LastTextHidden = textEmbeds,
            LastImageHidden = imageEmbeds,
            TextHiddenStates = hsText,
            ImageHiddenStates = hsImage,
            CrossHiddenStates = hsCross,
            Attentions = attns,
            CrossAttentions = crossAttns,
        };
    }
}
