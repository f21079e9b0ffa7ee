// Task heads of BridgeTower (arXiv 2206.08657). ITM, MLM and contrastive follow HF transformers v4.47.1
// (BridgeTowerForImageAndTextRetrieval / ForMaskedLM / ForContrastiveLearning); VQA, NLVR2 and SNLI-VE follow the
// paper's fine-tuning heads (METER-style classifiers on the concatenated cls features), which HF lacks.
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn;

namespace Vlm.Models.BridgeTower;

/// <summary>What a head returns: logits, loss when labels were given, and the base model's outputs.</summary>
public sealed class BridgeTowerHeadOutput : IDisposable
{
    public required Tensor Logits { get; init; }
    public Tensor? Loss { get; init; }
    public required BridgeTowerModelOutput Base { get; init; }

    /// <summary>Returns every output tensor's buffer to the pool (after <c>Loss.Backward()</c> in a training step, or
    /// once the results are read): a loop that disposes its outputs runs in recycled buffers.</summary>
    public void Dispose()
    {
        Logits.Dispose();
        Loss?.Dispose();
        Base.Dispose();
    }
}

/// <summary>Shared construction: a model is built from a config plus either checkpoint weights or a seed.</summary>
public abstract class BridgeTowerHeadModel : Module
{
    public BridgeTowerConfig Config { get; }
    public BridgeTowerModel BridgeTower { get; private set; } = null!;
    /// <summary>Every parameter under its HF state-dict name.</summary>
    public ParameterStore Parameters { get; private set; } = null!;

    /// <summary>HF `base_model_prefix`.</summary>
    public const string BasePrefix = "bridgetower";

    protected BridgeTowerHeadModel(BridgeTowerConfig config) { Config = config; }

    /// <summary>Builds base model and head from <paramref name="vb"/>; the base lives under "bridgetower.".</summary>
    protected void Build(BtVars vb, int tokenTypes, Action<BtVars> buildHead)
    {
        BridgeTower = Add(new BridgeTowerModel(Config, vb[BasePrefix], null, tokenTypes));
        buildHead(vb);
    }

    /// <summary>Parameters of a head initialised fresh because the checkpoint had none (pre-trained weights
    /// loaded into a fine-tuning head); empty otherwise.</summary>
    public ParameterStore? FreshHeadParameters { get; private set; }

    /// <summary>Keys of every BridgeTower head (HF and paper). A checkpoint trained with several heads (e.g.
    /// bridgetower-large-itm-mlm-itc) loads into any one of them; the other heads' keys are skipped, as HF does.</summary>
    public static readonly string[] HeadKeyPrefixes =
        ["itm_score.", "mlm_score.", "itc_text_head.", "itc_image_head.", "itc_cross_modal_head.", "logit_scale",
         "vqa_classifier.", "nlvr2_classifier.", "snli_classifier."];

    /// <summary>Loads or initialises (weights null ⇒ fresh parameters from <paramref name="rng"/>) and checks the
    /// checkpoint strictly: every missing, unexpected and mis-shaped key is reported in one error. With
    /// <paramref name="freshHeadPrefix"/> set, a checkpoint holding no key under it gets a freshly initialised head.</summary>
    protected void Create(IWeightSource? weights, Rng? rng, int tokenTypes, Action<BtVars> buildHead, string? freshHeadPrefix = null)
    {
        rng ??= new Rng(0);
        if (weights is null)
        {
            var vbi = VarBuilder.Init(rng);
            Build(BtVars.From(vbi), tokenTypes, buildHead);
            Parameters = vbi.Finish();
            return;
        }
        var src = BridgeTowerWeights.Adapt(weights, Config, BasePrefix, tokenTypes);
        var vb = VarBuilder.FromWeights(src);
        bool freshHead = freshHeadPrefix != null && !src.Names.Any(n => n.StartsWith(freshHeadPrefix, StringComparison.Ordinal));
        VarBuilder? headVb = freshHead ? VarBuilder.Init(rng) : null;
        BridgeTower = Add(new BridgeTowerModel(Config, BtVars.From(vb)[BasePrefix], null, tokenTypes));
        buildHead(BtVars.From(headVb ?? vb));
        foreach (var name in src.Names)
            if (HeadKeyPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal))) vb.Ignore(name);
        Parameters = vb.Finish();
        FreshHeadParameters = headVb?.Finish();
    }

    protected static Tensor Loss(Tensor logits, Tensor labels) => F.CrossEntropy(logits, labels);
}

