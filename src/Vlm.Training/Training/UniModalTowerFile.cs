// The uni-modal pre-trained towers as one file, so several VL runs (the bridges ablation: BridgeTower with each
// link-tower type and METER) start from exactly the same text and vision towers. It holds what the uni-modal stages
// train: the text tower (embeddings, layers) with its MLM head, and the vision tower (ViT, ln_post) with its
// attribute head. The cross-modal parts are not in it: each variant initialises its own.
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Training.Model;

namespace Vlm.Training.Training;

public static class UniModalTowerFile
{
    public const string FileName = "unimodal_towers.safetensors";

    /// <summary>Name prefixes of the parameters the uni-modal stages train.</summary>
    public static readonly string[] Prefixes =
        ["bridgetower.text_model.", "bridgetower.vision_model.", "mlm_score.", MultiTaskBridgeTower.AttributeHeadPrefix];

    public static bool IsUniModal(string name) => Prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    public static void Save(MultiTaskBridgeTower model, string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        SafeTensors.Save(path, model.Parameters.Unique().Where(kv => IsUniModal(kv.Key)).ToList());
    }

    /// <summary>Copies every tower tensor of <paramref name="path"/> into the model; returns how many. The file must
    /// hold exactly the model's uni-modal parameters with the same shapes (one error lists every mismatch).</summary>
    public static int Load(MultiTaskBridgeTower model, string path)
    {
        using var file = SafeTensorsFile.Open(path);
        var want = model.Parameters.Unique().Where(kv => IsUniModal(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var problems = new List<string>();
        foreach (var name in want.Keys.Where(k => !file.Contains(k)).OrderBy(k => k, StringComparer.Ordinal)) problems.Add($"missing {name}");
        foreach (var name in file.Names.OrderBy(k => k, StringComparer.Ordinal))
        {
            if (!want.TryGetValue(name, out var p)) { problems.Add($"unexpected {name}"); continue; }
            var shape = file.Info(name).Shape;
            if (!shape.SequenceEqual(p.ShapeArray())) problems.Add($"{name}: file [{string.Join(", ", shape)}], model [{string.Join(", ", p.ShapeArray())}]");
        }
        if (problems.Count > 0)
            throw new InvalidDataException($"{path}: uni-modal towers do not fit this model (same seed, tokenizer and sizes needed): {string.Join("; ", problems.Take(8))}{(problems.Count > 8 ? $"; … {problems.Count - 8} more" : "")}");
        using (Tensor.NoGrad())
            foreach (var (name, p) in want) p.CopyFrom(file.Load(name));
        return want.Count;
    }
}
