using System.CommandLine;
using System.Text.Json;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Tokenizers;
using Vlm.Training.Training;

namespace Vlm.Cli.Tests;

/// <summary>Smoke test of the demo path (world → tokenizer → uni-modal and VL pre-training → VQA and retrieval
/// fine-tuning → held-out evaluation → metrics.json, model folders, curves), at a size that runs in seconds.</summary>
public sealed class DemoTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-demo-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static WorldRunOptions Tiny() => new()
    {
        Seed = 1, TrainScenes = 24, ValScenes = 2, TestScenes = 8, ImageSize = 32, PatchSize = 16, Hidden = 64, TowerLayers = 1,
        CrossLayers = 1, BatchSize = 4, TextMlmSteps = 2, VisionSteps = 2, PretrainSteps = 3, VqaSteps = 3, RetrievalSteps = 3,
        CheckpointEvery = 2, EvalImages = 8, RerankK = 3,
    };

    [Fact]
    public void DemoRunsEndToEndAndWritesMetricsModelsAndCurves()
    {
        var stdout = new StringWriter();
        Assert.Equal(0, Demo.Run(Tiny(), _dir, stdout, TextWriter.Null));
        var text = stdout.ToString();
        Assert.Contains("ITM accuracy, colour_swap", text);
        Assert.Contains("VQA count", text);
        Assert.Contains("text->image R@1", text);

        using var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "metrics.json")));
        var r = m.RootElement;
        foreach (var key in new[] { "itm_hard_negative_accuracy", "vqa_accuracy", "vqa_majority_baseline", "retrieval_t2i_r1", "retrieval_i2t_r1", "retrieval_chance_r1" })
            Assert.InRange(r.GetProperty(key).GetDouble(), 0.0, 1.0);
        Assert.Equal(1.0 / 8, r.GetProperty("retrieval_chance_r1").GetDouble(), 4);
        Assert.Equal(4, r.GetProperty("itm_hard_negative_accuracy_by_kind").EnumerateObject().Count());

        // The model folders are HF-style and load into the HF head classes.
        foreach (var model in new[] { "pretrained", "vqa", "retrieval" })
        {
            var dir = Path.Combine(_dir, "models", model);
            var cfg = BridgeTowerConfig.Load(Path.Combine(dir, "config.json"));
            using (var w = CheckpointLoader.Open(dir)) _ = new BridgeTowerForImageAndTextRetrieval(cfg, w);
            using (var w = CheckpointLoader.Open(dir)) _ = new BridgeTowerForVqa(cfg, w);
            Assert.NotNull(AutoTokenizer.FromFolder(dir));
            Assert.True(File.Exists(Path.Combine(dir, "preprocessor_config.json")));
        }
        Assert.True(File.Exists(Path.Combine(_dir, "curves", "vl-pretrain_loss.png")));
        Assert.True(File.Exists(Path.Combine(_dir, "curves", "vqa-finetune_accuracy.png")));
        Assert.True(File.Exists(Path.Combine(_dir, "metrics.jsonl")));
        Assert.True(File.Exists(Path.Combine(_dir, "tokenizer", "merges.txt")));
    }

    [Fact]
    public void DemoCommandParsesItsOptionsAndRejectsABadScale()
    {
        var root = new RootCommand();
        foreach (var c in Commands.All()) root.Subcommands.Add(c);
        var parse = root.Parse(["demo", "--quick", "--out", _dir, "--seed", "7", "--resume", "--itc-hard-negatives"]);
        Assert.Empty(parse.Errors);
        Assert.Equal(2, root.Parse(["demo", "--out", _dir, "--steps-scale", "0"]).Invoke());
        // The CLI quick path is the full path with fewer steps.
        var q = Demo.Quick(0); var f = Demo.Full(0);
        Assert.True(q.PretrainSteps < f.PretrainSteps && q.VqaSteps < f.VqaSteps && q.RetrievalSteps < f.RetrievalSteps);
    }
}
