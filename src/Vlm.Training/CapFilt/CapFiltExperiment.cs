// The CapFilt experiment (issue #7): on the synthetic world, a fraction of the web-like training captions is
// replaced by captions of other images; CapFilt (captioner + filter fine-tuned on a clean subset) bootstraps a new
// dataset; a small BLIP retrieval model (ITC + ITM) is trained from the same initialisation on (a) the noisy data
// and (b) the bootstrapped data, and evaluated on held-out scenes. Reported per seed and as mean ± 95 % CI:
// the filter's precision / recall at rejecting the corrupted pairs, and R@1 / R@5 in both directions.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Training.CapFilt;

public sealed record CapFiltExperimentOptions
{
    public int Seeds { get; init; } = 3;
    public ulong FirstSeed { get; init; }
    /// <summary>Fraction of the noisy split's captions replaced by captions of other images.</summary>
    public double Noise { get; init; } = 0.3;
    /// <summary>Fraction of the training images whose pairs are clean (the human-annotated set of BLIP's recipe).</summary>
    public double CleanFraction { get; init; } = 0.2;
    public int TrainScenes { get; init; } = 1000;
    public int TestScenes { get; init; } = 100;
    public int RetrievalSteps { get; init; } = 400;
    public int RerankK { get; init; } = 8;
    /// <summary>Most objects per scene (the world's default is 4; fewer makes grounding learnable in minutes).</summary>
    public int MaxObjects { get; init; } = 4;
    /// <summary>Plain backgrounds (no texture or noise).</summary>
    public bool Plain { get; init; }
    public CapFiltOptions CapFilt { get; init; } = new();
}

public sealed record CapFiltSeedResult(ulong Seed, FilterQuality Quality, int CleanPairs, int NoisyPairs, int NoisyImages, int KeptOriginal, int KeptSynthetic,
    double SyntheticExact, double SyntheticKeptExact, Dictionary<string, Dictionary<string, double>> Retrieval, double Seconds);

public sealed class CapFiltExperiment(CapFiltExperimentOptions o, string outDir, TextWriter? log = null, TextWriter? progress = null)
{
    private readonly TextWriter _log = log ?? Console.Error;
    public static readonly string[] Arms = ["noisy", "bootstrapped"];
    public static readonly string[] RecallKeys = ["t2i_r1", "t2i_r5", "i2t_r1", "i2t_r5", "itc_t2i_r1", "itc_t2i_r5", "itc_i2t_r1", "itc_i2t_r5"];

