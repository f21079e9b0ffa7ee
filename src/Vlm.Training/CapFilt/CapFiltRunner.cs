// CapFilt, BLIP's dataset bootstrapping (Li et al., arXiv 2201.12086 §3.3): a captioner (image-grounded decoder,
// LM loss) and a filter (image-grounded encoder, ITC + ITM) are fine-tuned on clean pairs; the captioner writes one
// synthetic caption per noisy image by nucleus sampling (more diverse than beam search, which the paper found
// better for bootstrapping); the filter removes the original noisy captions and the synthetic ones whose ITM head
// says "no match"; the clean pairs plus what the filter kept form the new dataset, written in the standard formats
// (JSONL pairs and COCO captions) so every reader and trainer takes it unchanged.
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Models.Generation;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.World;

namespace Vlm.Training.CapFilt;

public sealed record CapFiltOptions
{
    public ulong Seed { get; init; }
    public BlipSize Size { get; init; } = new();
    public int BatchSize { get; init; } = 32;
    public int CaptionerSteps { get; init; } = 400;
    public int FilterSteps { get; init; } = 400;
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Nucleus sampling threshold (BLIP: 0.9).</summary>
    public float TopP { get; init; } = 0.9f;
    public int MaxNewTokens { get; init; } = 30;
    public int MinNewTokens { get; init; } = 3;
    /// <summary>Keep a pair when the filter's ITM P(match) exceeds this.</summary>
    public float Threshold { get; init; } = 0.5f;
    public IBlipObjectives Objectives { get; init; } = new InBatchBlipObjectives();
    /// <summary>For reports only: the true captions of an image (when known), to measure how often a synthetic
    /// caption is literally one of them. CapFilt's decisions never use it.</summary>
    public Func<int, IReadOnlySet<string>>? TrueCaptions { get; init; }
}

/// <summary>One caption the filter judged: an original noisy caption or a synthetic one. <see cref="Image"/> is
/// the image path as the input pairs file gives it; <see cref="Corrupted"/> is the corruption record when known.</summary>
public sealed record CapFiltCandidate(int ImageId, string Image, string Caption, string Source, float MatchProbability, bool Kept, bool? Corrupted);

public sealed record CapFiltResult
{
    public required int CleanPairs { get; init; }
    public required int NoisyPairs { get; init; }
    public required int NoisyImages { get; init; }
    public required List<CapFiltCandidate> Candidates { get; init; }
    /// <summary>The filter on the original noisy captions against the corruption record (null when the noisy file has none).</summary>
    public FilterQuality? Quality { get; init; }
    public int KeptOriginal => Candidates.Count(c => c.Source == "original" && c.Kept);
    public int KeptSynthetic => Candidates.Count(c => c.Source == "synthetic" && c.Kept);
    public int BootstrappedPairs => CleanPairs + KeptOriginal + KeptSynthetic;
    /// <summary>Fraction of synthetic captions (all / kept) that are exactly a true caption of their image (null when unknown).</summary>
    public double? SyntheticExact { get; init; }
    public double? SyntheticKeptExact { get; init; }
    public required Dictionary<string, double> Captioner { get; init; }
    public required Dictionary<string, double> Filter { get; init; }
    public required string OutDir { get; init; }
    /// <summary>The bootstrapped pairs (image paths resolved), what a trainer reads.</summary>
    public required List<ImageCaption> Bootstrapped { get; init; }
}

public sealed class CapFiltRunner(CapFiltOptions o, TextWriter? log = null, TextWriter? progress = null)
{
    private readonly TextWriter _log = log ?? Console.Error;

    /// <summary>Runs CapFilt. <paramref name="cleanPairs"/> and <paramref name="noisyPairs"/> are JSONL pairs files whose
    /// image paths are relative to <paramref name="dataDir"/>; everything is written under <paramref name="outDir"/>.</summary>
    public CapFiltResult Run(string dataDir, string cleanPairs, string noisyPairs, string outDir)
    {
        if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"data folder not found: {dataDir}");
        var clean = DatasetFormats.ReadPairsJsonl(cleanPairs, dataDir);
        var noisy = DatasetFormats.ReadPairsJsonl(noisyPairs, dataDir);
        if (clean.Count == 0) throw new InvalidDataException($"{cleanPairs}: no clean pairs to fine-tune on");
        if (noisy.Count == 0) throw new InvalidDataException($"{noisyPairs}: no noisy pairs to bootstrap");
        foreach (var p in clean.Concat(noisy))
            if (!File.Exists(p.ImagePath)) throw new FileNotFoundException($"image not found: {p.ImagePath}", p.ImagePath);
        var flags = Corruption.ReadFlags(noisyPairs);
        Directory.CreateDirectory(outDir);
        var metrics = Path.Combine(outDir, "metrics.jsonl");
        if (File.Exists(metrics)) File.Delete(metrics);

