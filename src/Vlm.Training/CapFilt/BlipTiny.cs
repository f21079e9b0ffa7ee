// Small BLIP models (Li et al., arXiv 2201.12086) for training on the synthetic world: HF BlipConfig values at a
// size that trains in minutes on a CPU, HF folders to save them in (config.json, model.safetensors, tokenizer files,
// preprocessor_config.json — what BlipForX.FromFolder, AutoTokenizer and `vlm caption` read), and a decode-once
// pixel cache through HF's BlipImageProcessor.
using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Nn;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Processing;

namespace Vlm.Training.CapFilt;

public sealed record BlipSize
{
    public int ImageSize { get; init; } = 64;
    public int PatchSize { get; init; } = 16;
    public int Hidden { get; init; } = 128;
    public int VisionLayers { get; init; } = 2;
    public int TextLayers { get; init; } = 2;
    public int Heads { get; init; } = 2;
    public int MaxTextLength { get; init; } = 40;
    /// <summary>BLIP's captioning loss uses label smoothing 0.1.</summary>
    public float LabelSmoothing { get; init; } = 0.1f;
}

public static class BlipTiny
{
    public static BlipConfig Config(BlipSize s, int vocab, string architecture) => new()
    {
        TextConfig = new BlipTextConfig
        {
            VocabSize = vocab, HiddenSize = s.Hidden, EncoderHiddenSize = s.Hidden, IntermediateSize = 4 * s.Hidden, ProjectionDim = s.Hidden,
            NumHiddenLayers = s.TextLayers, NumAttentionHeads = s.Heads, MaxPositionEmbeddings = s.MaxTextLength + 8,
            BosTokenId = WorldWordPiece.DecId, PadTokenId = WorldWordPiece.PadId, SepTokenId = WorldWordPiece.SepId, EosTokenId = WorldWordPiece.SepId,
            LabelSmoothing = s.LabelSmoothing,
        },
        // HF's vision initializer_range default (1e-10) is for loading checkpoints; training from scratch needs a real one.
        VisionConfig = new BlipVisionConfig
        {
            HiddenSize = s.Hidden, IntermediateSize = 4 * s.Hidden, ProjectionDim = s.Hidden, NumHiddenLayers = s.VisionLayers,
            NumAttentionHeads = s.Heads, ImageSize = s.ImageSize, PatchSize = s.PatchSize, InitializerRange = 0.02f,
        },
        ProjectionDim = s.Hidden, ImageTextHiddenSize = s.Hidden, Architecture = architecture,
    };

