// The BridgeTower paper's central ablation (Xu et al., arXiv 2206.08657, §4 / Table 2-3): bridges from the top
// uni-modal layers into every cross-modal layer, with each link-tower type (add, scaled_add, interpolate), against
// METER (arXiv 2111.02387: the cross-modal layers see only the last uni-modal layer) at equal size. For each seed the
// uni-modal stages (text MLM, vision attributes) run once and the saved towers are shared by all four variants, so
// the variants differ only in their cross-modal wiring (and the link towers' few parameters); each then runs VL
// pre-training, VQA fine-tuning, retrieval fine-tuning and the held-out evaluation of WorldPipeline.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Training.Eval;
using Vlm.Training.Training;
using Vlm.Training.World;

namespace Vlm.Training.Experiments;

public sealed record AblationVariant(string Name, bool Meter, LinkTowerType LinkTower);

/// <summary>One variant's held-out metrics on one seed.</summary>
public sealed record AblationRun(string Variant, ulong Seed, long Parameters, double Vqa, double ItmHard, double T2iR1, double I2tR1, double Seconds);

public sealed record AblationResult(IReadOnlyList<AblationRun> Runs, IReadOnlyList<AblationVariant> Variants, WorldRunOptions Scale, int Seeds, double Seconds);

public static class BridgesAblation
{
    public static readonly AblationVariant[] Variants =
    [
        new("bridgetower-add", false, LinkTowerType.Add),
        new("bridgetower-scaled_add", false, LinkTowerType.ScaledAdd),
        new("bridgetower-interpolate", false, LinkTowerType.Interpolate),
        new("meter", true, LinkTowerType.Add),
    ];

    /// <summary>The metrics reported, as (JSON key, table label, accessor).</summary>
    public static readonly (string Key, string Label, Func<AblationRun, double> Get)[] Metrics =
    [
        ("vqa_accuracy", "VQA acc", r => r.Vqa),
        ("itm_hard_negative_accuracy", "ITM hard-neg", r => r.ItmHard),
        ("t2i_r1", "t2i R@1", r => r.T2iR1),
        ("i2t_r1", "i2t R@1", r => r.I2tR1),
    ];

    /// <summary>The experiment's scale at <c>--steps-scale 1</c>: a model smaller than the demo's (hidden 64, one head,
    /// 2 + 2 layers, 48 px images = 9 patches) on a small world with few steps, sized so 3 seeds × 4 variants finish
    /// in about 25 minutes on the shared 2-core machine under heavy load (load average 35–80 while it was chosen; the
    /// demo's hidden-128 model ran at 0.2 VQA steps/s there).</summary>
    public static WorldRunOptions DefaultScale(ulong seed) => new()
    {
        Seed = seed, TrainScenes = 600, ValScenes = 4, TestScenes = 80, ImageSize = 48, PatchSize = 16, Hidden = 64, BatchSize = 16,
        TextMlmSteps = 60, VisionSteps = 60, PretrainSteps = 40, VqaSteps = 50, RetrievalSteps = 15,
        CheckpointEvery = 0, EvalImages = 40, RerankK = 5,
    };

    public static WorldRunOptions Scaled(WorldRunOptions o, double k)
    {
        int Sc(int n) => Math.Max(1, (int)Math.Round(n * k));
        return o with
        {
            TextMlmSteps = Sc(o.TextMlmSteps), VisionSteps = Sc(o.VisionSteps), PretrainSteps = Sc(o.PretrainSteps),
            VqaSteps = Sc(o.VqaSteps), RetrievalSteps = Sc(o.RetrievalSteps),
        };
    }

