// A dataset folder in the standard formats, as the training and evaluation commands find their files in it:
// image-text pairs from pairs_{split}.jsonl, captions_{split}.json (COCO) or dataset_karpathy.json; VQAv2 from
// questions_{split}.json + annotations_{split}.json (or VQAv2's own names, e.g.
// v2_OpenEnded_mscoco_train2014_questions.json); ITM hard negatives from itm_negatives_{split}.jsonl; NLVR2 from
// nlvr2_{split}.jsonl; world.json when the folder is a generated world (its seed regenerates the scenes).
using System.Text.Json;
using Vlm.Training.Training;
using Vlm.Training.World;

namespace Vlm.Training.Data;

/// <summary>What `vlm world` records about the world it wrote (enough to regenerate any scene).</summary>
public sealed record WorldInfo(ulong Seed, int ImageSize, int Train, int Val, int Test)
{
    public const string FileName = "world.json";

    public WorldGenerator Generator() => new(Seed, new WorldOptions { MinImageSize = ImageSize, MaxImageSize = ImageSize });

    public void Save(string dir) => AtomicFile.WriteAllText(Path.Combine(dir, FileName), JsonSerializer.Serialize(new
    {
        generator = "vlm world", seed = Seed, image_size = ImageSize, train = Train, val = Val, test = Test,
    }));

    public static WorldInfo? Load(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var d = JsonDocument.Parse(File.ReadAllText(path));
            var r = d.RootElement;
            return new WorldInfo(r.GetProperty("seed").GetUInt64(), r.GetProperty("image_size").GetInt32(), r.GetProperty("train").GetInt32(),
                r.GetProperty("val").GetInt32(), r.GetProperty("test").GetInt32());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a world description ({e.Message})");
        }
    }
}

public sealed class DatasetFolder
{
    public string Root { get; }
    /// <summary>How VQA image ids map to files when the folder has no captions file for the split, relative to
    /// <see cref="Root"/>: "{id}" or zero-padded "{id:12}", e.g. "train2014/COCO_train2014_{id:12}.jpg".</summary>
    public string? ImagePattern { get; init; }