        var tokDir = Path.Combine(outDir, "tokenizer");
        int vocab = WorldWordPiece.TrainAndSave(clean.Concat(noisy).Select(p => p.Caption), tokDir);
        var text = new TextCollator(AutoTokenizer.FromFolder(tokDir), o.Size.MaxTextLength);
        var pixels = new BlipPixelCache(o.Size.ImageSize);
        _log.WriteLine($"capfilt: {clean.Count} clean pairs, {noisy.Count} noisy pairs over {noisy.Select(p => p.ImageId).Distinct().Count()} images; WordPiece vocabulary {vocab}; objectives: {o.Objectives.Name}");

        // Captioner: image-grounded decoder fine-tuned with the LM loss on the clean pairs.
        var capCfg = BlipTiny.Config(o.Size, vocab, "BlipForConditionalGeneration");
        var (captioner, capStore) = BlipTiny.Create(capCfg, new Rng(o.Seed ^ 0xCA9), (vb, c) => new BlipForConditionalGeneration(vb, c));
        var capLast = BlipTrainLoop.Run(Stage("captioner", o.CaptionerSteps), captioner, capStore,
            s => MakeBatch(clean, text, pixels, "captioner", s, decoder: true), b => o.Objectives.Caption(captioner, b), metrics, progress);
        BlipTiny.Save(Path.Combine(outDir, "models", "captioner"), capCfg, capStore, tokDir);

        // Filter: image-grounded encoder fine-tuned with ITC + ITM on the clean pairs.
        var filCfg = BlipTiny.Config(o.Size, vocab, "BlipForImageTextRetrieval");
        var (filter, filStore) = BlipTiny.Create(filCfg, new Rng(o.Seed ^ 0xF17), (vb, c) => new BlipForImageTextRetrieval(vb, c));
        var filLast = BlipTrainLoop.Run(Stage("filter", o.FilterSteps), filter, filStore,
            s => MakeBatch(clean, text, pixels, "filter", s, decoder: false), b => o.Objectives.Retrieval(filter, b), metrics, progress);
        BlipTiny.Save(Path.Combine(outDir, "models", "filter"), filCfg, filStore, tokDir);

        // Captioning: one nucleus-sampled caption per noisy image.
        var images = noisy.GroupBy(p => p.ImageId).Select(g => g.First()).ToList();
        var synthetic = Caption(captioner, text.Tokenizer, pixels, images.Select(p => p.ImagePath).ToList());

        // Filtering: the original noisy captions and the synthetic ones.
        var origP = MatchProbabilities(filter, text, pixels, noisy.Select(p => (p.Caption, p.ImagePath)).ToList(), "filter originals");
        var synP = MatchProbabilities(filter, text, pixels, images.Select((p, i) => (synthetic[i], p.ImagePath)).ToList(), "filter synthetic");
        var relNoisy = RelativeImages(noisyPairs);
        var relByImage = new Dictionary<int, string>();
        for (int i = 0; i < noisy.Count; i++) relByImage.TryAdd(noisy[i].ImageId, relNoisy[i]);
        var candidates = new List<CapFiltCandidate>();
        for (int i = 0; i < noisy.Count; i++)
            candidates.Add(new CapFiltCandidate(noisy[i].ImageId, relNoisy[i], noisy[i].Caption, "original", origP[i], origP[i] > o.Threshold, i < flags.Count ? flags[i] : null));
        for (int i = 0; i < images.Count; i++)
            candidates.Add(new CapFiltCandidate(images[i].ImageId, relByImage[images[i].ImageId], synthetic[i], "synthetic", synP[i], synP[i] > o.Threshold, null));

        FilterQuality? quality = null;
        if (flags.Count == noisy.Count && flags.All(f => f != null))
            quality = FilterQuality.Of(flags.Select(f => f!.Value).ToList(), candidates.Take(noisy.Count).Select(c => !c.Kept).ToList());
        double? exact = null, keptExact = null;
        if (o.TrueCaptions is { } truth)
        {
            var syn = candidates.Where(c => c.Source == "synthetic").ToList();
            exact = syn.Count(c => truth(c.ImageId).Contains(c.Caption)) / (double)Math.Max(1, syn.Count);
            var kept = syn.Where(c => c.Kept).ToList();
            keptExact = kept.Count == 0 ? double.NaN : kept.Count(c => truth(c.ImageId).Contains(c.Caption)) / (double)kept.Count;
        }

