// Checkpoints of BLIP / ALBEF pre-training. A training checkpoint folder holds config.json (HF BlipConfig of the
// parts), pretrain_config.json (objective settings), model.safetensors (every trained parameter under its HF-style
// name, tied names included), training_state.safetensors (momentum copy, feature queues, optimizer moments) and
// trainer_state.json, written under a temporary name and renamed (a kill leaves the old or the new folder).
// Export writes HF folders that BlipForImageTextRetrieval / BlipForConditionalGeneration load strictly.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.Blip;
using Vlm.Nn.Optim;

namespace Vlm.Training.Blip;

public sealed record BlipTrainerState(string Kind, long Step, long TotalSteps, ulong[] DropoutRng, bool Complete);

public enum BlipExport { Retrieval, Captioning }

public static class BlipCheckpoint
{
    public const string ModelFile = "model.safetensors";
    public const string StateFile = "training_state.safetensors";
    public const string TrainerStateFile = "trainer_state.json";
    public const string PretrainConfigFile = "pretrain_config.json";

    /// <summary>HF config.json of a BlipConfig (every field BlipConfig.FromJson reads).</summary>
    public static string ConfigJson(BlipConfig c, string? architecture = null)
    {
        var t = c.TextConfig; var v = c.VisionConfig;
        var o = new JsonObject
        {
            ["model_type"] = "blip",
            ["projection_dim"] = c.ProjectionDim, ["logit_scale_init_value"] = c.LogitScaleInitValue, ["image_text_hidden_size"] = c.ImageTextHiddenSize,
            ["label_smoothing"] = c.LabelSmoothing, ["initializer_range"] = c.InitializerRange, ["initializer_factor"] = c.InitializerFactor,
            ["text_config"] = new JsonObject
            {
                ["model_type"] = "blip_text_model", ["vocab_size"] = t.VocabSize, ["hidden_size"] = t.HiddenSize, ["encoder_hidden_size"] = t.EncoderHiddenSize,
                ["intermediate_size"] = t.IntermediateSize, ["projection_dim"] = t.ProjectionDim, ["num_hidden_layers"] = t.NumHiddenLayers,
                ["num_attention_heads"] = t.NumAttentionHeads, ["max_position_embeddings"] = t.MaxPositionEmbeddings, ["hidden_act"] = t.HiddenAct,
                ["layer_norm_eps"] = t.LayerNormEps, ["hidden_dropout_prob"] = t.HiddenDropoutProb, ["attention_probs_dropout_prob"] = t.AttentionProbsDropoutProb,
                ["initializer_range"] = t.InitializerRange, ["bos_token_id"] = t.BosTokenId, ["eos_token_id"] = t.EosTokenId, ["pad_token_id"] = t.PadTokenId,
                ["sep_token_id"] = t.SepTokenId, ["is_decoder"] = t.IsDecoder, ["use_cache"] = t.UseCache, ["label_smoothing"] = t.LabelSmoothing,
            },
            ["vision_config"] = new JsonObject
            {
                ["model_type"] = "blip_vision_model", ["hidden_size"] = v.HiddenSize, ["intermediate_size"] = v.IntermediateSize, ["projection_dim"] = v.ProjectionDim,
                ["num_hidden_layers"] = v.NumHiddenLayers, ["num_attention_heads"] = v.NumAttentionHeads, ["image_size"] = v.ImageSize,
                ["patch_size"] = v.PatchSize, ["hidden_act"] = v.HiddenAct, ["layer_norm_eps"] = v.LayerNormEps, ["attention_dropout"] = v.AttentionDropout,
                ["initializer_range"] = v.InitializerRange,
            },
        };
        if (architecture != null) o["architectures"] = new JsonArray(architecture);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Objective settings (everything of <see cref="BlipPretrainConfig"/> except the model sizes).</summary>
    public static string PretrainConfigJson(BlipPretrainConfig p) => new JsonObject
    {
        ["kind"] = p.Kind.ToString().ToLowerInvariant(), ["fusion_start"] = p.FusionStart, ["queue_size"] = p.QueueSize, ["momentum"] = p.Momentum,
        ["alpha"] = p.Alpha, ["alpha_ramp_steps"] = p.AlphaRampSteps, ["temp_init"] = p.TempInit, ["temp_min"] = p.TempMin, ["temp_max"] = p.TempMax,
        ["label_smoothing"] = p.LabelSmoothing, ["negative_weight_eps"] = p.NegativeWeightEps, ["enc_token_id"] = p.EncTokenId,
        ["mask_token_id"] = p.MaskTokenId, ["special_token_ids"] = new JsonArray(p.SpecialTokenIds.Select(x => (JsonNode)x).ToArray()),
        ["first_ordinary_token_id"] = p.FirstOrdinaryTokenId, ["mlm_probability"] = p.MlmProbability,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Reads a training checkpoint's config.json + pretrain_config.json back into a config.</summary>
    public static BlipPretrainConfig ReadConfig(string dir)
    {
        var model = BlipConfig.Load(dir);
        var path = Path.Combine(dir, PretrainConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no pre-training config", path);
        JsonNode n;
        try { n = JsonNode.Parse(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty"); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}"); }
        T Get<T>(string key) => n[key] is { } v ? v.GetValue<T>() : throw new InvalidDataException($"{path}: missing '{key}'");
        var kind = Get<string>("kind") switch { "blip" => PretrainKind.Blip, "albef" => PretrainKind.Albef, var k => throw new InvalidDataException($"{path}: kind '{k}' is not blip or albef") };
        return new BlipPretrainConfig
        {
            Model = model, Kind = kind, FusionStart = Get<int>("fusion_start"), QueueSize = Get<int>("queue_size"), Momentum = Get<double>("momentum"),
            Alpha = Get<float>("alpha"), AlphaRampSteps = Get<long>("alpha_ramp_steps"), TempInit = Get<float>("temp_init"), TempMin = Get<float>("temp_min"),
            TempMax = Get<float>("temp_max"), LabelSmoothing = Get<float>("label_smoothing"), NegativeWeightEps = Get<float>("negative_weight_eps"),
            EncTokenId = Get<int>("enc_token_id"), MaskTokenId = Get<int>("mask_token_id"),
            SpecialTokenIds = (n["special_token_ids"] as JsonArray ?? throw new InvalidDataException($"{path}: missing 'special_token_ids'")).Select(x => x!.GetValue<long>()).ToArray(),
            FirstOrdinaryTokenId = Get<int>("first_ordinary_token_id"), MlmProbability = Get<float>("mlm_probability"),
        };
    }

    /// <summary>Atomically writes a training checkpoint of <paramref name="model"/> at <paramref name="dir"/>.</summary>
    public static void Save(string dir, BlipPretrainModel model, Optimizer? optimizer, BlipTrainerState state, string? tokenizerDir = null)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(dir))!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, ".tmp-" + Path.GetFileName(dir) + "-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        File.WriteAllText(Path.Combine(tmp, "config.json"), ConfigJson(model.Config.Model));
        File.WriteAllText(Path.Combine(tmp, PretrainConfigFile), PretrainConfigJson(model.Config));
        SafeTensors.Save(Path.Combine(tmp, ModelFile), model.Parameters.Named, new Dictionary<string, string> { ["format"] = "pt" });
        CopyTokenizer(tokenizerDir, tmp);
        var extra = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, _, m) in model.Momentum.Pairs) extra.Add(new("momentum." + name, m));
        var q = model.Queue;
        extra.Add(new("queue.image", q.Image));
        extra.Add(new("queue.text", q.Text));
        extra.Add(new("queue.idx", Tensor.FromArray(q.Idx, q.Size)));
        extra.Add(new("queue.ptr", Tensor.FromArray(new long[] { q.Ptr }, 1)));
        if (optimizer != null)
            foreach (var kv in optimizer.StateDict()) extra.Add(new("optim." + kv.Key, kv.Value));
        SafeTensors.Save(Path.Combine(tmp, StateFile), extra);
        File.WriteAllText(Path.Combine(tmp, TrainerStateFile), JsonSerializer.Serialize(state));   // last: marks completeness
        Vlm.Training.Training.Checkpoint.ReplaceFolder(tmp, dir);
    }

    public static BlipTrainerState? ReadState(string dir)
    {
        var p = Path.Combine(dir, TrainerStateFile);
        if (!File.Exists(p)) return null;
        return JsonSerializer.Deserialize<BlipTrainerState>(File.ReadAllText(p)) ?? throw new InvalidDataException($"{p}: empty trainer state");
    }

    /// <summary>Loads parameters, momentum copy and queues (and, when given, optimizer moments) strictly.</summary>
    public static void Load(string dir, BlipPretrainModel model, Optimizer? optimizer)
    {
        using (var w = SafeTensorsFile.Open(Path.Combine(dir, ModelFile)))
            model.Parameters.Load(w, strict: true);
        var statePath = Path.Combine(dir, StateFile);
        using var s = SafeTensorsFile.Open(statePath);
        var names = s.Names.ToHashSet(StringComparer.Ordinal);
        Tensor Need(string n) => names.Contains(n) ? s.Load(n) : throw new InvalidDataException($"{statePath}: missing '{n}'");
        foreach (var (name, _, m) in model.Momentum.Pairs)
        {
            var t = Need("momentum." + name);
            if (!t.ShapeArray().SequenceEqual(m.ShapeArray())) throw new InvalidDataException($"{statePath}: momentum.{name} is {t.ShapeString}, the model has {m.ShapeString}");
            t.Contiguous().Span.CopyTo(m.Span);
        }
        model.Queue.Load(Need("queue.image").ToArray(), Need("queue.text").ToArray(), Need("queue.idx").ToInt64Array(), (int)Need("queue.ptr").ToInt64Array()[0]);
        if (optimizer != null)
        {
            var optim = names.Where(n => n.StartsWith("optim.", StringComparison.Ordinal)).ToDictionary(n => n[6..], n => s.Load(n), StringComparer.Ordinal);
            if (optim.Count == 0) throw new InvalidDataException($"{dir}: no optimizer state to resume from");
            optimizer.LoadStateDict(optim);
        }
    }

    /// <summary>Writes an HF folder of the BLIP configuration's weights for one head class: Retrieval
    /// (vision_model, text_encoder, vision_proj, text_proj, itm_head → BlipForImageTextRetrieval) or Captioning
    /// (vision_model, text_decoder → BlipForConditionalGeneration). ALBEF has no HF class and is refused.</summary>
    public static void ExportHf(string dir, BlipPretrainModel model, BlipExport head, string? tokenizerDir = null)
    {
        if (model.Config.Kind != PretrainKind.Blip) throw new InvalidOperationException("only the BLIP configuration exports to HF BLIP classes (ALBEF's split encoder has no HF counterpart)");
        string[] prefixes = head == BlipExport.Retrieval
            ? ["vision_model.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head."]
            : ["vision_model.", "text_decoder."];
        var tensors = model.Parameters.Named.Where(kv => prefixes.Any(p => kv.Key.StartsWith(p, StringComparison.Ordinal))).ToList();
        Directory.CreateDirectory(dir);
        var arch = head == BlipExport.Retrieval ? "BlipForImageTextRetrieval" : "BlipForConditionalGeneration";
        File.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson(model.Config.Model, arch));
        SafeTensors.Save(Path.Combine(dir, ModelFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), PreprocessorJson(model.Config.Model.VisionConfig.ImageSize));
        CopyTokenizer(tokenizerDir, dir);
    }

    /// <summary>HF preprocessor_config.json for BlipImageProcessor at a square size with CLIP's mean/std (the
    /// world pipeline's pixels: its square images at that size need no resize, so both processors agree).</summary>
    public static string PreprocessorJson(int size) => new JsonObject
    {
        ["image_processor_type"] = "BlipImageProcessor", ["do_resize"] = true, ["size"] = new JsonObject { ["height"] = size, ["width"] = size },
        ["resample"] = 3, ["do_rescale"] = true, ["rescale_factor"] = 1.0 / 255, ["do_normalize"] = true,
        ["image_mean"] = new JsonArray(0.48145466, 0.4578275, 0.40821073), ["image_std"] = new JsonArray(0.26862954, 0.26130258, 0.27577711),
        ["do_convert_rgb"] = true,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    private static void CopyTokenizer(string? from, string to)
    {
        if (from is null) return;
        foreach (var f in Directory.GetFiles(from))
        {
            var name = Path.GetFileName(f);
            if (name.StartsWith("tokenizer", StringComparison.Ordinal) || name is "vocab.json" or "merges.txt" or "vocab.txt" or "special_tokens_map.json")
                File.Copy(f, Path.Combine(to, name), overwrite: true);
        }
    }
}