    public DatasetFolder(string root)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"dataset folder not found: {root}");
        Root = root;
    }

    public WorldInfo? World => WorldInfo.Load(Root);

    private string P(string name) => Path.Combine(Root, name);

    /// <summary>Image-text pairs of a split, from the first of pairs_{split}.jsonl, captions_{split}.json,
    /// dataset_karpathy.json (its "restval" counts as train) that exists.</summary>
    public List<ImageCaption> Pairs(string split)
    {
        List<ImageCaption> list;
        if (File.Exists(P($"pairs_{split}.jsonl"))) list = DatasetFormats.ReadPairsJsonl(P($"pairs_{split}.jsonl"), Root);
        else if (File.Exists(P($"captions_{split}.json"))) list = DatasetFormats.ReadCocoCaptions(P($"captions_{split}.json"), Root);
        else if (File.Exists(P("dataset_karpathy.json")))
            list = DatasetFormats.ReadKarpathy(P("dataset_karpathy.json"), Root, split).SelectMany(k => k.Captions.Select(c => new ImageCaption(k.ImageId, k.ImagePath, c))).ToList();
        else throw new FileNotFoundException($"{Root}: no image-text pairs for split '{split}' (expected pairs_{split}.jsonl, captions_{split}.json or dataset_karpathy.json)");
        return NonEmpty(list, $"image-text pairs of split '{split}'");
    }

    public bool HasVqa(string split) => FindVqaFile(split, "questions") != null;

    /// <summary>VQAv2 questions with their annotations; image paths from captions_{split}.json, the Karpathy file, or
    /// <see cref="ImagePattern"/>.</summary>
    public List<VqaItem> Vqa(string split)
    {
        var q = FindVqaFile(split, "questions") ?? throw new FileNotFoundException($"{Root}: no VQA questions for split '{split}' (expected questions_{split}.json)");
        var a = FindVqaFile(split, "annotations") ?? throw new FileNotFoundException($"{Root}: no VQA annotations for split '{split}' (expected annotations_{split}.json)");
        var images = ImageIndex(split);
        string PathOf(int id)
        {
            if (images != null && images.TryGetValue(id, out var f)) return f;
            if (ImagePattern != null) return P(ExpandPattern(ImagePattern, id));
            throw new InvalidDataException($"{Root}: no file known for VQA image_id {id} (add captions_{split}.json or pass an image pattern)");
        }
        return NonEmpty(DatasetFormats.ReadVqa(q, a, PathOf), $"VQA questions of split '{split}'");
    }

    private Dictionary<int, string>? ImageIndex(string split)
    {
        if (File.Exists(P($"captions_{split}.json")))
            return DatasetFormats.ReadCocoCaptions(P($"captions_{split}.json"), Root).GroupBy(c => c.ImageId).ToDictionary(g => g.Key, g => g.First().ImagePath);
        if (File.Exists(P("dataset_karpathy.json")))
            return DatasetFormats.ReadKarpathy(P("dataset_karpathy.json"), Root).GroupBy(k => k.ImageId).ToDictionary(g => g.Key, g => g.First().ImagePath);
        return null;
    }

    /// <summary>"{id}" → the id; "{id:N}" → the id zero-padded to N digits.</summary>
    public static string ExpandPattern(string pattern, int id)
    {
        int a = pattern.IndexOf("{id", StringComparison.Ordinal);
        int b = a < 0 ? -1 : pattern.IndexOf('}', a);
        if (a < 0 || b < 0) throw new ArgumentException($"image pattern '{pattern}' has no {{id}} or {{id:N}}");
        string spec = pattern[(a + 3)..b];
        int width = 0;
        if (spec.Length > 0 && (spec[0] != ':' || !int.TryParse(spec[1..], out width) || width is < 1 or > 20))
            throw new ArgumentException($"image pattern '{pattern}': expected {{id}} or {{id:N}} with N digits");
        return pattern[..a] + id.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width, '0') + pattern[(b + 1)..];
    }

    private string? FindVqaFile(string split, string kind)
    {
        if (File.Exists(P($"{kind}_{split}.json"))) return P($"{kind}_{split}.json");
        // VQAv2's names: v2_OpenEnded_mscoco_train2014_questions.json, v2_mscoco_train2014_annotations.json.
        var hits = Directory.GetFiles(Root, $"*{kind}.json").Where(f => Path.GetFileName(f).Contains(split, StringComparison.Ordinal)).ToList();
        if (hits.Count > 1) throw new InvalidDataException($"{Root}: several {kind} files match split '{split}': {string.Join(", ", hits.Select(Path.GetFileName))}");
        return hits.FirstOrDefault();
    }

    /// <summary>ITM hard negatives of a split (empty when the folder has none).</summary>
    public List<ItmNegative> Negatives(string split) =>
        File.Exists(P($"itm_negatives_{split}.jsonl")) ? WorldPipeline.ReadNegatives(P($"itm_negatives_{split}.jsonl"), Root) : [];

    public bool HasNegatives(string split) => File.Exists(P($"itm_negatives_{split}.jsonl"));

    public List<Nlvr2Item> Nlvr2(string split)
    {
        var f = P($"nlvr2_{split}.jsonl");
        if (!File.Exists(f)) throw new FileNotFoundException($"{Root}: no NLVR2 statements for split '{split}' (expected nlvr2_{split}.jsonl)");
        return NonEmpty(DatasetFormats.ReadNlvr2Jsonl(f, Root), $"NLVR2 statements of split '{split}'");
    }

    public bool HasNlvr2(string split) => File.Exists(P($"nlvr2_{split}.jsonl"));

    private List<T> NonEmpty<T>(List<T> list, string what) =>
        list.Count > 0 ? list : throw new InvalidDataException($"{Root}: no {what}");

    /// <summary>Fails naming the first missing image, before any training starts.</summary>
    public static void CheckImagesExist(IEnumerable<string> paths)
    {
        var missing = paths.Distinct(StringComparer.Ordinal).Where(p => !File.Exists(p)).ToList();
        if (missing.Count > 0) throw new FileNotFoundException($"{missing.Count} image(s) not found, first: {missing[0]}", missing[0]);
    }
}
