// BridgeTower configuration (Xu et al., "BridgeTower: Building Bridges Between Encoders in Vision-Language
// Representation Learning", arXiv 2206.08657), bound to HuggingFace `config.json` as written by transformers v4.47.1
// (`BridgeTowerConfig` with nested `text_config` = RoBERTa and `vision_config` = CLIP ViT). HF writes the nested
// configs as a diff against their defaults, so every absent key takes the HF default listed here.
using System.Globalization;
using System.Text.Json;

namespace Vlm.Models.BridgeTower;

public enum LinkTowerType { Add, ScaledAdd, Interpolate }

public enum TextPositionEmbedding { Absolute, RelativeKey, RelativeKeyQuery }

/// <summary>RoBERTa text tower (HF `BridgeTowerTextConfig`).</summary>
public sealed record BridgeTowerTextConfig
{
    public int VocabSize { get; init; } = 50265;
    public int HiddenSize { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int IntermediateSize { get; init; } = 3072;
    public string HiddenAct { get; init; } = "gelu";
    public float HiddenDropoutProb { get; init; } = 0.1f;
    public float AttentionProbsDropoutProb { get; init; } = 0.1f;
    public int MaxPositionEmbeddings { get; init; } = 514;
    public int TypeVocabSize { get; init; } = 1;
    public float LayerNormEps { get; init; } = 1e-5f;
    public int PadTokenId { get; init; } = 1;
    public int BosTokenId { get; init; } = 0;
    public int EosTokenId { get; init; } = 2;
    public TextPositionEmbedding PositionEmbeddingType { get; init; } = TextPositionEmbedding.Absolute;
    public float InitializerFactor { get; init; } = 1f;
}

/// <summary>CLIP-style ViT vision tower (HF `BridgeTowerVisionConfig`).</summary>
public sealed record BridgeTowerVisionConfig
{
    public int HiddenSize { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumChannels { get; init; } = 3;
    public int PatchSize { get; init; } = 16;
    public int ImageSize { get; init; } = 288;
    public float LayerNormEps { get; init; } = 1e-5f;
    public bool StopGradient { get; init; }
    public bool ShareLayernorm { get; init; } = true;
    public bool RemoveLastLayer { get; init; }
    public float InitializerFactor { get; init; } = 1f;

    /// <summary>HF hard-codes a head size of 64 for the vision tower.</summary>
    public int NumHeads => HiddenSize / 64;

    /// <summary>Resblocks actually built (remove_last_layer drops one).</summary>
    public int NumBlocks => RemoveLastLayer ? NumHiddenLayers - 1 : NumHiddenLayers;
}

/// <summary>Top-level HF `BridgeTowerConfig`, plus the task-head fields this port adds.</summary>
public sealed record BridgeTowerConfig
{
    public bool ShareCrossModalTransformerLayers { get; init; } = true;
    public string HiddenAct { get; init; } = "gelu";
    public int HiddenSize { get; init; } = 768;
    public float InitializerFactor { get; init; } = 1f;
    public float LayerNormEps { get; init; } = 1e-5f;
    public bool ShareLinkTowerLayers { get; init; }
    public LinkTowerType LinkTowerType { get; init; } = LinkTowerType.Add;
    public int NumAttentionHeads { get; init; } = 12;
    public int NumHiddenLayers { get; init; } = 6;
    public bool TieWordEmbeddings { get; init; }
    public bool InitLayernormFromVisionEncoder { get; init; }
    public BridgeTowerTextConfig TextConfig { get; init; } = new();
    public BridgeTowerVisionConfig VisionConfig { get; init; } = new();

    /// <summary>Plain extra attribute HF keeps; required by the contrastive class (hub configs set 512).</summary>
    public int? ContrastiveHiddenSize { get; init; }
    /// <summary>Plain extra attribute HF keeps; initial value of the contrastive `logit_scale`.</summary>
    public float? LogitScaleInitValue { get; init; }

    /// <summary>Class labels (HF `id2label`), used by the VQA / SNLI-VE heads; null when the config has none.</summary>
    public IReadOnlyList<string>? Id2Label { get; init; }
    /// <summary>HF `num_labels` (defaults to the size of <see cref="Id2Label"/>, else 2).</summary>
    public int? NumLabels { get; init; }

