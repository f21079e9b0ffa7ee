// Training checkpoints as HF-style model folders: config.json, model.safetensors, tokenizer files and
// preprocessor_config.json (what the BridgeTower loaders read), plus training_state.safetensors (optimizer moments,
// non-HF parameters) and trainer_state.json (stage, step, RNG states). A folder is written under a temporary name
// and renamed into place, so a kill leaves either the previous checkpoint or the new one, never half of one.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Nn.Optim;
using Vlm.Training.Model;

namespace Vlm.Training.Training;

/// <summary>What a checkpoint says about where training stood.</summary>
public sealed record TrainerState(string Stage, long Step, long TotalSteps, ulong[] DropoutRng, bool Complete);

public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string StateFile = "training_state.safetensors";
    public const string TrainerStateFile = "trainer_state.json";

    /// <summary>HF config.json of a BridgeTower config (the fields BridgeTowerConfig.FromJson reads).</summary>
    /// <param name="meter">mark the folder as METER (no link towers; see Vlm.Models.Meter): HF's BridgeTower classes
    /// cannot load it, and the key says why</param>
    public static string ConfigJson(BridgeTowerConfig c, bool meter = false)
    {
        var t = c.TextConfig; var v = c.VisionConfig;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("BridgeTowerForMaskedLM", "BridgeTowerForImageAndTextRetrieval", "BridgeTowerForContrastiveLearning"),
            ["model_type"] = "bridgetower",
            ["share_cross_modal_transformer_layers"] = c.ShareCrossModalTransformerLayers,
            ["hidden_act"] = c.HiddenAct,
            ["hidden_size"] = c.HiddenSize,
            ["initializer_factor"] = c.InitializerFactor,
            ["layer_norm_eps"] = c.LayerNormEps,
            ["share_link_tower_layers"] = c.ShareLinkTowerLayers,
            ["link_tower_type"] = c.LinkTowerType switch { LinkTowerType.Add => "add", LinkTowerType.ScaledAdd => "scaled_add", _ => "interpolate" },
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["init_layernorm_from_vision_encoder"] = c.InitLayernormFromVisionEncoder,
            ["text_config"] = new JsonObject
            {
                ["vocab_size"] = t.VocabSize, ["hidden_size"] = t.HiddenSize, ["num_hidden_layers"] = t.NumHiddenLayers,
                ["num_attention_heads"] = t.NumAttentionHeads, ["intermediate_size"] = t.IntermediateSize, ["hidden_act"] = t.HiddenAct,
                ["hidden_dropout_prob"] = t.HiddenDropoutProb, ["attention_probs_dropout_prob"] = t.AttentionProbsDropoutProb,
                ["max_position_embeddings"] = t.MaxPositionEmbeddings, ["type_vocab_size"] = t.TypeVocabSize,
                ["layer_norm_eps"] = t.LayerNormEps, ["pad_token_id"] = t.PadTokenId, ["bos_token_id"] = t.BosTokenId,
                ["eos_token_id"] = t.EosTokenId, ["position_embedding_type"] = "absolute", ["initializer_factor"] = t.InitializerFactor,
            },
            ["vision_config"] = new JsonObject
            {
                ["hidden_size"] = v.HiddenSize, ["num_hidden_layers"] = v.NumHiddenLayers, ["num_channels"] = v.NumChannels,
                ["patch_size"] = v.PatchSize, ["image_size"] = v.ImageSize, ["layer_norm_eps"] = v.LayerNormEps,
                ["stop_gradient"] = v.StopGradient, ["share_layernorm"] = v.ShareLayernorm, ["remove_last_layer"] = v.RemoveLastLayer,
                ["initializer_factor"] = v.InitializerFactor,
            },
        };
        if (meter) o["cross_modal_encoder"] = "meter";
        if (c.ContrastiveHiddenSize is int ch) o["contrastive_hidden_size"] = ch;
        if (c.LogitScaleInitValue is float ls) o["logit_scale_init_value"] = ls;
        if (c.Id2Label is { } labels)
        {
            var id2 = new JsonObject(); var l2i = new JsonObject();
            for (int i = 0; i < labels.Count; i++) { id2[i.ToString(CultureInfo.InvariantCulture)] = labels[i]; l2i[labels[i]] = i; }
            o["id2label"] = id2; o["label2id"] = l2i; o["num_labels"] = labels.Count;
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>HF preprocessor_config.json for BridgeTowerImageProcessor at a fixed square size.</summary>
    public static string PreprocessorJson(int size) => new JsonObject
    {
        ["image_processor_type"] = "BridgeTowerImageProcessor",
        ["do_resize"] = true, ["size"] = new JsonObject { ["shortest_edge"] = size }, ["size_divisor"] = 16,
        ["resample"] = 3, ["do_rescale"] = true, ["rescale_factor"] = 1.0 / 255, ["do_normalize"] = true,
        ["image_mean"] = new JsonArray(0.48145466, 0.4578275, 0.40821073), ["image_std"] = new JsonArray(0.26862954, 0.26130258, 0.27577711),
        ["do_pad"] = true, ["do_center_crop"] = true, ["crop_size"] = new JsonObject { ["shortest_edge"] = size },
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Writes the HF model files (config, weights, tokenizer, preprocessor) into <paramref name="dir"/>.</summary>
    public static void WriteModelFiles(string dir, MultiTaskBridgeTower model, string tokenizerDir, int imageSize)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson(model.Config, model.IsMeter));
        SafeTensors.Save(Path.Combine(dir, ModelFile), model.HfParameters(), new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var f in Text.WorldBpe.Files)
            if (File.Exists(Path.Combine(tokenizerDir, f))) File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(dir, f), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"), PreprocessorJson(imageSize));
    }

    /// <summary>Atomically writes a full checkpoint folder at <paramref name="dir"/> (replacing any there).</summary>
    public static void Save(string dir, MultiTaskBridgeTower model, Optimizer? optimizer, TrainerState state, string tokenizerDir, int imageSize)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(dir))!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, ".tmp-" + Path.GetFileName(dir) + "-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        WriteModelFiles(tmp, model, tokenizerDir, imageSize);
        var extra = new List<KeyValuePair<string, Tensor>>();
        foreach (var kv in model.Parameters.Named)
            if (kv.Key.StartsWith(MultiTaskBridgeTower.AttributeHeadPrefix, StringComparison.Ordinal)) extra.Add(new("param." + kv.Key, kv.Value));
        if (optimizer != null)
            foreach (var kv in optimizer.StateDict()) extra.Add(new("optim." + kv.Key, kv.Value));
        SafeTensors.Save(Path.Combine(tmp, StateFile), extra);
        // Written last: a folder with trainer_state.json is complete.
        File.WriteAllText(Path.Combine(tmp, TrainerStateFile), JsonSerializer.Serialize(state));
        ReplaceFolder(tmp, dir);
    }

    /// <summary>Moves a completely written temp folder into place, replacing <paramref name="dir"/> if present
    /// (the old one is moved aside first, so a crash leaves either the old or the new folder, never a mix).</summary>
    internal static void ReplaceFolder(string tmp, string dir)
    {
        if (Directory.Exists(dir))
        {
            var old = dir + ".old-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            Directory.Move(dir, old);
            Directory.Move(tmp, dir);
            Directory.Delete(old, true);
        }
        else Directory.Move(tmp, dir);
    }

    public static TrainerState? ReadState(string dir)
    {
        var p = Path.Combine(dir, TrainerStateFile);
        if (!File.Exists(p)) return null;
        return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(p)) ?? throw new InvalidDataException($"{p}: empty trainer state");
    }

    /// <summary>Loads model parameters (and, when given, optimizer state) from a checkpoint folder, strictly.</summary>
    public static void Load(string dir, MultiTaskBridgeTower model, Optimizer? optimizer)
    {
        var all = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var w = SafeTensorsFile.Open(Path.Combine(dir, ModelFile)))
            foreach (var n in w.Names) all[n] = w.Load(n);
        Dictionary<string, Tensor> optim = new(StringComparer.Ordinal);
        var statePath = Path.Combine(dir, StateFile);
        if (File.Exists(statePath))
            using (var s = SafeTensorsFile.Open(statePath))
                foreach (var n in s.Names)
                {
                    if (n.StartsWith("param.", StringComparison.Ordinal)) all[n[6..]] = s.Load(n);
                    else if (n.StartsWith("optim.", StringComparison.Ordinal)) optim[n[6..]] = s.Load(n);
                }
        var optional = model.Parameters.Named.Select(kv => kv.Key).Where(k => k.StartsWith(MultiTaskBridgeTower.AttributeHeadPrefix, StringComparison.Ordinal));
        model.Parameters.Load(new InMemoryWeights(all, dir), strict: true, optionalNames: optional);
        if (optimizer != null)
        {
            if (optim.Count == 0) throw new InvalidDataException($"{dir}: no optimizer state to resume from");
            optimizer.LoadStateDict(optim);
        }
    }
}
