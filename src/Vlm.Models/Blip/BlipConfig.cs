// BLIP configuration (Li et al., "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language
// Understanding and Generation", arXiv 2201.12086), bound to HuggingFace `config.json` as written by transformers
// v4.47.1 (`BlipConfig` with nested `text_config` = BlipTextConfig, `vision_config` = BlipVisionConfig). HF writes the
// nested configs as a diff against their defaults, so every absent key takes the HF default listed here.
using System.Globalization;
using System.Text.Json;
using Vlm.Nn;

namespace Vlm.Models.Blip;

/// <summary>BERT-style text encoder / decoder (HF `BlipTextConfig`).</summary>
public sealed record BlipTextConfig
{
    public int VocabSize { get; init; } = 30524;
    public int HiddenSize { get; init; } = 768;
    /// <summary>Width of the states the cross-attention reads (the vision hidden size in HF checkpoints).</summary>
    public int EncoderHiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int ProjectionDim { get; init; } = 768;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 8;
    public int MaxPositionEmbeddings { get; init; } = 512;
    public string HiddenAct { get; init; } = "gelu";
    public float LayerNormEps { get; init; } = 1e-12f;
    public float HiddenDropoutProb { get; init; } = 0f;
    public float AttentionProbsDropoutProb { get; init; } = 0f;
    public float InitializerRange { get; init; } = 0.02f;
    public int BosTokenId { get; init; } = 30522;
    public int EosTokenId { get; init; } = 2;
    public int PadTokenId { get; init; } = 0;
    public int SepTokenId { get; init; } = 102;
    /// <summary>HF default true: every text layer then owns cross-attention weights.</summary>
    public bool IsDecoder { get; init; } = true;
    public bool UseCache { get; init; } = true;
    public float LabelSmoothing { get; init; }
}

/// <summary>ViT vision encoder (HF `BlipVisionConfig`).</summary>
public sealed record BlipVisionConfig
{
    public int HiddenSize { get; init; } = 768;
    public int IntermediateSize { get; init; } = 3072;
    public int ProjectionDim { get; init; } = 512;
    public int NumHiddenLayers { get; init; } = 12;
    public int NumAttentionHeads { get; init; } = 12;
    public int ImageSize { get; init; } = 384;
    public int PatchSize { get; init; } = 16;
    public string HiddenAct { get; init; } = "gelu";
    public float LayerNormEps { get; init; } = 1e-5f;
    public float AttentionDropout { get; init; }
    public float InitializerRange { get; init; } = 1e-10f;

    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
}

/// <summary>Top-level HF `BlipConfig`.</summary>
public sealed record BlipConfig
{
    public BlipTextConfig TextConfig { get; init; } = new();
    public BlipVisionConfig VisionConfig { get; init; } = new();
    public int ProjectionDim { get; init; } = 512;
    public float LogitScaleInitValue { get; init; } = 2.6592f;
    public int ImageTextHiddenSize { get; init; } = 256;
    public float LabelSmoothing { get; init; }
    public float InitializerRange { get; init; } = 0.02f;
    public float InitializerFactor { get; init; } = 1f;
    /// <summary>HF `architectures[0]` when present (which head class the checkpoint was saved from).</summary>
    public string? Architecture { get; init; }