/// <summary>HF BridgeTowerForImageAndTextRetrieval: ITM logits (B, 2) from the pooled cls features; column 1 = match.</summary>
public sealed class BridgeTowerForImageAndTextRetrieval : BridgeTowerHeadModel
{
    private BtLinear _fc = null!;

    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForImageAndTextRetrieval FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForImageAndTextRetrieval(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
        => Create(weights, rng, 2, BuildHead);

    internal BridgeTowerForImageAndTextRetrieval(BridgeTowerConfig config, BtVars dry) : base(config) => Build(dry, 2, BuildHead);

    private void BuildHead(BtVars vb) =>
        _fc = Add(new BtLinear(vb["itm_score"]["fc"], 2 * Config.HiddenSize, 2, init: BtInit.Weight(Config.InitializerFactor)));

    /// <param name="labels">(B) int64, 1 = match, 0 = no match (optional)</param>
    public BridgeTowerHeadOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, Tensor? labels = null, BridgeTowerForwardOptions? options = null)
    {
        var o = BridgeTower.Forward(inputIds, attentionMask, pixelValues, options);
        var logits = _fc.Forward(o.PoolerOutput);
        return new BridgeTowerHeadOutput { Logits = logits, Loss = labels is null ? null : Loss(logits, labels), Base = o };
    }
}

/// <summary>HF BridgeTowerForMaskedLM: transform (dense, act = config.hidden_act, LayerNorm) then decoder + bias over
/// the cross-modal text features. With tie_word_embeddings the decoder weight is the word-embedding matrix.</summary>
public sealed class BridgeTowerForMaskedLM : BridgeTowerHeadModel
{
    private BtLinear _dense = null!;
    private BtLayerNorm _ln = null!;
    private Tensor _decoder = null!, _bias = null!;

    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForMaskedLM FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForMaskedLM(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
        => Create(weights, rng, 2, BuildHead);

    internal BridgeTowerForMaskedLM(BridgeTowerConfig config, BtVars dry) : base(config) => Build(dry, 2, BuildHead);

    private void BuildHead(BtVars vb)
    {
        int h = Config.HiddenSize, vocab = Config.TextConfig.VocabSize;
        var m = vb["mlm_score"];
        _dense = Add(new BtLinear(m["transform"]["dense"], h, h, init: BtInit.Weight(Config.InitializerFactor)));
        _ln = Add(new BtLayerNorm(m["transform"]["LayerNorm"], h, Config.LayerNormEps));
        _decoder = Config.TieWordEmbeddings
            ? m["decoder"].Tie("weight", BridgeTower.TextEmbeddings.WordEmbeddings)
            : m["decoder"].Param("weight", [vocab, h], BtInit.Weight(Config.InitializerFactor));
        _bias = m.Param("bias", [vocab], Init.Zeros);
    }

    /// <param name="labels">(B, L) int64 token ids, -100 where no loss is wanted (optional)</param>
    public BridgeTowerHeadOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, Tensor? labels = null, BridgeTowerForwardOptions? options = null)
    {
        var o = BridgeTower.Forward(inputIds, attentionMask, pixelValues, options);
        var h = _dense.Forward(o.TextFeatures);
        var a = BridgeTowerActivations.Apply(Config.HiddenAct, h);
        BtInit.Free(h);
        var t = _ln.Forward(a);
        BtInit.Free(a);
        // One GEMM with the bias in its epilogue: in inference the vocab×hidden decoder weight is packed once.
        var logits = F.Linear(t, _decoder, _bias);                                        // (B, L, vocab)
        BtInit.Free(t);
        Tensor? loss = null;
        if (labels != null)
        {
            int vocab = Config.TextConfig.VocabSize;
            loss = F.CrossEntropy(logits.Reshape(-1, vocab), labels.Reshape(-1));
        }
        return new BridgeTowerHeadOutput { Logits = logits, Loss = loss, Base = o };
    }
}

