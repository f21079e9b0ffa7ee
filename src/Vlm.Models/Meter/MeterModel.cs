// METER (Dou et al., "An Empirical Study of Training End-to-End Vision-and-Language Transformers", arXiv
// 2111.02387): a text tower and a vision tower run to their last layer, and only that last layer feeds a stack of
// co-attention cross-modal layers (each cross layer's input is the previous cross layer's output). BridgeTower
// (arXiv 2206.08657) is METER plus bridges from the top uni-modal layers into every cross-modal layer; its paper
// ablates exactly this difference, so this model is built from BridgeTower's own layers (Vlm.Models.BridgeTower:
// RoBERTa text layers, CLIP ViT blocks, BERT-style cross-modal layers, poolers) under BridgeTower's parameter names,
// read from the same BridgeTowerConfig. The only parameters BridgeTower has and METER lacks are the link towers
// (bridge LayerNorms and, for scaled_add / interpolate, one scalar each).
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Nn;

namespace Vlm.Models.Meter;

/// <summary>
/// METER over BridgeTower's layers. Config mapping (<see cref="ValidateConfig"/>): every BridgeTowerConfig field
/// keeps its meaning except the link-tower fields (<c>link_tower_type</c>, <c>share_link_tower_layers</c>), which
/// METER has no use for; <c>num_hidden_layers</c> is the number of cross-modal layers, all stacked on the last
/// uni-modal layer; <c>share_cross_modal_transformer_layers</c> must be true (METER has one input transform per
/// modality, applied once).
/// </summary>
public sealed class MeterModel : Module, IBridgeTowerEncoder
{
    public BridgeTowerConfig Config { get; }
    public BtContext Context { get; }
    public BtTextEmbeddings TextEmbeddings { get; }
    public IReadOnlyList<BtTextLayer> TextLayers { get; }
    public BtVisionTransformer Vision { get; }
    public Tensor TokenTypeEmbeddings { get; }
    private readonly BtLinear _textTransform, _imageTransform;
    private readonly BtCrossLayer[] _crossText, _crossImage;
    private readonly BtLayerNorm _crossTextLn, _crossImageLn;
    private readonly BtPooler _textPooler, _imagePooler;

    /// <summary>Rejects configurations METER cannot run, naming the field.</summary>
    public static void ValidateConfig(BridgeTowerConfig config, string origin = "config")
    {
        config.Validate(origin);
        if (!config.ShareCrossModalTransformerLayers)
            throw new InvalidDataException($"{origin}: METER needs share_cross_modal_transformer_layers = true (one input transform per modality, applied to the last uni-modal layer only)");
    }

    /// <param name="tokenTypes">rows of token_type_embeddings (2; 3 for an NLVR2-style second image)</param>
    public MeterModel(BridgeTowerConfig config, BtVars vb, BtContext? context = null, int tokenTypes = 2)
    {
        ValidateConfig(config);
        Config = config;
        Context = context ?? new BtContext();
        var t = config.TextConfig; var v = config.VisionConfig;
        int h = config.HiddenSize, n = config.NumHiddenLayers;
        var init = Init.Normal(0f, 0.05f * config.InitializerFactor);

        // Declaration order follows BridgeTowerModel's, so one seed initialises the shared parts identically.
        _textTransform = Add(new BtLinear(vb["cross_modal_text_transform"], t.HiddenSize, h, init: init));
        _imageTransform = Add(new BtLinear(vb["cross_modal_image_transform"], v.HiddenSize, h, init: init));
        TokenTypeEmbeddings = vb["token_type_embeddings"].Param("weight", [tokenTypes, h], init);
        Vision = Add(new BtVisionTransformer(vb["vision_model"]["visual"], v,
            config.InitLayernormFromVisionEncoder && !v.ShareLayernorm));
        var tv = vb["text_model"];
        TextEmbeddings = Add(new BtTextEmbeddings(tv["embeddings"], t, Context));
        TextLayers = Enumerable.Range(0, t.NumHiddenLayers).Select(i => Add(new BtTextLayer(tv["encoder"]["layer"][i], t, Context))).ToArray();
        // Kept so a METER checkpoint has BridgeTower's key set minus the link towers (unused, as in HF).
        Add(new BtPooler(tv["pooler"], t.HiddenSize, t.InitializerFactor));
        _crossImage = Enumerable.Range(0, n).Select(i => Add(new BtCrossLayer(vb["cross_modal_image_layers"][i], t, Context))).ToArray();
        _crossText = Enumerable.Range(0, n).Select(i => Add(new BtCrossLayer(vb["cross_modal_text_layers"][i], t, Context))).ToArray();
        _imagePooler = Add(new BtPooler(vb["cross_modal_image_pooler"], h, config.InitializerFactor));
        _textPooler = Add(new BtPooler(vb["cross_modal_text_pooler"], h, config.InitializerFactor));
        _crossTextLn = Add(new BtLayerNorm(vb["cross_modal_text_layernorm"], h, config.LayerNormEps));
        _crossImageLn = Add(new BtLayerNorm(vb["cross_modal_image_layernorm"], h, config.LayerNormEps));
    }