    public List<CapFiltSeedResult> Run()
    {
        Directory.CreateDirectory(outDir);
        var results = new List<CapFiltSeedResult>();
        for (int k = 0; k < o.Seeds; k++)
        {
            ulong seed = o.FirstSeed + (ulong)k;
            // A seed finished earlier (this command killed and rerun, or seeds run as separate processes into one
            // --out) is loaded, not rerun.
            var done = Path.Combine(outDir, $"seed-{seed}", "result.json");
            CapFiltSeedResult r;
            if (File.Exists(done))
            {
                r = ReadSeed(done);
                _log.WriteLine($"[seed {seed}] finished earlier; loaded {done}");
            }
            else
            {
                r = RunSeed(seed);
                AtomicFile.WriteAllText(done, SeedJson(r).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            }
            results.Add(r);
            WriteJson(results);
        }
        return results;
    }

    private static JsonNode? Num(double v) => double.IsFinite(v) ? Math.Round(v, 4) : null;

    private static JsonObject SeedJson(CapFiltSeedResult r)
    {
        var ret = new JsonObject();
        foreach (var (arm, m) in r.Retrieval) { var j = new JsonObject(); foreach (var (k, v) in m) j[k] = Num(v); ret[arm] = j; }
        return new JsonObject
        {
            ["seed"] = r.Seed, ["precision"] = Num(r.Quality.Precision), ["recall"] = Num(r.Quality.Recall), ["f1"] = Num(r.Quality.F1),
            ["clean_kept"] = Num(r.Quality.CleanKept), ["noise_after"] = Num(r.Quality.NoiseAfter),
            ["pairs"] = r.Quality.Pairs, ["corrupted"] = r.Quality.Corrupted, ["rejected"] = r.Quality.Rejected, ["true_positives"] = r.Quality.TruePositives,
            ["clean_pairs"] = r.CleanPairs, ["noisy_pairs"] = r.NoisyPairs, ["kept_original"] = r.KeptOriginal,
            ["noisy_images"] = r.NoisyImages, ["kept_synthetic"] = r.KeptSynthetic, ["synthetic_exact_true"] = Num(r.SyntheticExact),
            ["synthetic_kept_exact_true"] = Num(r.SyntheticKeptExact), ["retrieval"] = ret, ["seconds"] = Math.Round(r.Seconds, 1),
        };
    }

    public static CapFiltSeedResult ReadSeed(string path)
    {
        try
        {
            var j = JsonNode.Parse(File.ReadAllText(path))!;
            double D(JsonNode? n) => n is null ? double.NaN : n.GetValue<double>();
            int I(string k) => j[k]!.GetValue<int>();
            var ret = new Dictionary<string, Dictionary<string, double>>();
            foreach (var (arm, m) in j["retrieval"]!.AsObject())
                ret[arm] = m!.AsObject().ToDictionary(kv => kv.Key, kv => D(kv.Value));
            return new CapFiltSeedResult(j["seed"]!.GetValue<ulong>(), new FilterQuality(I("pairs"), I("corrupted"), I("rejected"), I("true_positives")),
                I("clean_pairs"), I("noisy_pairs"), I("noisy_images"), I("kept_original"), I("kept_synthetic"), D(j["synthetic_exact_true"]),
                D(j["synthetic_kept_exact_true"]), ret, D(j["seconds"]));
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException or FormatException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{path}: not a CapFilt seed result ({e.Message}); delete it to rerun that seed");
        }
    }

    private CapFiltSeedResult RunSeed(ulong seed)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var dir = Path.Combine(outDir, $"seed-{seed}");
        var worldDir = Path.Combine(dir, "world");
        var gen = new WorldGenerator(seed, new WorldOptions
        {
            MinImageSize = o.CapFilt.Size.ImageSize, MaxImageSize = o.CapFilt.Size.ImageSize, MaxObjects = o.MaxObjects,
            TextureProbability = o.Plain ? 0 : new WorldOptions().TextureProbability, NoiseProbability = o.Plain ? 0 : new WorldOptions().NoiseProbability,
        });
        WorldDataset.Write(worldDir, gen, new WorldSplits(o.TrainScenes, 0, o.TestScenes), (p, rgb, w, h) => PngEncoder.Save(new Image(w, h, PixelMode.RGB, rgb), p));

        // Clean subset: the first images; the rest is the web-like split, corrupted.
        var train = DatasetFormats.ReadPairsJsonl(Path.Combine(worldDir, "pairs_train.jsonl"), "");
        var ids = train.Select(p => p.ImageId).Distinct().OrderBy(i => i).ToList();
        var cleanIds = ids.Take((int)Math.Round(o.CleanFraction * ids.Count)).ToHashSet();
        var clean = train.Where(p => cleanIds.Contains(p.ImageId)).ToList();
        var noisy = Corruption.Corrupt(train.Where(p => !cleanIds.Contains(p.ImageId)).ToList(), o.Noise, new Rng(seed ^ 0xC0DE));
        var cleanPath = Path.Combine(worldDir, "clean_train.jsonl"); var noisyPath = Path.Combine(worldDir, "noisy_train.jsonl");
        Corruption.WriteJsonl(cleanPath, clean.Select(p => new NoisyPair(p.ImageId, p.ImagePath, p.Caption, false, p.ImageId, p.Caption)));
        Corruption.WriteJsonl(noisyPath, noisy);
        _log.WriteLine($"[seed {seed}] world: {ids.Count} train images ({cleanIds.Count} clean), {train.Count} pairs; {noisy.Count(p => p.Corrupted)} of {noisy.Count} noisy captions corrupted");

        var truth = new Dictionary<int, IReadOnlySet<string>>();
        IReadOnlySet<string> True(int id) => truth.TryGetValue(id, out var s) ? s : truth[id] = gen.Describe(gen.SampleScene(id)).Captions.ToHashSet(StringComparer.Ordinal);
        var cf = new CapFiltRunner(o.CapFilt with { Seed = seed, TrueCaptions = True }, _log, progress).Run(worldDir, cleanPath, noisyPath, Path.Combine(dir, "capfilt"));
        var q = cf.Quality!;
        _log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[seed {seed}] filter: precision {q.Precision:F3} recall {q.Recall:F3} at rejecting corrupted pairs; kept {cf.KeptOriginal}/{cf.NoisyPairs} originals, {cf.KeptSynthetic}/{cf.NoisyImages} synthetic ({cf.SyntheticExact:P1} of synthetic captions are exactly a true caption)"));

        // Retrieval models on the noisy and on the bootstrapped data, from the same initialisation and batch seeds.
        var tok = AutoTokenizer.FromFolder(Path.Combine(dir, "capfilt", "tokenizer"));
        var text = new TextCollator(tok, o.CapFilt.Size.MaxTextLength);
        var pixels = new BlipPixelCache(o.CapFilt.Size.ImageSize);
        var noisyData = clean.Concat(noisy.Select(p => new ImageCaption(p.ImageId, p.Image, p.Caption)))
            .Select(p => p with { ImagePath = Path.Combine(worldDir, p.ImagePath) }).ToList();
        var test = DatasetFormats.ReadPairsJsonl(Path.Combine(worldDir, "pairs_test.jsonl"), worldDir);
        var retrieval = new Dictionary<string, Dictionary<string, double>>();
        foreach (var (arm, data) in new[] { ("noisy", noisyData), ("bootstrapped", cf.Bootstrapped) })
        {
            var cfg = BlipTiny.Config(o.CapFilt.Size, tok.VocabSize, "BlipForImageTextRetrieval");
            var (model, store) = BlipTiny.Create(cfg, new Rng(seed ^ 0x7E7), (vb, c) => new BlipForImageTextRetrieval(vb, c));
            BlipTrainLoop.Run(new BlipStageOptions { Name = $"retrieval-{arm}", Steps = o.RetrievalSteps, LearningRate = o.CapFilt.LearningRate, ExamplesPerBatch = o.CapFilt.BatchSize },
                model, store, s => CapFiltRunner.MakeBatch(data, text, pixels, seed, o.CapFilt.BatchSize, "retrieval", s, decoder: false),
                b => o.CapFilt.Objectives.Retrieval(model, b), Path.Combine(dir, $"retrieval_{arm}.jsonl"), progress);
            retrieval[arm] = EvalRetrieval(model, text, pixels, test, o.RerankK, progress);
            _log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[seed {seed}] {arm}: {data.Count} pairs; t2i R@1 {retrieval[arm]["t2i_r1"]:F3} R@5 {retrieval[arm]["t2i_r5"]:F3}, i2t R@1 {retrieval[arm]["i2t_r1"]:F3} R@5 {retrieval[arm]["i2t_r5"]:F3}"));
        }
        return new CapFiltSeedResult(seed, q, cf.CleanPairs, cf.NoisyPairs, cf.NoisyImages, cf.KeptOriginal, cf.KeptSynthetic, cf.SyntheticExact ?? double.NaN,
            cf.SyntheticKeptExact ?? double.NaN, retrieval, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Held-out retrieval over every test image and its first caption (the full scene listing): ITC
    /// similarities (BLIP's first stage), then each query's top-k re-ranked by ITM P(match) (its second stage).
    /// R@1 / R@5 both ways, for ITC alone and re-ranked.</summary>
    public static Dictionary<string, double> EvalRetrieval(BlipForImageTextRetrieval model, TextCollator text, BlipPixelCache pixels,
        IReadOnlyList<ImageCaption> test, int rerankK, TextWriter? progress = null)
    {
        var items = test.GroupBy(p => p.ImageId).Select(g => g.First()).ToList();
        int n = items.Count;
        model.Eval();
        float[] img, txt; int e;
        using (Tensor.NoGrad())
        {
            var imgRows = new List<float[]>(); var txtRows = new List<float[]>();
            e = 0;
            for (int s = 0; s < n; s += 64)
            {
                var chunk = items.Skip(s).Take(64).ToList();
                var t = text.Encode(chunk.Select(c => c.Caption).ToList());
                var ti = model.TextFeatures(model.TextEncoder.Forward(t.Ids, t.Mask, null, null, isDecoder: false));
                var ii = model.ImageFeatures(model.Vision.Forward(pixels.Batch(chunk.Select(c => c.ImagePath).ToList())));
                e = ti.Size(1);
                txtRows.Add(ti.ToArray()); imgRows.Add(ii.ToArray());
            }
            img = imgRows.SelectMany(x => x).ToArray(); txt = txtRows.SelectMany(x => x).ToArray();
        }
        var sim = new float[n * n];   // (text, image)
        for (int t = 0; t < n; t++)
            for (int i = 0; i < n; i++)
            {
                float d = 0;
                for (int k = 0; k < e; k++) d += txt[t * e + k] * img[i * e + k];
                sim[t * n + i] = d;
            }
        int kk = Math.Min(rerankK, n);
        var t2iCand = new HashSet<(int t, int i)>(); var i2tCand = new HashSet<(int t, int i)>();
        for (int t = 0; t < n; t++) foreach (var i in Enumerable.Range(0, n).OrderByDescending(i => sim[t * n + i]).ThenBy(i => i).Take(kk)) t2iCand.Add((t, i));
        for (int i = 0; i < n; i++) foreach (var t in Enumerable.Range(0, n).OrderByDescending(t => sim[t * n + i]).ThenBy(t => t).Take(kk)) i2tCand.Add((t, i));
        var all = t2iCand.Union(i2tCand).OrderBy(x => x.t).ThenBy(x => x.i).ToList();
        var p = CapFiltRunner.MatchProbabilities(model, text, pixels, all.Select(x => (items[x.t].Caption, items[x.i].ImagePath)).ToList(), "eval itm", progress);
        var itm = all.Select((x, j) => (x, j)).ToDictionary(z => z.x, z => p[z.j]);
        // Re-ranked: the candidates above every other item, in ITM order.
        var t2i = (float[])sim.Clone(); var i2t = (float[])sim.Clone();
        foreach (var x in t2iCand) t2i[x.t * n + x.i] = 10f + itm[x];
        foreach (var x in i2tCand) i2t[x.t * n + x.i] = 10f + itm[x];
        var gold = Enumerable.Range(0, n).ToList();
        var r = new Dictionary<string, double>();
        foreach (int k in new[] { 1, 5 })
        {
            r[$"t2i_r{k}"] = Eval.Recall.TextToImage(t2i, n, n, gold, k);
            r[$"i2t_r{k}"] = Eval.Recall.ImageToText(i2t, n, n, gold, k);
            r[$"itc_t2i_r{k}"] = Eval.Recall.TextToImage(sim, n, n, gold, k);
            r[$"itc_i2t_r{k}"] = Eval.Recall.ImageToText(sim, n, n, gold, k);
        }
        r["images"] = n;
        return r;
    }

    /// <summary>Mean and half-width of the 95 % confidence interval (Student t, n − 1 degrees of freedom).</summary>
    public static (double mean, double half) MeanCi(IReadOnlyList<double> xs)
    {
        int n = xs.Count;
        if (n == 0) return (double.NaN, double.NaN);
        double mean = xs.Average();
        if (n == 1) return (mean, double.NaN);
        double sd = Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (n - 1));
        double[] t975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
        double tq = n - 1 <= t975.Length ? t975[n - 2] : 1.96;
        return (mean, tq * sd / Math.Sqrt(n));
    }

    private void WriteJson(List<CapFiltSeedResult> results)
    {
        var seeds = new JsonArray(results.Select(r => (JsonNode)SeedJson(r)).ToArray());
        var summary = new JsonObject();
        foreach (var (name, get) in SummaryRows())
        {
            var (m, h) = MeanCi(results.Select(get).ToList());
            summary[name] = new JsonObject { ["mean"] = Num(m), ["ci95"] = Num(h) };
        }
        var root = new JsonObject
        {
            ["noise"] = o.Noise, ["clean_fraction"] = o.CleanFraction, ["max_objects"] = o.MaxObjects, ["plain_backgrounds"] = o.Plain,
            ["hidden"] = o.CapFilt.Size.Hidden, ["layers"] = o.CapFilt.Size.TextLayers, ["image_size"] = o.CapFilt.Size.ImageSize, ["learning_rate"] = o.CapFilt.LearningRate, ["train_scenes"] = o.TrainScenes, ["test_scenes"] = o.TestScenes,
            ["captioner_steps"] = o.CapFilt.CaptionerSteps, ["filter_steps"] = o.CapFilt.FilterSteps, ["retrieval_steps"] = o.RetrievalSteps,
            ["batch_size"] = o.CapFilt.BatchSize, ["objectives"] = o.CapFilt.Objectives.Name, ["seeds"] = seeds, ["summary"] = summary,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, "capfilt_experiment.json"), root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Every summarised quantity: the filter's, each arm's recalls, and the bootstrapped − noisy differences.</summary>
    public static IEnumerable<(string name, Func<CapFiltSeedResult, double> get)> SummaryRows()
    {
        yield return ("filter_precision", r => r.Quality.Precision);
        yield return ("filter_recall", r => r.Quality.Recall);
        yield return ("filter_clean_kept", r => r.Quality.CleanKept);
        yield return ("noise_after_filter", r => r.Quality.NoiseAfter);
        yield return ("synthetic_kept_fraction", r => r.KeptSynthetic / (double)Math.Max(1, r.NoisyImages));
        yield return ("synthetic_exact_true", r => r.SyntheticExact);
        foreach (var arm in Arms)
            foreach (var k in RecallKeys) yield return ($"{arm}_{k}", r => r.Retrieval[arm][k]);
        foreach (var k in RecallKeys) yield return ($"diff_{k}", r => r.Retrieval["bootstrapped"][k] - r.Retrieval["noisy"][k]);
    }
}