/// <summary>HF BridgeTowerContrastiveOutput.</summary>
public sealed class BridgeTowerContrastiveOutput : IDisposable
{
    /// <summary>(B, 3, c) = stack([text, image, cross], dim=-2), as HF returns it (not a similarity matrix).</summary>
    public required Tensor Logits { get; init; }
    public required Tensor TextEmbeds { get; init; }
    public required Tensor ImageEmbeds { get; init; }
    public required Tensor CrossEmbeds { get; init; }
    public Tensor? Loss { get; init; }
    public required BridgeTowerModelOutput Base { get; init; }

    /// <summary>Returns every output tensor's buffer to the pool.</summary>
    public void Dispose()
    {
        Logits.Dispose(); TextEmbeds.Dispose(); ImageEmbeds.Dispose(); CrossEmbeds.Dispose();
        Loss?.Dispose();
        Base.Dispose();
    }
}

/// <summary>HF BridgeTowerForContrastiveLearning: L2-normalised text (text-tower cls), image (last vision block →
/// ln_post → image transform + token type → cls) and cross (pooled) embeddings; loss = mean of three CLIP losses.</summary>
public sealed class BridgeTowerForContrastiveLearning : BridgeTowerHeadModel
{
    private BtLinear _text = null!, _image = null!, _cross = null!;
    public Tensor LogitScale { get; private set; } = null!;

    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForContrastiveLearning FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForContrastiveLearning(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
        => Create(weights, rng, 2, BuildHead);

    internal BridgeTowerForContrastiveLearning(BridgeTowerConfig config, BtVars dry) : base(config) => Build(dry, 2, BuildHead);

    private void BuildHead(BtVars vb)
    {
        int c = Config.ContrastiveHiddenSize ?? throw new InvalidDataException("contrastive_hidden_size is missing from the config (BridgeTowerForContrastiveLearning needs it)");
        int h = Config.HiddenSize;
        if (Config.VisionConfig.HiddenSize != h)
            throw new InvalidDataException($"BridgeTowerForContrastiveLearning needs vision_config.hidden_size ({Config.VisionConfig.HiddenSize}) == hidden_size ({h}), as in HF");
        var init = BtInit.Weight(Config.InitializerFactor);
        _text = Add(new BtLinear(vb["itc_text_head"]["fc"], h, c, init: init));
        _image = Add(new BtLinear(vb["itc_image_head"]["fc"], h, c, init: init));
        _cross = Add(new BtLinear(vb["itc_cross_modal_head"]["fc"], 2 * h, c, init: init));
        float scale = Config.LogitScaleInitValue ?? throw new InvalidDataException("logit_scale_init_value is missing from the config (BridgeTowerForContrastiveLearning needs it)");
        LogitScale = vb.Param("logit_scale", [], Init.Constant(scale));
    }

    /// <summary>Text embedding from the text tower alone (no image needed): (B, c), L2-normalised.</summary>
    public Tensor EmbedText(Tensor inputIds, Tensor? attentionMask)
    {
        var m = BridgeTower;
        int b = inputIds.Size(0), l = inputIds.Size(1);
        var mask = BridgeTowerModel.ExtendedMask(attentionMask ?? Tensor.Ones(b, l));
        var x = m.TextEmbeddings.Forward(inputIds);
        foreach (var layer in m.TextLayers)
        {
            var next = layer.Forward(x, mask);
            BtInit.Free(x);
            x = next;
        }
        var e = TextHead(x);
        BtInit.Free(x);
        return e;
    }

    /// <summary>L2-normalised projection of the [CLS] state; the selection's view and the projection are let go.</summary>
    private Tensor TextHead(Tensor lastTextHidden)
    {
        var cls = lastTextHidden.Select(1, 0);
        var proj = _text.Forward(cls);
        var e = F.Normalize(proj, 2f, -1);
        Intermediates.FreeAll(cls, proj);
        return e;
    }

    /// <summary>Image embedding from the vision tower alone (the blocks BridgeTowerModel runs): (B, c), L2-normalised.</summary>
    public Tensor EmbedImage(Tensor pixelValues, bool interpolatePosEncoding = false)
    {
        var m = BridgeTower;
        var x = m.Vision.ForwardPre(pixelValues, interpolatePosEncoding);
        for (int i = 0; i < Config.TextConfig.NumHiddenLayers; i++)
        {
            var next = m.Vision.Blocks[i].Forward(x);
            BtInit.Free(x);
            x = next;
        }
        var e = ImageHead(x);
        BtInit.Free(x);
        return e;
    }

    private Tensor ImageHead(Tensor lastImageHidden)
    {
        var post = BridgeTower.Vision.ForwardPost(lastImageHidden);
        var transformed = BridgeTower.LastImageTransform.Forward(post);
        var tr = transformed.Add(BridgeTower.TokenType(1));
        var cls = tr.Select(1, 0);
        var proj = _image.Forward(cls);
        var e = F.Normalize(proj, 2f, -1);
        Intermediates.FreeAll(post, transformed, tr, cls, proj);
        return e;
    }

    public BridgeTowerContrastiveOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, bool returnLoss = false, BridgeTowerForwardOptions? options = null)
    {
        // HF always asks the base model for hidden states here (and returns them).
        var opts = (options ?? BridgeTowerForwardOptions.Default) with { OutputHiddenStates = true };
        var o = BridgeTower.Forward(inputIds, attentionMask, pixelValues, opts);
        var textEmbeds = TextHead(o.LastTextHidden);
        var imageEmbeds = ImageHead(o.LastImageHidden);
        var crossEmbeds = F.Normalize(_cross.Forward(o.PoolerOutput), 2f, -1);
        var logits = Tensor.Stack([textEmbeds, imageEmbeds, crossEmbeds], -2);
        Tensor? loss = null;
        if (returnLoss)
        {
            var s = LogitScale.Exp();
            int b = textEmbeds.Size(0);
            var labels = Tensor.Arange(b);
            var l1 = F.CrossEntropy(textEmbeds.MatMul(imageEmbeds.T).Mul(s), labels);
            var l2 = F.CrossEntropy(textEmbeds.MatMul(crossEmbeds.T).Mul(s), labels);
            var l3 = F.CrossEntropy(imageEmbeds.MatMul(crossEmbeds.T).Mul(s), labels);
            loss = l1.Add(l2).Add(l3).Div(3f);
        }
        return new BridgeTowerContrastiveOutput { Logits = logits, TextEmbeds = textEmbeds, ImageEmbeds = imageEmbeds, CrossEmbeds = crossEmbeds, Loss = loss, Base = o };
    }
}