    public static BlipConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"BLIP config not found: {path}", path);
        return FromJson(File.ReadAllText(path), path);
    }

    public static BlipConfig FromJson(string json, string origin = "<json>") => ConfigReader.ParseRoot(json, origin, "blip", root =>
    {
        var r = Reader(root, origin, "");
        var def = new BlipConfig();
        string? arch = null;
        if (root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0)
            arch = a[0].GetString();
        var cfg = new BlipConfig
        {
            TextConfig = ReadText(r.Obj("text_config"), origin),
            VisionConfig = ReadVision(r.Obj("vision_config"), origin),
            ProjectionDim = r.Int("projection_dim", def.ProjectionDim),
            LogitScaleInitValue = r.Float("logit_scale_init_value", def.LogitScaleInitValue),
            ImageTextHiddenSize = r.Int("image_text_hidden_size", def.ImageTextHiddenSize),
            LabelSmoothing = r.Float("label_smoothing", def.LabelSmoothing),
            InitializerRange = r.Float("initializer_range", def.InitializerRange),
            InitializerFactor = r.Float("initializer_factor", def.InitializerFactor),
            Architecture = arch,
        };
        cfg.Validate(origin);
        return cfg;
    });

    private static BlipTextConfig ReadText(JsonElement? e, string origin)
    {
        var d = new BlipTextConfig();
        if (e is null) return d;
        var r = Reader(e.Value, origin, "text_config.");
        var mt = r.Str("model_type", "blip_text_model");
        if (mt != "blip_text_model") throw new InvalidDataException($"{origin}: text_config.model_type is '{mt}', expected 'blip_text_model'");
        var pe = r.Str("position_embedding_type", "absolute");
        if (pe != "absolute") throw new InvalidDataException($"{origin}: text_config.position_embedding_type '{pe}' is not supported (BLIP uses 'absolute')");
        return new BlipTextConfig
        {
            VocabSize = r.Int("vocab_size", d.VocabSize),
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            EncoderHiddenSize = r.Int("encoder_hidden_size", d.EncoderHiddenSize),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize),
            ProjectionDim = r.Int("projection_dim", d.ProjectionDim),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", d.MaxPositionEmbeddings),
            HiddenAct = r.Act("hidden_act", d.HiddenAct),
            LayerNormEps = r.Float("layer_norm_eps", d.LayerNormEps),
            HiddenDropoutProb = r.Float("hidden_dropout_prob", d.HiddenDropoutProb),
            AttentionProbsDropoutProb = r.Float("attention_probs_dropout_prob", d.AttentionProbsDropoutProb),
            InitializerRange = r.Float("initializer_range", d.InitializerRange),
            BosTokenId = r.Int("bos_token_id", d.BosTokenId),
            EosTokenId = r.Int("eos_token_id", d.EosTokenId),
            PadTokenId = r.Int("pad_token_id", d.PadTokenId),
            SepTokenId = r.Int("sep_token_id", d.SepTokenId),
            IsDecoder = r.Bool("is_decoder", d.IsDecoder),
            UseCache = r.Bool("use_cache", d.UseCache),
            LabelSmoothing = r.Float("label_smoothing", d.LabelSmoothing),
        };
    }

    private static BlipVisionConfig ReadVision(JsonElement? e, string origin)
    {
        var d = new BlipVisionConfig();
        if (e is null) return d;
        var r = Reader(e.Value, origin, "vision_config.");
        var mt = r.Str("model_type", "blip_vision_model");
        if (mt != "blip_vision_model") throw new InvalidDataException($"{origin}: vision_config.model_type is '{mt}', expected 'blip_vision_model'");
        int channels = r.Int("num_channels", 3);
        if (channels != 3) throw new InvalidDataException($"{origin}: vision_config.num_channels {channels}: HF's BLIP patch embedding is hard-wired to 3 channels");
        return new BlipVisionConfig
        {
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize),
            ProjectionDim = r.Int("projection_dim", d.ProjectionDim),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            ImageSize = r.Int("image_size", d.ImageSize),
            PatchSize = r.Int("patch_size", d.PatchSize),
            HiddenAct = r.Act("hidden_act", d.HiddenAct),
            LayerNormEps = r.Float("layer_norm_eps", d.LayerNormEps),
            AttentionDropout = r.Float("attention_dropout", d.AttentionDropout),
            InitializerRange = r.Float("initializer_range", d.InitializerRange),
        };
    }

    /// <summary>Rejects combinations HF cannot build or run, naming the field.</summary>
    public void Validate(string origin = "config")
    {
        var t = TextConfig; var v = VisionConfig;
        void Pos(int x, string name) { if (x <= 0) throw new InvalidDataException($"{origin}: {name} must be positive, got {x}"); }
        Pos(t.VocabSize, "text_config.vocab_size"); Pos(t.HiddenSize, "text_config.hidden_size"); Pos(t.NumHiddenLayers, "text_config.num_hidden_layers");
        Pos(t.NumAttentionHeads, "text_config.num_attention_heads"); Pos(t.IntermediateSize, "text_config.intermediate_size");
        Pos(t.MaxPositionEmbeddings, "text_config.max_position_embeddings"); Pos(t.EncoderHiddenSize, "text_config.encoder_hidden_size");
        Pos(v.HiddenSize, "vision_config.hidden_size"); Pos(v.NumHiddenLayers, "vision_config.num_hidden_layers");
        Pos(v.NumAttentionHeads, "vision_config.num_attention_heads"); Pos(v.PatchSize, "vision_config.patch_size"); Pos(v.ImageSize, "vision_config.image_size");
        Pos(v.IntermediateSize, "vision_config.intermediate_size"); Pos(ImageTextHiddenSize, "image_text_hidden_size");
        if (t.HiddenSize % t.NumAttentionHeads != 0)
            throw new InvalidDataException($"{origin}: text_config.hidden_size {t.HiddenSize} is not a multiple of text_config.num_attention_heads {t.NumAttentionHeads}");
        if (v.HiddenSize % v.NumAttentionHeads != 0)
            throw new InvalidDataException($"{origin}: vision_config.hidden_size {v.HiddenSize} is not a multiple of vision_config.num_attention_heads {v.NumAttentionHeads}");
        foreach (var (id, name) in new[] { (t.BosTokenId, "bos_token_id"), (t.PadTokenId, "pad_token_id"), (t.SepTokenId, "sep_token_id") })
            if (id < 0 || id >= t.VocabSize) throw new InvalidDataException($"{origin}: text_config.{name} {id} is outside the vocabulary (vocab_size {t.VocabSize})");
    }

    private static ConfigReader Reader(JsonElement obj, string origin, string path) => new(obj, origin, path, Activations.Names);
}

/// <summary>Integer parsing helper shared by the BLIP runners.</summary>
internal static class BlipParse
{
    public static int Int(string s) => int.Parse(s, NumberStyles.Integer, CultureInfo.InvariantCulture);
}