        // The bootstrapped dataset: clean pairs as they are, plus what the filter kept.
        var boot = clean.Select(p => (p.ImageId, p.ImagePath, p.Caption, Source: "clean"))
            .Concat(candidates.Where(c => c.Kept).Select(c => (c.ImageId, ImagePath: Path.Combine(dataDir, c.Image), c.Caption, c.Source)))
            .ToList();
        WriteDataset(outDir, boot);
        WriteCandidates(Path.Combine(outDir, "candidates.jsonl"), candidates);
        var result = new CapFiltResult
        {
            CleanPairs = clean.Count, NoisyPairs = noisy.Count, NoisyImages = images.Count, Candidates = candidates, Quality = quality,
            SyntheticExact = exact, SyntheticKeptExact = keptExact, Captioner = capLast, Filter = filLast, OutDir = outDir,
            Bootstrapped = boot.Select(b => new ImageCaption(b.ImageId, b.ImagePath, b.Caption)).ToList(),
        };
        WriteSummary(Path.Combine(outDir, "capfilt.json"), result);
        return result;
    }

    private BlipStageOptions Stage(string name, int steps) => new() { Name = name, Steps = steps, LearningRate = o.LearningRate, ExamplesPerBatch = o.BatchSize };

    /// <summary>A batch of pairs with distinct images (in-batch ITC treats every other column as a negative), drawn
    /// by a stream that depends only on (seed, stage, step).</summary>
    private PairBatch MakeBatch(IReadOnlyList<ImageCaption> pairs, TextCollator text, BlipPixelCache pixels, string stage, long step, bool decoder) =>
        MakeBatch(pairs, text, pixels, o.Seed, o.BatchSize, stage, step, decoder);

    public static PairBatch MakeBatch(IReadOnlyList<ImageCaption> pairs, TextCollator text, BlipPixelCache pixels, ulong seed, int batchSize, string stage, long step, bool decoder)
    {
        var rng = StepRng.For(seed, stage, step);
        var seen = new HashSet<int>();
        var pick = new List<ImageCaption>();
        for (int attempt = 0; pick.Count < batchSize && attempt < 20 * batchSize; attempt++)
        {
            var p = pairs[rng.NextInt(pairs.Count)];
            if (seen.Add(p.ImageId)) pick.Add(p);
        }
        var t = text.Encode(pick.Select(p => p.Caption).ToList());
        if (decoder) t = WithBos(t);
        return new PairBatch(pixels.Batch(pick.Select(p => p.ImagePath).ToList()), t, pick.Select(p => p.ImageId).ToArray(), rng);
    }

    /// <summary>The same batch with decoder inputs (see <see cref="WithBos"/>).</summary>
    public static PairBatch MakeDecoderBatch(PairBatch b) => b with { Text = WithBos(b.Text) };

    /// <summary>BLIP's decoder input: the [CLS] of each row replaced by [DEC].</summary>
    public static TextBatch WithBos(TextBatch t)
    {
        var ids = (long[])t.IdArray.Clone();
        for (int r = 0; r < t.Batch; r++) ids[r * t.Length] = WorldWordPiece.DecId;
        return t with { Ids = Tensor.FromArray(ids, t.Batch, t.Length), IdArray = ids };
    }

    private List<string> Caption(BlipForConditionalGeneration model, ITokenizer tok, BlipPixelCache pixels, List<string> paths)
    {
        var res = new List<string>(paths.Count);
        const int bs = 32;
        model.Eval();
        using var bar = new Pipeline.ProgressBar("captioning", paths.Count, "image", progress);
        for (int s = 0; s < paths.Count; s += bs)
        {
            var chunk = paths.Skip(s).Take(bs).ToList();
            // top_k 0: nucleus sampling alone, each chunk with its own seeded stream.
            var opts = new GenerationOptions
            {
                DoSample = true, TopP = o.TopP, TopK = 0, MaxNewTokens = o.MaxNewTokens, MinNewTokens = o.MinNewTokens,
                Seed = o.Seed * 0x9E3779B97F4A7C15UL ^ (ulong)s ^ 0x5EED,
            };
            GenerationResult r;
            using (Tensor.Inference()) r = model.Generate(pixels.Batch(chunk), null, null, opts);
            var seq = r.Sequences.ToInt64Array();
            int l = r.Sequences.Size(1);
            for (int i = 0; i < chunk.Count; i++) res.Add(tok.Decode(seq.AsSpan(i * l, l).ToArray(), skipSpecialTokens: true).Trim());
            bar.Report(s + chunk.Count);
        }
        return res;
    }

    /// <summary>The filter's ITM P(match) for each (caption, image path).</summary>
    public static float[] MatchProbabilities(BlipForImageTextRetrieval model, TextCollator text, BlipPixelCache pixels,
        IReadOnlyList<(string caption, string image)> pairs, string label, TextWriter? progress = null)
    {
        var res = new float[pairs.Count];
        const int bs = 64;
        model.Eval();
        using var bar = new Pipeline.ProgressBar(label, pairs.Count, "pair", progress);
        using (Tensor.Inference())
            for (int s = 0; s < pairs.Count; s += bs)
            {
                var chunk = pairs.Skip(s).Take(bs).ToList();
                var t = text.Encode(chunk.Select(c => c.caption).ToList());
                var (logits, _, _) = model.Forward(t.Ids, t.Mask, pixels.Batch(chunk.Select(c => c.image).ToList()));
                var p = F.Softmax(logits, -1).ToArray();
                for (int i = 0; i < chunk.Count; i++) res[s + i] = p[i * 2 + 1];
                bar.Report(s + chunk.Count);
            }
        return res;
    }

    private float[] MatchProbabilities(BlipForImageTextRetrieval model, TextCollator text, BlipPixelCache pixels, List<(string, string)> pairs, string label) =>
        MatchProbabilities(model, text, pixels, pairs, label, progress);

    /// <summary>The "image" fields of a JSONL pairs file as written (relative to the data folder).</summary>
    private static List<string> RelativeImages(string path) =>
        File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Select(l => JsonNode.Parse(l)!["image"]!.GetValue<string>()).ToList();

    /// <summary>pairs_train.jsonl (with a "source" field: clean / original / synthetic) and captions_train.json
    /// (COCO), image paths relative to <paramref name="outDir"/>.</summary>
    public static void WriteDataset(string outDir, IReadOnlyList<(int ImageId, string ImagePath, string Caption, string Source)> pairs)
    {
        Directory.CreateDirectory(outDir);
        string Rel(string p) => Path.GetRelativePath(outDir, Path.GetFullPath(p)).Replace('\\', '/');
        AtomicFile.WriteAllText(Path.Combine(outDir, "pairs_train.jsonl"), string.Concat(pairs.Select(p =>
            JsonSerializer.Serialize(new { image = Rel(p.ImagePath), caption = p.Caption, image_id = p.ImageId, source = p.Source }) + "\n")));
        var images = new JsonArray(); var anns = new JsonArray();
        var seen = new HashSet<int>();
        int annId = 0;
        foreach (var p in pairs)
        {
            if (seen.Add(p.ImageId)) images.Add(new JsonObject { ["id"] = p.ImageId, ["file_name"] = Rel(p.ImagePath) });
            anns.Add(new JsonObject { ["id"] = annId++, ["image_id"] = p.ImageId, ["caption"] = p.Caption });
        }
        AtomicFile.WriteAllText(Path.Combine(outDir, "captions_train.json"), new JsonObject { ["images"] = images, ["annotations"] = anns }.ToJsonString());
    }

    private static void WriteCandidates(string path, IEnumerable<CapFiltCandidate> cands) =>
        AtomicFile.WriteAllText(path, string.Concat(cands.Select(c => JsonSerializer.Serialize(new
        {
            image = c.Image, image_id = c.ImageId, caption = c.Caption, source = c.Source, p_match = Math.Round(c.MatchProbability, 5),
            kept = c.Kept, corrupted = c.Corrupted,
        }) + "\n")));

    private static void WriteSummary(string path, CapFiltResult r)
    {
        static JsonNode? Num(double? v) => v is double d && double.IsFinite(d) ? Math.Round(d, 4) : null;
        var o = new JsonObject
        {
            ["clean_pairs"] = r.CleanPairs, ["noisy_pairs"] = r.NoisyPairs, ["noisy_images"] = r.NoisyImages,
            ["kept_original"] = r.KeptOriginal, ["kept_synthetic"] = r.KeptSynthetic, ["bootstrapped_pairs"] = r.BootstrappedPairs,
            ["synthetic_exact_true"] = Num(r.SyntheticExact), ["synthetic_kept_exact_true"] = Num(r.SyntheticKeptExact),
            ["captioner"] = Obj(r.Captioner), ["filter"] = Obj(r.Filter),
        };
        if (r.Quality is { } q)
            o["filter_vs_corruption"] = new JsonObject
            {
                ["pairs"] = q.Pairs, ["corrupted"] = q.Corrupted, ["rejected"] = q.Rejected, ["true_positives"] = q.TruePositives,
                ["precision"] = Num(q.Precision), ["recall"] = Num(q.Recall), ["f1"] = Num(q.F1), ["clean_kept"] = Num(q.CleanKept),
                ["noise_after"] = Num(q.NoiseAfter),
            };
        AtomicFile.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        static JsonObject Obj(Dictionary<string, double> d) { var j = new JsonObject(); foreach (var (k, v) in d) j[k] = Num(v); return j; }
    }
}