/// <summary>Paper classifier: Linear(in, 2h) → LayerNorm(2h) → GELU → Linear(2h, classes), as nn.Sequential
/// (parameter names .0 / .1 / .3).</summary>
public sealed class BtClassifier : Module
{
    private readonly BtLinear _l0, _l3;
    private readonly BtLayerNorm _ln;

    public BtClassifier(BtVars vb, int inSize, int hidden2, int classes, float initFactor)
    {
        _l0 = Add(new BtLinear(vb["0"], inSize, hidden2, init: BtInit.Weight(initFactor)));
        _ln = Add(new BtLayerNorm(vb["1"], hidden2, 1e-5f));
        _l3 = Add(new BtLinear(vb["3"], hidden2, classes, init: BtInit.Weight(initFactor)));
    }

    public Tensor Forward(Tensor x)
    {
        var a = _l0.Forward(x);
        var b = _ln.Forward(a);
        BtInit.Free(a);
        var g = b.Gelu();
        BtInit.Free(b);
        var o = _l3.Forward(g);
        BtInit.Free(g);
        return o;
    }
}

/// <summary>VQA head (paper §4, VQAv2 as multi-label classification over the answer vocabulary): logits over
/// answers from the pooled cls features; loss = BCE-with-logits on soft VQA scores × number of answers.</summary>
public sealed class BridgeTowerForVqa : BridgeTowerHeadModel
{
    private BtClassifier _cls = null!;
    public int NumAnswers { get; }

    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForVqa FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForVqa(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
    {
        NumAnswers = config.NumLabels ?? throw new InvalidDataException("the VQA head needs num_labels or id2label (the answer vocabulary) in the config");
        Create(weights, rng, 2, BuildHead, "vqa_classifier.");
    }

    private void BuildHead(BtVars vb) =>
        _cls = Add(new BtClassifier(vb["vqa_classifier"], 2 * Config.HiddenSize, 2 * Config.HiddenSize, NumAnswers, Config.InitializerFactor));

    /// <param name="targets">(B, answers) soft scores in [0, 1] (optional)</param>
    public BridgeTowerHeadOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, Tensor? targets = null, BridgeTowerForwardOptions? options = null)
    {
        var o = BridgeTower.Forward(inputIds, attentionMask, pixelValues, options);
        var logits = _cls.Forward(o.PoolerOutput);
        Tensor? loss = targets is null ? null : F.BinaryCrossEntropyWithLogits(logits, targets).Mul(NumAnswers);
        return new BridgeTowerHeadOutput { Logits = logits, Loss = loss, Base = o };
    }
}

