using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Vlm.Training.Experiments;
using Vlm.Training.Training;

namespace Vlm.Cli;

/// <summary>`vlm experiment bridges`: the BridgeTower paper's ablation on the synthetic world — BridgeTower with each
/// link-tower type against METER at equal size, every variant from the same uni-modal towers per seed; mean ± 95 %
/// t-interval over seeds of VQA accuracy, ITM hard-negative accuracy and R@1 both ways.</summary>
public static class Experiment
{
    /// <summary>The `bridges` subcommand (registered under `experiment` in Commands.All).</summary>
    public static Command BuildBridges()
    {
        var bridges = new Command("bridges", "BridgeTower (add / scaled_add / interpolate bridges) vs METER at equal size, from shared uni-modal towers");
        var seeds = new Option<int>("--seeds") { Description = "Seeds (each: one uni-modal pre-training, then the four variants)", DefaultValueFactory = _ => 3 };
        var firstSeed = new Option<ulong>("--first-seed") { Description = "First seed (then +1, +2, …)", DefaultValueFactory = _ => 0 };
        var outDir = new Option<string>("--out") { Description = "Experiment folder (one run folder per seed and variant, bridges_ablation.json)", DefaultValueFactory = _ => "experiment-bridges" };
        var steps = new Option<double>("--steps-scale") { Description = "Multiply every stage's step count (1 = about 25 min for 3 seeds on the shared 2-core machine)", DefaultValueFactory = _ => 1.0 };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON instead of the tables" };
        bridges.Options.Add(seeds); bridges.Options.Add(firstSeed); bridges.Options.Add(outDir); bridges.Options.Add(steps); bridges.Options.Add(json);
        bridges.SetAction(pr =>
        {
            double k = pr.GetValue(steps);
            if (!(k > 0)) return Cli.Fail("--steps-scale must be positive");
            int n = pr.GetValue(seeds);
            if (n < 1) return Cli.Fail("--seeds must be at least 1");
            var scale = BridgesAblation.Scaled(BridgesAblation.DefaultScale(0), k);
            return RunBridges(scale, n, pr.GetValue(firstSeed), pr.GetValue(outDir)!, pr.GetValue(json), Console.Out, Console.Error);
        });
        return bridges;
    }

    public static int RunBridges(WorldRunOptions scale, int seeds, ulong firstSeed, string outDir, bool json, TextWriter stdout, TextWriter progress)
    {
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"bridges ablation: {seeds} seed(s) × {BridgesAblation.Variants.Length} variants; {scale.TrainScenes} train scenes, batch {scale.BatchSize}; steps: text-mlm {scale.TextMlmSteps}, vision {scale.VisionSteps}, vl-pretrain {scale.PretrainSteps}, vqa {scale.VqaSteps}, retrieval {scale.RetrievalSteps}; out {outDir}"));
        var r = BridgesAblation.Run(scale, seeds, firstSeed, outDir, progress);
        if (json) stdout.WriteLine(BridgesAblation.ToJson(r).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        else
        {
            BridgesAblation.PrintTable(r, stdout);
            stdout.WriteLine();
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"total {r.Seconds / 60:F1} min; JSON in {Path.Combine(outDir, "bridges_ablation.json")}"));
        }
        return 0;
    }
}
