// One BridgeTower (Xu et al., arXiv 2206.08657) with every head the training recipe needs, sharing one base model:
// MLM, ITM and the contrastive (ITC) heads of HF's BridgeTowerForMaskedLM / ForImageAndTextRetrieval /
// ForContrastiveLearning, the paper's VQA classifier, and a vision attribute head for uni-modal vision pre-training.
// Parameters carry the HF state-dict names of those heads, so a saved model.safetensors loads unchanged into any of
// the single-head classes (each skips the other heads' keys, as HF does). The attribute head is not an HF head and
// is kept out of the model file (it lives in the training state only).
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Nn;

namespace Vlm.Training.Model;

/// <summary>Embeddings of the contrastive head: L2-normalised text (B, c), image (B, c), cross (B, c).</summary>
public sealed record ItcEmbeddings(Tensor Text, Tensor Image, Tensor Cross);

public sealed class MultiTaskBridgeTower : Module
{
    public BridgeTowerConfig Config { get; }
    public BridgeTowerModel Base { get; }
    public ParameterStore Parameters { get; }
    /// <summary>Outputs of the vision attribute head (uni-modal vision pre-training).</summary>
    public int NumAttributes { get; }

    /// <summary>Prefix of the parameters that are not part of any HF head (not saved in model.safetensors).</summary>
    public const string AttributeHeadPrefix = "vision_attribute_head.";

    private readonly BtLinear _mlmDense, _itm, _itcText, _itcImage, _itcCross, _attr;
    private readonly BtLayerNorm _mlmLn;
    private readonly Tensor _mlmDecoder, _mlmBias;
    private readonly BtClassifier? _vqa, _nlvr2;
    public Tensor LogitScale { get; }

    /// <summary>Fresh parameters from <paramref name="rng"/> (HF init: N(0, 0.05) weights, zero biases, unit norms).</summary>
    /// <param name="nlvr2">add the paper's NLVR2 head: a third token-type row (the second image, initialised from
    /// row 1) and a classifier over the two concatenated pooled features</param>
    public MultiTaskBridgeTower(BridgeTowerConfig config, Rng rng, int numAttributes, bool nlvr2 = false)
    {
        Config = config;
        NumAttributes = numAttributes;
        int h = config.HiddenSize, vocab = config.TextConfig.VocabSize;
        int c = config.ContrastiveHiddenSize ?? throw new ArgumentException("config needs contrastive_hidden_size");
        var init = Init.Normal(0f, 0.05f * config.InitializerFactor);
        var vbi = VarBuilder.Init(rng);
        var vb = BtVars.From(vbi);
        Base = Add(new BridgeTowerModel(config, vb["bridgetower"], null, nlvr2 ? 3 : 2));
        var m = vb["mlm_score"];
        _mlmDense = Add(new BtLinear(m["transform"]["dense"], h, h, init: init));
        _mlmLn = Add(new BtLayerNorm(m["transform"]["LayerNorm"], h, config.LayerNormEps));
        _mlmDecoder = config.TieWordEmbeddings
            ? m["decoder"].Tie("weight", Base.TextEmbeddings.WordEmbeddings)
            : m["decoder"].Param("weight", [vocab, h], init);
        _mlmBias = m.Param("bias", [vocab], Init.Zeros);
        _itm = Add(new BtLinear(vb["itm_score"]["fc"], 2 * h, 2, init: init));
        _itcText = Add(new BtLinear(vb["itc_text_head"]["fc"], h, c, init: init));
        _itcImage = Add(new BtLinear(vb["itc_image_head"]["fc"], h, c, init: init));
        _itcCross = Add(new BtLinear(vb["itc_cross_modal_head"]["fc"], 2 * h, c, init: init));
        LogitScale = vb.Param("logit_scale", [], Init.Constant(config.LogitScaleInitValue ?? 2.6592f));
        if (config.NumLabels is int answers && answers > 0)
            _vqa = Add(new BtClassifier(vb["vqa_classifier"], 2 * h, 2 * h, answers, config.InitializerFactor));
        if (nlvr2) _nlvr2 = Add(new BtClassifier(vb["nlvr2_classifier"], 4 * h, 2 * h, 2, config.InitializerFactor));
        _attr = Add(new BtLinear(vb["vision_attribute_head"], config.VisionConfig.HiddenSize, numAttributes, init: init));
        Parameters = vbi.Finish();
        if (nlvr2)
            using (Tensor.NoGrad())
                Base.TokenTypeEmbeddings.Narrow(0, 2, 1).CopyFrom(Base.TokenTypeEmbeddings.Narrow(0, 1, 1).Detach());
    }

    public bool HasNlvr2Head => _nlvr2 != null;

    public bool HasVqaHead => _vqa != null;

    /// <summary>Whether a parameter belongs to a cross-modal part (cross-modal layers, bridges, poolers, transforms,
    /// token types) or a head — the parts the recipe trains with a 5× learning rate.</summary>
    public static bool IsCrossModalOrHead(string name) =>
        !name.StartsWith("bridgetower.text_model.", StringComparison.Ordinal)
        && !name.StartsWith("bridgetower.vision_model.", StringComparison.Ordinal);