    private Tensor TokenType(int index) => BridgeTowerModel.TokenTypeRow(TokenTypeEmbeddings, index);

    public BridgeTowerModelOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, BridgeTowerForwardOptions? options = null)
    {
        var o = options ?? BridgeTowerForwardOptions.Default;
        var (b, l) = BridgeTowerModel.CheckInputs(inputIds, attentionMask, pixelValues);
        var hsText = o.OutputHiddenStates ? new List<Tensor>() : null;
        var hsImage = o.OutputHiddenStates ? new List<Tensor>() : null;
        var hsCross = o.OutputHiddenStates ? new List<(Tensor, Tensor)>() : null;
        var attns = o.OutputAttentions ? new List<(Tensor, Tensor)>() : null;
        var crossAttns = o.OutputCrossAttentions ? new List<(Tensor, Tensor)>() : null;
        bool wantCross = crossAttns != null;

        // Both towers run to the end first: nothing but their last layer reaches the cross-modal encoder.
        var text = TextEmbeddings.Forward(inputIds);                                     // (B, L, Dt)
        hsText?.Add(text);
        var textMask = BridgeTowerModel.ExtendedMask(attentionMask ?? Tensor.Ones(b, l)); // (B, 1, 1, L)
        foreach (var layer in TextLayers)
        {
            var next = layer.Forward(text, textMask);
            if (hsText is null) BtInit.Free(text);
            text = next;
            hsText?.Add(text);
        }
        var image = Vision.ForwardPre(pixelValues, o.InterpolatePosEncoding);            // (B, N, Dv)
        hsImage?.Add(BridgeTowerModel.Lnd(image));
        // One vision block per text layer, as BridgeTower runs them (remove_last_layer aside).
        for (int i = 0; i < TextLayers.Count; i++)
        {
            var next = Vision.Blocks[i].Forward(image);
            BtInit.Free(image);   // the image states list holds (seq, batch) copies, not these
            image = next;
            hsImage?.Add(BridgeTowerModel.Lnd(image));
        }

        var textType = TokenType(0);                                                     // (1, h)
        var imageType = TokenType(o.ImageTokenTypeIdx == 0 ? 1 : o.ImageTokenTypeIdx);   // (1, h)
        var ct = _textTransform.Forward(text);
        var ctT = ct.Add(textType);
        var crossText = _crossTextLn.Forward(ctT);                                       // (B, L, h)
        Intermediates.FreeAll(ct, ctT);
        var post = Vision.ForwardPost(image);
        var ci = _imageTransform.Forward(post);
        var ciT = ci.Add(imageType);
        var crossImage = _crossImageLn.Forward(ciT);                                     // (B, N, h)
        Intermediates.FreeAll(post, ci, ciT);

        // The image mask is all ones (pixel_mask is ignored, as in BridgeTower), so its additive mask is skipped.
        for (int i = 0; i < _crossText.Length; i++)
        {
            var (nt, pText, xText) = _crossText[i].Forward(crossText, crossImage, textMask, null, o.OutputAttentions, wantCross);
            var (ni, pImage, xImage) = _crossImage[i].Forward(crossImage, crossText, null, textMask, o.OutputAttentions, wantCross);
            if (hsCross is null) { Intermediates.FreeAll(crossText, crossImage); }
            crossText = nt; crossImage = ni;
            hsCross?.Add((crossText, crossImage));
            if (attns != null) attns.Add((pText!, pImage!));
            crossAttns?.Add((xText!, xImage!));
        }

        var textPooled = _textPooler.Forward(crossText);
        var imagePooled = _imagePooler.Forward(crossImage);
        var pooled = Tensor.Cat([textPooled, imagePooled], -1);
        Intermediates.FreeAll(textPooled, imagePooled);
        return new BridgeTowerModelOutput
        {
            TextFeatures = crossText,
            ImageFeatures = crossImage,
            PoolerOutput = pooled,
            LastTextHidden = text,
            LastImageHidden = image,
            TextHiddenStates = hsText,
            ImageHiddenStates = hsImage,
            CrossHiddenStates = hsCross,
            Attentions = attns,
            CrossAttentions = crossAttns,
        };
    }
}