    /// <summary>Text layers run before the first cross-modal layer (HF's split_index).</summary>
    public int SplitIndex => TextConfig.NumHiddenLayers - NumHiddenLayers + 1;

    public static BridgeTowerConfig Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"BridgeTower config not found: {path}", path); }
        return FromJson(text, path);
    }

    public static BridgeTowerConfig FromJson(string json, string origin = "<json>") => ConfigReader.ParseRoot(json, origin, "bridgetower", root =>
    {
        var r = Reader(root, origin, "");
        var def = new BridgeTowerConfig();
        var text = ReadText(r.Obj("text_config"), origin);
        var vision = ReadVision(r.Obj("vision_config"), origin);
        List<string>? labels = null;
        if (r.Obj("id2label") is { } id2)
        {
            var pairs = new List<(int, string)>();
            foreach (var p in id2.EnumerateObject())
            {
                if (!int.TryParse(p.Name, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) || p.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{origin}: id2label entry '{p.Name}' is not an integer id mapped to a string");
                pairs.Add((id, p.Value.GetString()!));
            }
            pairs.Sort();
            for (int i = 0; i < pairs.Count; i++)
                if (pairs[i].Item1 != i) throw new InvalidDataException($"{origin}: id2label ids are not 0..{pairs.Count - 1}");
            labels = pairs.Select(p => p.Item2).ToList();
        }
        var cfg = new BridgeTowerConfig
        {
            ShareCrossModalTransformerLayers = r.Bool("share_cross_modal_transformer_layers", def.ShareCrossModalTransformerLayers),
            HiddenAct = r.Act("hidden_act", def.HiddenAct),
            HiddenSize = r.Int("hidden_size", def.HiddenSize),
            InitializerFactor = r.Float("initializer_factor", def.InitializerFactor),
            LayerNormEps = r.Float("layer_norm_eps", def.LayerNormEps),
            ShareLinkTowerLayers = r.Bool("share_link_tower_layers", def.ShareLinkTowerLayers),
            LinkTowerType = r.Str("link_tower_type", "add") switch
            {
                "add" => LinkTowerType.Add,
                "scaled_add" => LinkTowerType.ScaledAdd,
                "interpolate" => LinkTowerType.Interpolate,
                var v => throw new InvalidDataException($"{origin}: link_tower_type '{v}' is not one of add, scaled_add, interpolate"),
            },
            NumAttentionHeads = r.Int("num_attention_heads", def.NumAttentionHeads),
            NumHiddenLayers = r.Int("num_hidden_layers", def.NumHiddenLayers),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", def.TieWordEmbeddings),
            InitLayernormFromVisionEncoder = r.Bool("init_layernorm_from_vision_encoder", def.InitLayernormFromVisionEncoder),
            TextConfig = text,
            VisionConfig = vision,
            ContrastiveHiddenSize = r.Has("contrastive_hidden_size") ? r.Int("contrastive_hidden_size", 0) : null,
            LogitScaleInitValue = r.Has("logit_scale_init_value") ? r.Float("logit_scale_init_value", 0f) : null,
            Id2Label = labels,
            NumLabels = r.Has("num_labels") ? r.Int("num_labels", 0) : labels?.Count,
        };
        cfg.Validate(origin);
        return cfg;
    });

    private static BridgeTowerTextConfig ReadText(JsonElement? e, string origin)
    {
        var d = new BridgeTowerTextConfig();
        if (e is null) return d;
        var r = Reader(e.Value, origin, "text_config.");
        return new BridgeTowerTextConfig
        {
            VocabSize = r.Int("vocab_size", d.VocabSize),
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize),
            HiddenAct = r.Act("hidden_act", d.HiddenAct),
            HiddenDropoutProb = r.Float("hidden_dropout_prob", d.HiddenDropoutProb),
            AttentionProbsDropoutProb = r.Float("attention_probs_dropout_prob", d.AttentionProbsDropoutProb),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", d.MaxPositionEmbeddings),
            TypeVocabSize = r.Int("type_vocab_size", d.TypeVocabSize),
            LayerNormEps = r.Float("layer_norm_eps", d.LayerNormEps),
            PadTokenId = r.Int("pad_token_id", d.PadTokenId),
            BosTokenId = r.Int("bos_token_id", d.BosTokenId),
            EosTokenId = r.Int("eos_token_id", d.EosTokenId),
            PositionEmbeddingType = r.Str("position_embedding_type", "absolute") switch
            {
                "absolute" => TextPositionEmbedding.Absolute,
                "relative_key" => TextPositionEmbedding.RelativeKey,
                "relative_key_query" => TextPositionEmbedding.RelativeKeyQuery,
                var v => throw new InvalidDataException($"{origin}: text_config.position_embedding_type '{v}' is not one of absolute, relative_key, relative_key_query"),
            },
            InitializerFactor = r.Float("initializer_factor", d.InitializerFactor),
        };
    }

    private static BridgeTowerVisionConfig ReadVision(JsonElement? e, string origin)
    {
        var d = new BridgeTowerVisionConfig();
        if (e is null) return d;
        var r = Reader(e.Value, origin, "vision_config.");
        return new BridgeTowerVisionConfig
        {
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumChannels = r.Int("num_channels", d.NumChannels),
            PatchSize = r.Int("patch_size", d.PatchSize),
            ImageSize = r.Int("image_size", d.ImageSize),
            LayerNormEps = r.Float("layer_norm_eps", d.LayerNormEps),
            StopGradient = r.Bool("stop_gradient", d.StopGradient),
            ShareLayernorm = r.Bool("share_layernorm", d.ShareLayernorm),
            RemoveLastLayer = r.Bool("remove_last_layer", d.RemoveLastLayer),
            InitializerFactor = r.Float("initializer_factor", d.InitializerFactor),
        };
    }

    /// <summary>Rejects configurations the architecture cannot run, naming the field.</summary>
    public void Validate(string origin = "config")
    {
        void Need(bool ok, string msg) { if (!ok) throw new InvalidDataException($"{origin}: {msg}"); }
        var t = TextConfig; var v = VisionConfig;
        Need(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Need(t.HiddenSize > 0 && t.NumAttentionHeads > 0 && t.HiddenSize % t.NumAttentionHeads == 0,
            $"text_config.hidden_size ({t.HiddenSize}) must be a positive multiple of text_config.num_attention_heads ({t.NumAttentionHeads})");
        // HF builds the cross-modal layers from text_config, so they run at the text width.
        Need(HiddenSize == t.HiddenSize, $"hidden_size ({HiddenSize}) must equal text_config.hidden_size ({t.HiddenSize}): the cross-modal layers are built from text_config");
        Need(NumHiddenLayers >= 1 && NumHiddenLayers <= t.NumHiddenLayers,
            $"num_hidden_layers ({NumHiddenLayers}) must be between 1 and text_config.num_hidden_layers ({t.NumHiddenLayers})");
        Need(v.HiddenSize >= 64, $"vision_config.hidden_size ({v.HiddenSize}) must be at least 64 (vision heads are hidden_size // 64)");
        Need(v.NumBlocks >= t.NumHiddenLayers,
            $"vision_config has {v.NumBlocks} resblocks (num_hidden_layers {v.NumHiddenLayers}{(v.RemoveLastLayer ? ", remove_last_layer" : "")}) but the text tower runs {t.NumHiddenLayers}: BridgeTower runs one vision block per text layer");
        Need(v.PatchSize > 0 && v.ImageSize >= v.PatchSize, $"vision_config.patch_size ({v.PatchSize}) / image_size ({v.ImageSize}) are inconsistent");
        Need(t.VocabSize > 0 && t.MaxPositionEmbeddings > 0 && t.TypeVocabSize > 0, "text_config vocab_size / max_position_embeddings / type_vocab_size must be positive");
        Need(t.PadTokenId >= 0 && t.PadTokenId < t.VocabSize && t.PadTokenId < t.MaxPositionEmbeddings,
            $"text_config.pad_token_id ({t.PadTokenId}) must index both the vocabulary and the position table");
        Need(LayerNormEps > 0 && t.LayerNormEps > 0 && v.LayerNormEps > 0, "layer_norm_eps values must be positive");
        Need(ContrastiveHiddenSize is null or > 0, "contrastive_hidden_size must be positive");
    }

    /// <summary>Typed, defaulting accessors over one JSON object; errors name the full field path.</summary>
    // BridgeTower accepts 12.0 for 12 (an integral JSON float) where an integer is expected.
    private static ConfigReader Reader(JsonElement obj, string origin, string path) =>
        new(obj, origin, path, BridgeTowerActivations.Known, integralFloatsAsInts: true);
}
