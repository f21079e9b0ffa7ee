using System.CommandLine;
using System.Globalization;
using System.Text;
using Vlm.Training.CapFilt;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm capfilt --data DIR --clean PAIRS --noisy PAIRS --out DIR</c>: BLIP's CapFilt on JSONL pairs (captioner and
/// filter fine-tuned on the clean pairs, nucleus-sampled captions for the noisy images, the filter applied to the
/// original and synthetic captions); writes the bootstrapped dataset (pairs_train.jsonl, captions_train.json), every
/// decision (candidates.jsonl), the two models as HF folders and capfilt.json.
/// <c>vlm experiment capfilt</c>: the whole experiment on the synthetic world (see CapFiltExperiment).
/// </summary>
public static class CapFiltCommands
{
    private static class CapFiltDefaults { public const double LearningRate = 1e-3; }

    private static Option<string> ObjectivesOption() => new("--objectives")
    {
        Description = "inbatch: HF losses, in-batch ITC, random ITM negatives (or ITC-sampled with --itc-hard-negatives); recipe: Vlm.Training.Blip's objectives (id-aware ITC, ITC-sampled hard negatives, LM with smoothing 0.1)",
        DefaultValueFactory = _ => "inbatch",
    };

    private static IBlipObjectives? Objectives(string name, bool hard) => name switch
    {
        "inbatch" => new InBatchBlipObjectives(itcHardNegatives: hard),
        "recipe" => new RecipeBlipObjectives(),
        _ => null,
    };

    private static Option<int> Int(string name, string desc, int def) => new(name) { Description = desc, DefaultValueFactory = _ => def };

