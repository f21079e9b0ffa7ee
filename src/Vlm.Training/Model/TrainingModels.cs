// Building the multi-task training model (MultiTaskBridgeTower) either fresh from a small config or from an HF
// BridgeTower folder (a released checkpoint such as bridgetower-base-itm-mlm, or a folder this project wrote). The
// base model must load completely; a head the folder lacks (or whose shape no longer fits, e.g. a VQA classifier
// over a different answer vocabulary) starts fresh, as HF does when a fine-tuning head is put on a pre-trained base.
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;

namespace Vlm.Training.Model;

/// <summary>A model built from a folder, and the heads that were initialised fresh instead of loaded.</summary>
public sealed record LoadedModel(MultiTaskBridgeTower Model, IReadOnlyList<string> FreshHeads);

public static class TrainingModels
{
    /// <summary>Outputs of the world's vision attribute head (5 shapes, 8 colours, 40 shape×colour, 2 sizes).</summary>
    public const int NumAttributes = 5 + 8 + 40 + 2;

    /// <summary>The small BridgeTower the world pipeline trains: one hidden size everywhere, heads of 64, no dropout.</summary>
    public static BridgeTowerConfig SmallConfig(int hidden, int towerLayers, int crossLayers, int patchSize, int imageSize, int vocab, int pad,
        int maxTextLength, IReadOnlyList<string>? labels)
    {
        int heads = Math.Max(1, hidden / 64);
        return new BridgeTowerConfig
        {
            HiddenSize = hidden, NumHiddenLayers = crossLayers, NumAttentionHeads = heads,
            ContrastiveHiddenSize = hidden, LogitScaleInitValue = 2.6592f, Id2Label = labels, NumLabels = labels?.Count,
            TextConfig = new BridgeTowerTextConfig
            {
                VocabSize = vocab, HiddenSize = hidden, NumHiddenLayers = towerLayers, NumAttentionHeads = heads, IntermediateSize = 4 * hidden,
                HiddenDropoutProb = 0f, AttentionProbsDropoutProb = 0f, MaxPositionEmbeddings = maxTextLength + pad + 2, PadTokenId = pad,
            },
            VisionConfig = new BridgeTowerVisionConfig { HiddenSize = hidden, NumHiddenLayers = towerLayers, PatchSize = patchSize, ImageSize = imageSize },
        };
    }

    /// <summary>The head (or "bridgetower" for the base model) a parameter belongs to: its first name segment.</summary>
    public static string HeadOf(string name)
    {
        int dot = name.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? name : name[..dot];
    }

    /// <summary>Builds the training model from an HF folder (config.json + model.safetensors / sharded / .bin).</summary>
    /// <param name="edit">changes to the folder's config before building (e.g. a new answer vocabulary)</param>
    /// <param name="nlvr2">add the NLVR2 head (three token types; a two-row checkpoint's row 2 starts as row 1)</param>
    /// <param name="reinitHeads">heads to initialise fresh even when the folder has them with the right shape</param>
    public static LoadedModel FromFolder(string folder, ulong seed, bool nlvr2 = false, Func<BridgeTowerConfig, BridgeTowerConfig>? edit = null,
        IEnumerable<string>? reinitHeads = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder not found: {folder}");
        var config = BridgeTowerConfig.Load(Path.Combine(folder, "config.json"));
        // Released ITM/MLM checkpoints have no contrastive head; the training model always has one (HF's defaults).
        config = config with { ContrastiveHiddenSize = config.ContrastiveHiddenSize ?? 512, LogitScaleInitValue = config.LogitScaleInitValue ?? 2.6592f };
        if (edit != null) config = edit(config);
        var model = new MultiTaskBridgeTower(config, new Rng(seed), NumAttributes, nlvr2);
        using var raw = CheckpointLoader.Open(folder);
        var w = BridgeTowerWeights.Adapt(raw, config, BridgeTowerHeadModel.BasePrefix, nlvr2 ? 3 : 2);
        var reinit = new HashSet<string>(reinitHeads ?? [], StringComparer.Ordinal);
        var errors = new List<string>();
        var loads = new List<(Tensor Param, string Name, int Rows)>();
        var fresh = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var group in model.Parameters.Unique().Where(kv => !kv.Key.StartsWith(MultiTaskBridgeTower.AttributeHeadPrefix, StringComparison.Ordinal))
                     .GroupBy(kv => HeadOf(kv.Key)))
        {
            bool isBase = group.Key == BridgeTowerHeadModel.BasePrefix;
            var planned = new List<(Tensor, string, int)>();
            var problems = new List<string>();
            foreach (var (name, p) in group)
            {
                if (!w.Contains(name)) { problems.Add($"missing {name}"); continue; }
                var shape = w.Info(name).Shape;
                if (shape.SequenceEqual(p.ShapeArray())) planned.Add((p, name, -1));
                // An NLVR2 checkpoint (three token types) used for a two-image-type task: its first two rows.
                else if (name.EndsWith("token_type_embeddings.weight", StringComparison.Ordinal) && shape.Length == 2 && shape[1] == p.Size(1) && shape[0] > p.Size(0))
                    planned.Add((p, name, p.Size(0)));
                else problems.Add($"{name} is [{string.Join(", ", shape)}] in the checkpoint but [{string.Join(", ", p.ShapeArray())}] in the model");
            }
            if (isBase) { errors.AddRange(problems); loads.AddRange(planned); }
            else if (problems.Count > 0 || reinit.Contains(group.Key)) fresh.Add(group.Key);
            else loads.AddRange(planned);
        }
        if (errors.Count > 0)
            throw new InvalidDataException($"{folder}: the checkpoint does not fit its config.json ({errors.Count} problems; first: {string.Join("; ", errors.Take(3))})");
        var unexpected = w.Names.Where(n => n.StartsWith(BridgeTowerHeadModel.BasePrefix + ".", StringComparison.Ordinal) && !model.Parameters.Contains(n)
            && !n.EndsWith("position_ids", StringComparison.Ordinal)).ToList();
        if (unexpected.Count > 0)
            throw new InvalidDataException($"{folder}: the checkpoint has base-model tensors its config.json does not declare ({unexpected.Count}; first: {unexpected[0]})");
        using (Tensor.NoGrad())
            foreach (var (p, name, rows) in loads)
            {
                var t = w.Load(name);
                p.CopyFrom(rows < 0 ? t : t.Narrow(0, 0, rows));
            }
        return new LoadedModel(model, fresh.ToList());
    }
}