    /// <param name="scale">options of seed 0 (Seed is replaced per seed: firstSeed, firstSeed + 1, …)</param>
    /// <param name="progress">one line per finished stage of the experiment (runs, timings, ETA)</param>
    public static AblationResult Run(WorldRunOptions scale, int seeds, ulong firstSeed, string outDir, TextWriter progress)
    {
        if (seeds < 1) throw new ArgumentException($"seeds must be at least 1, got {seeds}");
        Directory.CreateDirectory(outDir);
        var sw = Stopwatch.StartNew();
        var runs = new List<AblationRun>();
        int total = seeds * (1 + Variants.Length), done = 0;
        string Eta() => done == 0 ? "" : string.Create(CultureInfo.InvariantCulture,
            $", ETA {sw.Elapsed.TotalSeconds / done * (total - done) / 60:F1} min");
        for (int si = 0; si < seeds; si++)
        {
            ulong seed = firstSeed + (ulong)si;
            var seedDir = Path.Combine(outDir, $"seed-{seed}");
            var o = scale with { Seed = seed, WorldDir = Path.Combine(seedDir, "world"), Resume = false };
            var t0 = sw.Elapsed.TotalSeconds;
            progress.WriteLine($"[seed {seed}] world + uni-modal pre-training (text MLM {o.TextMlmSteps} steps, vision attributes {o.VisionSteps} steps)");
            var uni = RunPipeline(o with { UniModalOnly = true }, Path.Combine(seedDir, "unimodal"));
            if (uni.Interrupted) throw new InvalidOperationException($"seed {seed}: uni-modal stages did not complete");
            done++;
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[seed {seed}] towers saved to {uni.ModelDir} ({sw.Elapsed.TotalSeconds - t0:F0} s{Eta()})"));
            foreach (var v in Variants)
            {
                var t1 = sw.Elapsed.TotalSeconds;
                var vo = o with { UniModalTowers = uni.ModelDir, Meter = v.Meter, LinkTower = v.LinkTower };
                var dir = Path.Combine(seedDir, v.Name);
                var r = RunPipeline(vo, dir);
                if (r.Interrupted) throw new InvalidOperationException($"seed {seed}, {v.Name}: a stage did not complete");
                long parameters = ReadParameterCount(r.ModelDir);
                var run = new AblationRun(v.Name, seed, parameters, r.VqaAccuracy, r.ItmOverall, r.Retrieval["t2i_r1"], r.Retrieval["i2t_r1"], sw.Elapsed.TotalSeconds - t1);
                runs.Add(run);
                done++;
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[seed {seed}] {v.Name,-24} VQA {run.Vqa:P1}  ITM hard {run.ItmHard:P1}  t2i R@1 {run.T2iR1:P1}  i2t R@1 {run.I2tR1:P1}  ({run.Seconds:F0} s{Eta()})"));
            }
        }
        var result = new AblationResult(runs, Variants, scale, seeds, sw.Elapsed.TotalSeconds);
        AtomicFile.WriteAllText(Path.Combine(outDir, "bridges_ablation.json"), ToJson(result).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return result;
    }

    // The pipeline's own log and progress bars go to a file in the run folder; the experiment prints its own lines.
    private static WorldReport RunPipeline(WorldRunOptions o, string dir)
    {
        Directory.CreateDirectory(dir);
        using var log = new StreamWriter(Path.Combine(dir, "pipeline.log")) { AutoFlush = true };
        return new WorldPipeline(o, dir, log) { ProgressOutput = log }.Run();
    }

    // Parameters of the saved model (model.safetensors: encoder and every HF head; the vision attribute head,
    // identical in all variants, is not in it).
    private static long ReadParameterCount(string modelDir)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(modelDir, Checkpoint.ModelFile));
        return f.Names.Sum(n => f.Info(n).Shape.Aggregate(1L, (a, d) => a * d));
    }

    /// <summary>Per variant and metric: the mean ± 95 % t interval over seeds.</summary>
    public static MeanCi Summary(AblationResult r, string variant, Func<AblationRun, double> metric) =>
        Stats.Summarise(r.Runs.Where(x => x.Variant == variant).OrderBy(x => x.Seed).Select(metric).ToList());

    /// <summary>Per BridgeTower variant: the paired difference to METER on the same seed (same towers), mean ± 95 % t.</summary>
    public static MeanCi PairedVsMeter(AblationResult r, string variant, Func<AblationRun, double> metric)
    {
        var meter = r.Runs.Where(x => x.Variant == "meter").ToDictionary(x => x.Seed);
        var diffs = r.Runs.Where(x => x.Variant == variant && meter.ContainsKey(x.Seed)).OrderBy(x => x.Seed)
            .Select(x => metric(x) - metric(meter[x.Seed])).ToList();
        return Stats.Summarise(diffs);
    }

    private static string Pct(MeanCi s) => double.IsNaN(s.HalfWidth)
        ? string.Create(CultureInfo.InvariantCulture, $"{100 * s.Mean:F1}")
        : string.Create(CultureInfo.InvariantCulture, $"{100 * s.Mean:F1} ± {100 * s.HalfWidth:F1}");

    private static string Signed(MeanCi s) => double.IsNaN(s.HalfWidth)
        ? string.Create(CultureInfo.InvariantCulture, $"{100 * s.Mean:+0.0;-0.0;0.0}")
        : string.Create(CultureInfo.InvariantCulture, $"{100 * s.Mean:+0.0;-0.0;0.0} ± {100 * s.HalfWidth:F1}{(s.ExcludesZero ? " *" : "")}");

    /// <summary>The results as Markdown tables: absolute metrics (%), then paired differences to METER (points).</summary>
    public static void PrintTable(AblationResult r, TextWriter w)
    {
        var names = r.Variants.Select(v => v.Name).ToList();
        var parameters = names.ToDictionary(n => n, n => r.Runs.FirstOrDefault(x => x.Variant == n)?.Parameters ?? -1);
        w.WriteLine($"Held-out metrics, % (mean ± 95% t-interval over {r.Seeds} seed{(r.Seeds == 1 ? "" : "s")}; chance ITM 50, R@1 {100.0 / Math.Max(1, r.Scale.EvalImages):F1})");
        w.WriteLine();
        w.WriteLine("| variant | parameters | " + string.Join(" | ", Metrics.Select(m => m.Label)) + " |");
        w.WriteLine("|---|---:|" + string.Concat(Metrics.Select(_ => "---:|")));
        foreach (var n in names)
            w.WriteLine($"| {n} | {parameters[n].ToString("N0", CultureInfo.InvariantCulture)} | " + string.Join(" | ", Metrics.Select(m => Pct(Summary(r, n, m.Get)))) + " |");
        w.WriteLine();
        w.WriteLine("Paired difference to METER on the same seed and towers, points (* = the 95% interval excludes 0)");
        w.WriteLine();
        w.WriteLine("| variant − meter | " + string.Join(" | ", Metrics.Select(m => m.Label)) + " |");
        w.WriteLine("|---|" + string.Concat(Metrics.Select(_ => "---:|")));
        foreach (var n in names.Where(n => n != "meter"))
            w.WriteLine($"| {n} | " + string.Join(" | ", Metrics.Select(m => Signed(PairedVsMeter(r, n, m.Get)))) + " |");
    }

    public static JsonObject ToJson(AblationResult r)
    {
        static JsonObject Ci(MeanCi s) => new()
        {
            ["mean"] = Round(s.Mean), ["sd"] = Round(s.Sd), ["ci95_half_width"] = Round(s.HalfWidth),
            ["ci95_low"] = Round(s.Low), ["ci95_high"] = Round(s.High), ["n"] = s.N,
        };
        var variants = new JsonObject();
        foreach (var v in r.Variants)
        {
            var m = new JsonObject
            {
                ["meter"] = v.Meter,
                ["link_tower_type"] = v.Meter ? null : v.LinkTower switch { LinkTowerType.Add => "add", LinkTowerType.ScaledAdd => "scaled_add", _ => "interpolate" },
                ["parameters"] = r.Runs.FirstOrDefault(x => x.Variant == v.Name)?.Parameters ?? -1,
            };
            foreach (var (key, _, get) in Metrics) m[key] = Ci(Summary(r, v.Name, get));
            if (!v.Meter)
            {
                var d = new JsonObject();
                foreach (var (key, _, get) in Metrics) d[key] = Ci(PairedVsMeter(r, v.Name, get));
                m["paired_difference_vs_meter"] = d;
            }
            variants[v.Name] = m;
        }
        var s = r.Scale;
        return new JsonObject
        {
            ["experiment"] = "bridges",
            ["seeds"] = r.Seeds,
            ["confidence"] = "95% two-sided Student t interval of the mean over seeds",
            ["scale"] = new JsonObject
            {
                ["train_scenes"] = s.TrainScenes, ["test_scenes"] = s.TestScenes, ["eval_images"] = s.EvalImages, ["rerank_k"] = s.RerankK,
                ["image_size"] = s.ImageSize, ["patch_size"] = s.PatchSize, ["hidden"] = s.Hidden, ["tower_layers"] = s.TowerLayers,
                ["cross_layers"] = s.CrossLayers, ["batch_size"] = s.BatchSize, ["learning_rate"] = s.LearningRate,
                ["text_mlm_steps"] = s.TextMlmSteps, ["vision_steps"] = s.VisionSteps, ["pretrain_steps"] = s.PretrainSteps,
                ["vqa_steps"] = s.VqaSteps, ["retrieval_steps"] = s.RetrievalSteps,
            },
            ["variants"] = variants,
            ["runs"] = new JsonArray(r.Runs.Select(x => (JsonNode)new JsonObject
            {
                ["variant"] = x.Variant, ["seed"] = x.Seed, ["vqa_accuracy"] = Round(x.Vqa), ["itm_hard_negative_accuracy"] = Round(x.ItmHard),
                ["t2i_r1"] = Round(x.T2iR1), ["i2t_r1"] = Round(x.I2tR1), ["seconds"] = Math.Round(x.Seconds, 1),
            }).ToArray()),
            ["seconds"] = Math.Round(r.Seconds, 1),
        };
    }

    private static JsonNode? Round(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 4)) : null;
}
