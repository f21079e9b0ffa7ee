using System.CommandLine;
using System.Text.Json;
using Vlm.Training.Training;

namespace Vlm.Cli.Tests;

/// <summary>`vlm experiment bridges` end to end at a size that runs in seconds (1 seed, a few steps per stage).</summary>
public sealed class ExperimentTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-exp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Two cross-modal layers, so BridgeTower has one bridge per modality and differs from METER.
    private static WorldRunOptions Tiny() => new()
    {
        TrainScenes = 16, ValScenes = 2, TestScenes = 6, ImageSize = 32, PatchSize = 16, Hidden = 64, TowerLayers = 2,
        CrossLayers = 2, BatchSize = 4, TextMlmSteps = 1, VisionSteps = 1, PretrainSteps = 2, VqaSteps = 1, RetrievalSteps = 1,
        CheckpointEvery = 0, EvalImages = 6, RerankK = 2,
    };

    [Fact]
    public void Bridges_runs_four_variants_from_one_set_of_towers_and_reports_them()
    {
        var stdout = new StringWriter(); var progress = new StringWriter();
        Assert.Equal(0, Experiment.RunBridges(Tiny(), 1, 5, _dir, json: false, stdout, progress));
        var text = stdout.ToString();
        foreach (var v in new[] { "bridgetower-add", "bridgetower-scaled_add", "bridgetower-interpolate", "meter" })
        {
            Assert.Contains($"| {v} |", text);
            // Every variant loaded the seed's one tower file and skipped the uni-modal stages.
            var log = File.ReadAllText(Path.Combine(_dir, "seed-5", v, "pipeline.log"));
            Assert.Contains($"uni-modal towers: ", log);
            Assert.Contains(Path.Combine(_dir, "seed-5", "unimodal", UniModalTowerFile.FileName), log);
            Assert.DoesNotContain("text-mlm", log);
        }
        Assert.Contains("METER", File.ReadAllText(Path.Combine(_dir, "seed-5", "meter", "pipeline.log")));
        Assert.Contains("[seed 5] meter", progress.ToString());

        using var j = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "bridges_ablation.json")));
        var variants = j.RootElement.GetProperty("variants");
        Assert.Equal(4, variants.EnumerateObject().Count());
        // Equal size apart from the link towers: one bridge per modality = 2 LayerNorms of 2·64 (+ 2 scalars).
        long meter = variants.GetProperty("meter").GetProperty("parameters").GetInt64();
        Assert.Equal(meter + 256, variants.GetProperty("bridgetower-add").GetProperty("parameters").GetInt64());
        Assert.Equal(meter + 258, variants.GetProperty("bridgetower-interpolate").GetProperty("parameters").GetInt64());
        foreach (var key in new[] { "vqa_accuracy", "itm_hard_negative_accuracy", "t2i_r1", "i2t_r1" })
            Assert.InRange(variants.GetProperty("meter").GetProperty(key).GetProperty("mean").GetDouble(), 0.0, 1.0);
        Assert.Equal(1, j.RootElement.GetProperty("seeds").GetInt32());
    }

    [Fact]
    public void Bridges_command_parses_and_rejects_bad_values()
    {
        var root = new RootCommand();
        foreach (var c in Commands.All()) root.Subcommands.Add(c);
        Assert.Empty(root.Parse(["experiment", "bridges", "--seeds", "3", "--out", _dir, "--steps-scale", "0.5", "--json"]).Errors);
        Assert.Equal(2, root.Parse(["experiment", "bridges", "--out", _dir, "--steps-scale", "0"]).Invoke());
        Assert.Equal(2, root.Parse(["experiment", "bridges", "--out", _dir, "--seeds", "0"]).Invoke());
    }
}