    public static Command Build()
    {
        var data = new Option<string>("--data") { Description = "Dataset folder the pairs' image paths are relative to", Required = true };
        var clean = new Option<string>("--clean") { Description = "JSONL pairs to fine-tune the captioner and filter on", Required = true };
        var noisy = new Option<string>("--noisy") { Description = "JSONL pairs to bootstrap (an optional \"corrupted\" field gives the filter's precision/recall)", Required = true };
        var outDir = new Option<string>("--out") { Description = "Output folder", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initialisation, batches and sampling", DefaultValueFactory = _ => 0UL };
        var cap = Int("--captioner-steps", "Captioner fine-tuning steps", 400);
        var fil = Int("--filter-steps", "Filter fine-tuning steps", 400);
        var batch = Int("--batch", "Batch size", 32);
        var hidden = Int("--hidden", "Hidden size of the BLIP models", 128);
        var layers = Int("--layers", "Layers per tower", 2);
        var image = Int("--image-size", "Image size (pixels)", 64);
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling top-p", DefaultValueFactory = _ => 0.9f };
        var thr = new Option<float>("--threshold") { Description = "Keep a caption when ITM P(match) exceeds this", DefaultValueFactory = _ => 0.5f };
        var hard = new Option<bool>("--itc-hard-negatives") { Description = "ITM negatives sampled by ITC similarity instead of uniformly" };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup + cosine decay)", DefaultValueFactory = _ => CapFiltDefaults.LearningRate };
        var objectives = ObjectivesOption();
        var cmd = new Command("capfilt", "Bootstrap a noisy image-text dataset with BLIP's captioner + filter") { data, clean, noisy, outDir, seed, cap, fil, batch, hidden, layers, image, topP, thr, hard, lr, objectives };
        cmd.SetAction(pr =>
        {
            try
            {
                string dir = pr.GetValue(data)!;
                string Resolve(string p) => File.Exists(p) || Path.IsPathRooted(p) ? p : Path.Combine(dir, p);
                int h = pr.GetValue(hidden);
                if (h <= 0 || h % 32 != 0) return Cli.Fail($"capfilt: --hidden must be a positive multiple of 32, got {h}");
                float p = pr.GetValue(topP), t = pr.GetValue(thr);
                if (p is <= 0f or > 1f) return Cli.Fail($"capfilt: --top-p must be in (0, 1], got {p.ToString(CultureInfo.InvariantCulture)}");
                if (t is < 0f or >= 1f) return Cli.Fail($"capfilt: --threshold must be in [0, 1), got {t.ToString(CultureInfo.InvariantCulture)}");
                foreach (var (n, v) in new[] { ("--captioner-steps", pr.GetValue(cap)), ("--filter-steps", pr.GetValue(fil)), ("--batch", pr.GetValue(batch)), ("--layers", pr.GetValue(layers)), ("--image-size", pr.GetValue(image)) })
                    if (v <= 0) return Cli.Fail($"capfilt: {n} must be positive, got {v}");
                if (Objectives(pr.GetValue(objectives)!, pr.GetValue(hard)) is not { } obj) return Cli.Fail($"capfilt: --objectives must be inbatch or recipe, got '{pr.GetValue(objectives)}'");
                var o = new CapFiltOptions
                {
                    Seed = pr.GetValue(seed), CaptionerSteps = pr.GetValue(cap), FilterSteps = pr.GetValue(fil), BatchSize = pr.GetValue(batch),
                    TopP = p, Threshold = t, LearningRate = pr.GetValue(lr), Objectives = obj,
                    Size = new BlipSize { Hidden = h, Heads = Math.Max(1, h / 32), VisionLayers = pr.GetValue(layers), TextLayers = pr.GetValue(layers), ImageSize = pr.GetValue(image) },
                };
                var r = new CapFiltRunner(o).Run(dir, Resolve(pr.GetValue(clean)!), Resolve(pr.GetValue(noisy)!), pr.GetValue(outDir)!);
                var w = Console.Out;
                w.WriteLine($"clean pairs kept as they are: {r.CleanPairs}");
                w.WriteLine($"original noisy captions kept: {r.KeptOriginal} of {r.NoisyPairs}");
                w.WriteLine($"synthetic captions kept:      {r.KeptSynthetic} of {r.NoisyImages}");
                w.WriteLine($"bootstrapped pairs:           {r.BootstrappedPairs} -> {Path.Combine(r.OutDir, "pairs_train.jsonl")}, {Path.Combine(r.OutDir, "captions_train.json")}");
                if (r.Quality is { } q)
                    w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"filter vs the corruption record: precision {q.Precision:F3}, recall {q.Recall:F3} at rejecting the {q.Corrupted} corrupted pairs ({q.Rejected} rejected)"));
                return 0;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException or Vlm.Tokenizers.TokenizerFileException)
            {
                return Cli.Fail("capfilt: " + e.Message);
            }
        });
        return cmd;
    }

    public static Command BuildExperiment()
    {
        var seeds = Int("--seeds", "Number of seeds", 3);
        var first = new Option<ulong>("--first-seed") { Description = "First seed", DefaultValueFactory = _ => 0UL };
        var noise = new Option<double>("--noise") { Description = "Fraction of the noisy split's captions replaced by other images' captions", DefaultValueFactory = _ => 0.3 };
        var cleanF = new Option<double>("--clean-fraction") { Description = "Fraction of training images whose pairs are clean", DefaultValueFactory = _ => 0.2 };
        var outDir = new Option<string>("--out") { Description = "Run folder", DefaultValueFactory = _ => "capfilt-run" };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON instead of tables" };
        var train = Int("--train-scenes", "Training scenes", 1000);
        var test = Int("--test-scenes", "Held-out scenes (retrieval)", 100);
        var cap = Int("--captioner-steps", "Captioner fine-tuning steps", 400);
        var fil = Int("--filter-steps", "Filter fine-tuning steps", 400);
        var ret = Int("--retrieval-steps", "Retrieval training steps per arm", 400);
        var batch = Int("--batch", "Batch size", 32);
        var hard = new Option<bool>("--itc-hard-negatives") { Description = "ITM negatives sampled by ITC similarity instead of uniformly" };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup + cosine decay)", DefaultValueFactory = _ => CapFiltDefaults.LearningRate };
        var capfilt = new Command("capfilt", "CapFilt on the synthetic world: filter precision/recall and retrieval trained on noisy vs bootstrapped data")
            { seeds, first, noise, cleanF, outDir, json, train, test, cap, fil, ret, batch, hard, lr };
        var hidden = Int("--hidden", "Hidden size of the BLIP models", 128);
        var layers = Int("--layers", "Layers per tower", 2);
        var maxObj = Int("--max-objects", "Most objects per scene (1-4)", 4);
        var plain = new Option<bool>("--plain") { Description = "Plain backgrounds (no texture or noise)" };
        var objectives = ObjectivesOption();
        capfilt.Options.Add(hidden); capfilt.Options.Add(layers); capfilt.Options.Add(maxObj); capfilt.Options.Add(plain); capfilt.Options.Add(objectives);
        capfilt.SetAction(pr =>
        {
            double nz = pr.GetValue(noise), cf = pr.GetValue(cleanF);
            if (!(nz >= 0 && nz <= 1)) return Cli.Fail($"experiment capfilt: --noise must be in [0, 1], got {nz.ToString(CultureInfo.InvariantCulture)}");
            if (!(cf > 0 && cf < 1)) return Cli.Fail($"experiment capfilt: --clean-fraction must be in (0, 1), got {cf.ToString(CultureInfo.InvariantCulture)}");
            foreach (var (n, v) in new[] { ("--seeds", pr.GetValue(seeds)), ("--train-scenes", pr.GetValue(train)), ("--test-scenes", pr.GetValue(test)), ("--captioner-steps", pr.GetValue(cap)),
                         ("--filter-steps", pr.GetValue(fil)), ("--retrieval-steps", pr.GetValue(ret)), ("--batch", pr.GetValue(batch)) })
                if (v <= 0) return Cli.Fail($"experiment capfilt: {n} must be positive, got {v}");
            int h = pr.GetValue(hidden), nl = pr.GetValue(layers), mo = pr.GetValue(maxObj);
            if (h <= 0 || h % 32 != 0) return Cli.Fail($"experiment capfilt: --hidden must be a positive multiple of 32, got {h}");
            if (nl <= 0) return Cli.Fail($"experiment capfilt: --layers must be positive, got {nl}");
            if (mo is < 1 or > 4) return Cli.Fail($"experiment capfilt: --max-objects must be 1-4, got {mo}");
            if (Objectives(pr.GetValue(objectives)!, pr.GetValue(hard)) is not { } obj) return Cli.Fail($"experiment capfilt: --objectives must be inbatch or recipe, got '{pr.GetValue(objectives)}'");
            var o = new CapFiltExperimentOptions
            {
                Seeds = pr.GetValue(seeds), FirstSeed = pr.GetValue(first), Noise = nz, CleanFraction = cf, TrainScenes = pr.GetValue(train),
                TestScenes = pr.GetValue(test), RetrievalSteps = pr.GetValue(ret), MaxObjects = mo, Plain = pr.GetValue(plain),
                CapFilt = new CapFiltOptions
                {
                    CaptionerSteps = pr.GetValue(cap), FilterSteps = pr.GetValue(fil), BatchSize = pr.GetValue(batch), LearningRate = pr.GetValue(lr),
                    Size = new BlipSize { Hidden = h, Heads = Math.Max(1, h / 32), VisionLayers = nl, TextLayers = nl },
                    Objectives = obj,
                },
            };
            string dir = pr.GetValue(outDir)!;
            try
            {
                var results = new CapFiltExperiment(o, dir).Run();
                if (pr.GetValue(json)) Console.Out.WriteLine(File.ReadAllText(Path.Combine(dir, "capfilt_experiment.json")));
                else Console.Out.Write(Tables(results));
                return 0;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
            {
                return Cli.Fail("experiment capfilt: " + e.Message);
            }
        });
        return new Command("experiment", "Reproducible experiments on the synthetic world") { capfilt };
    }

    private static string P(double v) => double.IsFinite(v) ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) : "n/a";

    private static string Ci((double mean, double half) x) =>
        double.IsFinite(x.half) ? $"{P(x.mean)} ± {(100 * x.half).ToString("F1", CultureInfo.InvariantCulture)}" : P(x.mean);

    /// <summary>Markdown tables: per seed and mean ± 95 % CI (percentages).</summary>
    public static string Tables(IReadOnlyList<CapFiltSeedResult> rs)
    {
        var sb = new StringBuilder();
        sb.AppendLine("Filter at rejecting corrupted pairs (%)");
        sb.AppendLine();
        sb.AppendLine("| seed | precision | recall | clean pairs kept | noise before → after | synthetic kept | synthetic exactly true |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in rs)
            sb.AppendLine($"| {r.Seed} | {P(r.Quality.Precision)} | {P(r.Quality.Recall)} | {P(r.Quality.CleanKept)} | {P(r.Quality.Corrupted / (double)r.Quality.Pairs)} → {P(r.Quality.NoiseAfter)} | {P(r.KeptSynthetic / (double)Math.Max(1, r.NoisyImages))} | {P(r.SyntheticExact)} |");
        var m = (Func<CapFiltSeedResult, double> f) => CapFiltExperiment.MeanCi(rs.Select(f).ToList());
        sb.AppendLine($"| mean ± 95% CI | {Ci(m(r => r.Quality.Precision))} | {Ci(m(r => r.Quality.Recall))} | {Ci(m(r => r.Quality.CleanKept))} | → {Ci(m(r => r.Quality.NoiseAfter))} | {Ci(m(r => r.KeptSynthetic / (double)Math.Max(1, r.NoisyImages)))} | {Ci(m(r => r.SyntheticExact))} |");
        sb.AppendLine();
        int images = rs.Count == 0 ? 0 : (int)rs[0].Retrieval["noisy"]["images"];
        sb.AppendLine($"Held-out retrieval, {images} images (%; ITC top-k re-ranked by ITM; ITC alone in the last four columns)");
        sb.AppendLine();
        sb.AppendLine("| seed | trained on | T→I R@1 | T→I R@5 | I→T R@1 | I→T R@5 | ITC T→I R@1 | ITC T→I R@5 | ITC I→T R@1 | ITC I→T R@5 |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rs)
            foreach (var arm in CapFiltExperiment.Arms)
                sb.AppendLine($"| {r.Seed} | {arm} | {string.Join(" | ", CapFiltExperiment.RecallKeys.Select(k => P(r.Retrieval[arm][k])))} |");
        foreach (var arm in CapFiltExperiment.Arms)
            sb.AppendLine($"| mean ± 95% CI | {arm} | {string.Join(" | ", CapFiltExperiment.RecallKeys.Select(k => Ci(m(r => r.Retrieval[arm][k]))))} |");
        sb.AppendLine($"| mean ± 95% CI | bootstrapped − noisy | {string.Join(" | ", CapFiltExperiment.RecallKeys.Select(k => Ci(m(r => r.Retrieval["bootstrapped"][k] - r.Retrieval["noisy"][k]))))} |");
        return sb.ToString();
    }
}