/// <summary>NLVR2 head (paper §4): one text, two images; each pair is encoded with its own image token type (1 and
/// 2; row 2 of token_type_embeddings starts as a copy of row 1), the two cls features are concatenated (4h) and
/// classified into true / false.</summary>
public sealed class BridgeTowerForNlvr2 : BridgeTowerHeadModel
{
    private BtClassifier _cls = null!;

    /// <param name="weights">an NLVR2 checkpoint (3 token types) or a pre-trained one (2 token types: row 2 is
    /// initialised from row 1)</param>
    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForNlvr2 FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForNlvr2(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
    {
        Create(weights, rng, 3, BuildHead, "nlvr2_classifier.");
        if (weights is null)
            using (Tensor.NoGrad())
                BridgeTower.TokenTypeEmbeddings.Narrow(0, 2, 1).CopyFrom(BridgeTower.TokenTypeEmbeddings.Narrow(0, 1, 1).Detach());
    }

    private void BuildHead(BtVars vb) =>
        _cls = Add(new BtClassifier(vb["nlvr2_classifier"], 4 * Config.HiddenSize, 2 * Config.HiddenSize, 2, Config.InitializerFactor));

    public BridgeTowerHeadOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues1, Tensor pixelValues2, Tensor? labels = null, BridgeTowerForwardOptions? options = null)
    {
        var opts = options ?? BridgeTowerForwardOptions.Default;
        var o1 = BridgeTower.Forward(inputIds, attentionMask, pixelValues1, opts with { ImageTokenTypeIdx = 1 });
        var o2 = BridgeTower.Forward(inputIds, attentionMask, pixelValues2, opts with { ImageTokenTypeIdx = 2 });
        var logits = _cls.Forward(Tensor.Cat([o1.PoolerOutput, o2.PoolerOutput], -1));
        return new BridgeTowerHeadOutput { Logits = logits, Loss = labels is null ? null : Loss(logits, labels), Base = o1 };
    }
}

/// <summary>SNLI-VE head (paper §4): entailment / neutral / contradiction from the pooled cls features.</summary>
public sealed class BridgeTowerForSnliVe : BridgeTowerHeadModel
{
    private BtClassifier _cls = null!;

    /// <summary>An HF folder: config.json plus model.safetensors / sharded / pytorch_model.bin.</summary>
    public static BridgeTowerForSnliVe FromPretrained(string folder)
    {
        using var w = BridgeTowerWeights.OpenFolder(folder);
        return new(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    public BridgeTowerForSnliVe(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null) : base(config)
        => Create(weights, rng, 2, BuildHead, "snli_classifier.");

    private void BuildHead(BtVars vb) =>
        _cls = Add(new BtClassifier(vb["snli_classifier"], 2 * Config.HiddenSize, 2 * Config.HiddenSize, 3, Config.InitializerFactor));

    public BridgeTowerHeadOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, Tensor? labels = null, BridgeTowerForwardOptions? options = null)
    {
        var o = BridgeTower.Forward(inputIds, attentionMask, pixelValues, options);
        var logits = _cls.Forward(o.PoolerOutput);
        return new BridgeTowerHeadOutput { Logits = logits, Loss = labels is null ? null : Loss(logits, labels), Base = o };
    }
}