    /// <summary>HF config.json (the fields BlipConfig.FromJson reads).</summary>
    public static string ConfigJson(BlipConfig c)
    {
        var t = c.TextConfig; var v = c.VisionConfig;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Architecture ?? "BlipForConditionalGeneration"),
            ["model_type"] = "blip", ["projection_dim"] = c.ProjectionDim, ["logit_scale_init_value"] = c.LogitScaleInitValue,
            ["image_text_hidden_size"] = c.ImageTextHiddenSize, ["label_smoothing"] = c.LabelSmoothing,
            ["initializer_range"] = c.InitializerRange, ["initializer_factor"] = c.InitializerFactor,
            ["text_config"] = new JsonObject
            {
                ["model_type"] = "blip_text_model", ["vocab_size"] = t.VocabSize, ["hidden_size"] = t.HiddenSize,
                ["encoder_hidden_size"] = t.EncoderHiddenSize, ["intermediate_size"] = t.IntermediateSize, ["projection_dim"] = t.ProjectionDim,
                ["num_hidden_layers"] = t.NumHiddenLayers, ["num_attention_heads"] = t.NumAttentionHeads,
                ["max_position_embeddings"] = t.MaxPositionEmbeddings, ["hidden_act"] = t.HiddenAct, ["layer_norm_eps"] = t.LayerNormEps,
                ["hidden_dropout_prob"] = t.HiddenDropoutProb, ["attention_probs_dropout_prob"] = t.AttentionProbsDropoutProb,
                ["initializer_range"] = t.InitializerRange, ["bos_token_id"] = t.BosTokenId, ["eos_token_id"] = t.EosTokenId,
                ["pad_token_id"] = t.PadTokenId, ["sep_token_id"] = t.SepTokenId, ["is_decoder"] = t.IsDecoder, ["use_cache"] = t.UseCache,
                ["label_smoothing"] = t.LabelSmoothing,
            },
            ["vision_config"] = new JsonObject
            {
                ["model_type"] = "blip_vision_model", ["hidden_size"] = v.HiddenSize, ["intermediate_size"] = v.IntermediateSize,
                ["projection_dim"] = v.ProjectionDim, ["num_hidden_layers"] = v.NumHiddenLayers, ["num_attention_heads"] = v.NumAttentionHeads,
                ["image_size"] = v.ImageSize, ["patch_size"] = v.PatchSize, ["hidden_act"] = v.HiddenAct, ["layer_norm_eps"] = v.LayerNormEps,
                ["attention_dropout"] = v.AttentionDropout, ["initializer_range"] = v.InitializerRange,
            },
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>HF preprocessor_config.json for BlipImageProcessor at a square size.</summary>
    public static string PreprocessorJson(int size) => new JsonObject
    {
        ["image_processor_type"] = "BlipImageProcessor", ["do_resize"] = true, ["size"] = new JsonObject { ["height"] = size, ["width"] = size },
        ["resample"] = 3, ["do_rescale"] = true, ["rescale_factor"] = 1.0 / 255, ["do_normalize"] = true,
        ["image_mean"] = new JsonArray(ClipConstants.Mean.Select(x => (JsonNode)x).ToArray()),
        ["image_std"] = new JsonArray(ClipConstants.Std.Select(x => (JsonNode)x).ToArray()), ["do_convert_rgb"] = true,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Writes an HF model folder: config, weights (atomic), tokenizer files, preprocessor config.</summary>
    public static void Save(string dir, BlipConfig config, ParameterStore store, string tokenizerDir)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson(config));
        store.Save(Path.Combine(dir, "model.safetensors"));
        foreach (var f in WorldWordPiece.Files) File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(dir, f), overwrite: true);
        AtomicFile.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), PreprocessorJson(config.VisionConfig.ImageSize));
    }

    /// <summary>A fresh model with parameters drawn from <paramref name="rng"/>.</summary>
    public static (T model, ParameterStore store) Create<T>(BlipConfig c, Rng rng, Func<VarBuilder, BlipConfig, T> build) where T : Module
    {
        var vb = VarBuilder.Init(rng);
        var m = build(vb, c);
        return (m, vb.Finish());
    }
}

/// <summary>Decodes and preprocesses images once (thread-safe) through HF's BlipImageProcessor.</summary>
public sealed class BlipPixelCache(int size)
{
    private readonly BlipImageProcessor _processor = new() { Height = size, Width = size };
    private readonly ConcurrentDictionary<string, float[]> _cache = new(StringComparer.Ordinal);
    public int Size { get; } = size;

    public float[] Get(string path) => _cache.GetOrAdd(path, p =>
    {
        var img = ImageDecoder.Decode(p);
        if (img.Mode != PixelMode.RGB) img = img.ToRgb();
        return _processor.Preprocess(img).PixelValues.Contiguous().ToArray();
    });

    /// <summary>(B, 3, S, S) pixel values of the images at <paramref name="paths"/>.</summary>
    public Tensor Batch(IReadOnlyList<string> paths)
    {
        int n = 3 * Size * Size;
        var data = new float[paths.Count * n];
        for (int i = 0; i < paths.Count; i++) Get(paths[i]).CopyTo(data, i * n);
        return Tensor.FromArray(data, paths.Count, 3, Size, Size);
    }
}