    public BridgeTowerModelOutput Forward(Tensor ids, Tensor mask, Tensor pixels) => Base.Forward(ids, mask, pixels);

    /// <summary>MLM logits (B, L, V) from cross-modal (or, for uni-modal pre-training, text-tower) features (B, L, h).</summary>
    public Tensor MlmLogits(Tensor features)
    {
        var a = _mlmDense.Forward(features);
        var g = BridgeTowerActivations.Apply(Config.HiddenAct, a);
        var t = _mlmLn.Forward(g);
        return t.MatMul(_mlmDecoder.T).Add(_mlmBias);
    }

    /// <summary>ITM logits (B, 2) from the pooled features; column 1 = match.</summary>
    public Tensor ItmLogits(BridgeTowerModelOutput o) => _itm.Forward(o.PoolerOutput);

    /// <summary>VQA logits (B, answers) from the pooled features.</summary>
    public Tensor VqaLogits(BridgeTowerModelOutput o) =>
        (_vqa ?? throw new InvalidOperationException("the model has no VQA head (config num_labels is unset)")).Forward(o.PoolerOutput);

    /// <summary>NLVR2 logits (B, 2), column 1 = the statement is true: the text with each image (image token types 1
    /// and 2), the two pooled features concatenated, as HF-style BridgeTowerForNlvr2 computes them.</summary>
    public Tensor Nlvr2Logits(Tensor ids, Tensor mask, Tensor left, Tensor right)
    {
        var head = _nlvr2 ?? throw new InvalidOperationException("the model has no NLVR2 head");
        var o1 = Base.Forward(ids, mask, left, new BridgeTowerForwardOptions { ImageTokenTypeIdx = 1 });
        var o2 = Base.Forward(ids, mask, right, new BridgeTowerForwardOptions { ImageTokenTypeIdx = 2 });
        return head.Forward(Tensor.Cat([o1.PoolerOutput, o2.PoolerOutput], -1));
    }

    /// <summary>The contrastive embeddings exactly as HF BridgeTowerForContrastiveLearning computes them.</summary>
    public ItcEmbeddings Itc(BridgeTowerModelOutput o)
    {
        var text = F.Normalize(_itcText.Forward(o.LastTextHidden.Select(1, 0)), 2f, -1);
        var image = F.Normalize(_itcImage.Forward(ImageTransformCls(o.LastImageHidden)), 2f, -1);
        var cross = F.Normalize(_itcCross.Forward(o.PoolerOutput), 2f, -1);
        return new ItcEmbeddings(text, image, cross);
    }

    // HF: ln_post → last cross-modal image transform → + image token type, then the cls row.
    private Tensor ImageTransformCls(Tensor lastImageHidden)
    {
        var post = Base.Vision.ForwardPost(lastImageHidden);
        var tr = LastImageTransform(post).Add(Base.TokenTypeEmbeddings.Narrow(0, 1, 1));
        return tr.Select(1, 0);
    }

    private Tensor LastImageTransform(Tensor x)
    {
        // The image transform of the last cross-modal layer (shared when share_cross_modal_transformer_layers).
        string key = Config.ShareCrossModalTransformerLayers
            ? "bridgetower.cross_modal_image_transform."
            : $"bridgetower.cross_modal_image_transform.{Config.NumHiddenLayers - 1}.";
        return x.MatMul(Parameters[key + "weight"].T).Add(Parameters[key + "bias"]);
    }

    /// <summary>Text tower alone (the layers BridgeTowerModel runs): (B, L, h).</summary>
    public Tensor TextTower(Tensor ids, Tensor mask)
    {
        var ext = BridgeTowerModel.ExtendedMask(mask);
        var x = Base.TextEmbeddings.Forward(ids);
        foreach (var layer in Base.TextLayers) x = layer.Forward(x, ext);
        return x;
    }

    /// <summary>Vision tower alone (the blocks BridgeTowerModel runs): (B, 1 + patches, h), before ln_post.</summary>
    public Tensor VisionTower(Tensor pixels)
    {
        var x = Base.Vision.ForwardPre(pixels, false);
        for (int i = 0; i < Config.TextConfig.NumHiddenLayers; i++) x = Base.Vision.Blocks[i].Forward(x);
        return x;
    }

    /// <summary>Contrastive text embeddings (B, c) from the text tower alone.</summary>
    public Tensor EmbedText(Tensor ids, Tensor mask) => F.Normalize(_itcText.Forward(TextTower(ids, mask).Select(1, 0)), 2f, -1);

    /// <summary>Contrastive image embeddings (B, c) from the vision tower alone.</summary>
    public Tensor EmbedImage(Tensor pixels) => F.Normalize(_itcImage.Forward(ImageTransformCls(VisionTower(pixels))), 2f, -1);

    /// <summary>Attribute logits (B, attributes) from the vision tower's cls token after ln_post.</summary>
    public Tensor AttributeLogits(Tensor pixels) => _attr.Forward(Base.Vision.ForwardPost(VisionTower(pixels)).Select(1, 0));

    /// <summary>The parameters that belong in an HF model.safetensors (all but the attribute head).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> HfParameters() =>
        Parameters.Named.Where(kv => !kv.Key.StartsWith(AttributeHeadPrefix, StringComparison.Ordinal));
}
