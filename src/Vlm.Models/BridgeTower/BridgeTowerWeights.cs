// Loading BridgeTower checkpoints: HF folders (config.json + weights) through any IWeightSource, with the few
// name/shape adaptations HF's from_pretrained would do, and a dry build that lists parameter names and shapes.
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Nn;

namespace Vlm.Models.BridgeTower;

public enum BridgeTowerHead { Model, ImageAndTextRetrieval, MaskedLM, ContrastiveLearning }

public static class BridgeTowerWeights
{
    /// <summary>
    /// Presents <paramref name="source"/> the way a model with HF base prefix <paramref name="prefix"/> ("" for
    /// BridgeTowerModel, "bridgetower" for heads) expects it: a base-model checkpoint loaded into BridgeTowerModel
    /// from a head checkpoint drops the head and the prefix (as HF does); a pre-trained checkpoint with 2 token types
    /// gets the NLVR2 third row copied from row 1; with init_layernorm_from_vision_encoder a checkpoint without
    /// ln_separate gets them as copies of ln_post. Anything else passes through unchanged.
    /// </summary>
    public static IWeightSource Adapt(IWeightSource source, BridgeTowerConfig config, string prefix, int tokenTypes = 2)
    {
        var map = new Dictionary<string, (TensorInfo Info, Func<Tensor> Load)>(StringComparer.Ordinal);
        string p = prefix.Length == 0 ? "" : prefix + ".";
        string headPrefix = BridgeTowerHeadModel.BasePrefix + ".";
        bool stripHead = p.Length == 0 && !source.Contains("token_type_embeddings.weight") && source.Contains(headPrefix + "token_type_embeddings.weight");
        // A base-model checkpoint (no prefix) loaded into a head class: its keys move under the prefix (HF does the same).
        bool addPrefix = p.Length > 0 && !source.Contains(p + "token_type_embeddings.weight") && source.Contains("token_type_embeddings.weight");
        foreach (var name in source.Names)
        {
            string visible = name;
            if (stripHead)
            {
                if (!name.StartsWith(headPrefix, StringComparison.Ordinal)) continue; // head weights: not part of the base model
                visible = name[headPrefix.Length..];
            }
            else if (addPrefix) visible = p + name;
            var n0 = name;
            map[visible] = (source.Info(n0) with { Name = visible }, () => source.Load(n0));
        }
        bool changed = stripHead || addPrefix;

        string tt = p + "token_type_embeddings.weight";
        if (tokenTypes == 3 && map.TryGetValue(tt, out var ttEntry) && ttEntry.Info.Shape.Length == 2 && ttEntry.Info.Shape[0] == 2)
        {
            var inner = ttEntry.Load;
            int h = ttEntry.Info.Shape[1];
            map[tt] = (ttEntry.Info with { Shape = [3, h] }, () =>
            {
                var t2 = inner();
                var t3 = Tensor.Zeros(3, h);
                t3.Narrow(0, 0, 2).CopyFrom(t2);
                t3.Narrow(0, 2, 1).CopyFrom(t2.Narrow(0, 1, 1));
                return t3;
            });
            changed = true;
        }

        var v = config.VisionConfig;
        if (config.InitLayernormFromVisionEncoder && !v.ShareLayernorm)
        {
            string vis = p + "vision_model.visual.";
            for (int i = 0; i < v.NumHiddenLayers; i++)
                foreach (var part in new[] { "weight", "bias" })
                {
                    string sep = $"{vis}ln_separate.{i}.{part}", post = $"{vis}ln_post.{part}";
                    if (map.ContainsKey(sep) || !map.TryGetValue(post, out var postEntry)) continue;
                    map[sep] = (postEntry.Info with { Name = sep }, postEntry.Load);
                    changed = true;
                }
        }
        return changed ? new MappedWeights(source.Origin, map) : source;
    }

    private sealed class MappedWeights(string origin, Dictionary<string, (TensorInfo Info, Func<Tensor> Load)> map) : IWeightSource
    {
        public string Origin { get; } = origin;
        public IReadOnlyCollection<string> Names => map.Keys;
        public bool Contains(string name) => map.ContainsKey(name);
        public TensorInfo Info(string name) => map.TryGetValue(name, out var e) ? e.Info : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");
        public Tensor Load(string name) => map.TryGetValue(name, out var e) ? e.Load() : throw new KeyNotFoundException($"{Origin}: no tensor named '{name}'");
        public void Dispose() { }
    }

    /// <summary>BridgeTowerModel from weights (null ⇒ fresh initialisation from <paramref name="rng"/>); strict.</summary>
    public static (BridgeTowerModel Model, ParameterStore Parameters) LoadModel(BridgeTowerConfig config, IWeightSource? weights, Rng? rng = null)
    {
        var vb = weights is null ? VarBuilder.Init(rng ?? new Rng(0)) : VarBuilder.FromWeights(Adapt(weights, config, ""));
        var model = new BridgeTowerModel(config, BtVars.From(vb));
        return (model, vb.Finish());
    }

    /// <summary>BridgeTowerModel from an HF folder (config.json + weights; a head checkpoint's base is used).</summary>
    public static (BridgeTowerModel Model, ParameterStore Parameters) LoadModel(string folder)
    {
        using var w = OpenFolder(folder);
        return LoadModel(BridgeTowerConfig.Load(Path.Combine(folder, "config.json")), w);
    }

    /// <summary>Every parameter name and shape the model would declare, without allocating any of them.</summary>
    public static List<KeyValuePair<string, int[]>> Describe(BridgeTowerConfig config, BridgeTowerHead head)
    {
        var sink = new List<KeyValuePair<string, int[]>>();
        var dry = BtVars.Dry(sink);
        _ = head switch
        {
            BridgeTowerHead.Model => (object)new BridgeTowerModel(config, dry),
            BridgeTowerHead.ImageAndTextRetrieval => new BridgeTowerForImageAndTextRetrieval(config, dry),
            BridgeTowerHead.MaskedLM => new BridgeTowerForMaskedLM(config, dry),
            BridgeTowerHead.ContrastiveLearning => new BridgeTowerForContrastiveLearning(config, dry),
            _ => throw new ArgumentOutOfRangeException(nameof(head)),
        };
        return sink;
    }

    /// <summary>Opens the weights of an HF folder (model.safetensors, a sharded index, or pytorch_model.bin).</summary>
    public static IWeightSource OpenFolder(string folder) => CheckpointLoader.Open(folder);
}
