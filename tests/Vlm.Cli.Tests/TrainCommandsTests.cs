using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Tokenizers;

namespace Vlm.Cli.Tests;

/// <summary>A tiny world written by `vlm world` and a tiny model pre-trained on it by `vlm pretrain`, shared by the
/// training-command tests (each command runs for a handful of steps; the numbers mean nothing).</summary>
public sealed class TinyTrainingRun : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vlm-traincli-").FullName;
    public string World => Path.Combine(Dir, "world");
    public string Config => Path.Combine(Dir, "tiny_config.json");
    public string Pretrained => Path.Combine(Dir, "pre", "model");
    public (int code, string stdout, string stderr) WorldRun { get; }
    public (int code, string stdout, string stderr) PretrainRun { get; }

    public TinyTrainingRun()
    {
        WorldRun = CliRunner.Run("world", "--out", World, "--train", "16", "--val", "0", "--test", "6", "--image-size", "32", "--seed", "2", "--json");
        File.WriteAllText(Config, new JsonObject
        {
            ["hidden_size"] = 64, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 1, ["contrastive_hidden_size"] = 32,
            ["text_config"] = new JsonObject
            {
                ["hidden_size"] = 64, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 1, ["intermediate_size"] = 128,
                ["hidden_dropout_prob"] = 0.0, ["attention_probs_dropout_prob"] = 0.0, ["max_position_embeddings"] = 48,
            },
            ["vision_config"] = new JsonObject { ["hidden_size"] = 64, ["num_hidden_layers"] = 1, ["patch_size"] = 16, ["image_size"] = 32 },
        }.ToJsonString());
        PretrainRun = Pretrain(Path.Combine(Dir, "pre"));
    }

    public (int code, string stdout, string stderr) Pretrain(string outDir, params string[] extra) =>
        CliRunner.Run(["pretrain", "--data", World, "--out", outDir, "--config", Config, "--steps", "4", "--batch-size", "4", "--checkpoint-every", "2", "--json", .. extra]);

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}

public sealed class TrainCommandsTests(TinyTrainingRun run) : IClassFixture<TinyTrainingRun>
{
    private static JsonObject Json(string stdout) => JsonNode.Parse(stdout.Trim().Split('\n')[^1])!.AsObject();

    private static void AssertOneLineError((int code, string stdout, string stderr) r, string contains)
    {
        Assert.NotEqual(0, r.code);
        var lines = r.stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(contains, lines[0]);
    }

    [Fact]
    public void WorldWritesEveryFormatAndItsSeed()
    {
        Assert.Equal(0, run.WorldRun.code);
        var j = Json(run.WorldRun.stdout);
        var files = j["files"]!.AsArray().Select(f => f!.GetValue<string>()).ToList();
        foreach (var f in new[] { "captions_train.json", "questions_test.json", "annotations_test.json", "dataset_karpathy.json", "pairs_train.jsonl",
                     "itm_negatives_test.jsonl", "nlvr2_train.jsonl", "world.json" })
            Assert.Contains(f, files);
        Assert.Equal(16, Directory.GetFiles(Path.Combine(run.World, "images", "train"), "*.png").Length);
        using var w = JsonDocument.Parse(File.ReadAllText(Path.Combine(run.World, "world.json")));
        Assert.Equal(2UL, w.RootElement.GetProperty("seed").GetUInt64());
        Assert.Equal(8, File.ReadAllLines(Path.Combine(run.World, "nlvr2_train.jsonl")).Count(l => l.Length > 0));
    }

    [Fact]
    public void PretrainWritesAnHfFolderMetricsAndCurves()
    {
        Assert.True(run.PretrainRun.code == 0, run.PretrainRun.stderr);
        var j = Json(run.PretrainRun.stdout);
        Assert.Equal("vl-pretrain", j["stage"]!.GetValue<string>());
        Assert.Equal(4, j["steps"]!.GetValue<long>());
        Assert.True(j["last"]!["itm_loss"]!.GetValue<double>() > 0);
        var dir = run.Pretrained;
        foreach (var f in new[] { "config.json", "model.safetensors", "vocab.json", "merges.txt", "preprocessor_config.json" })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        var cfg = BridgeTowerConfig.Load(Path.Combine(dir, "config.json"));
        Assert.Equal(64, cfg.HiddenSize);
        Assert.Equal(AutoTokenizer.FromFolder(dir).VocabSize, cfg.TextConfig.VocabSize);
        using (var w = CheckpointLoader.Open(dir)) _ = new BridgeTowerForImageAndTextRetrieval(cfg, w);
        using (var w = CheckpointLoader.Open(dir)) _ = new BridgeTowerForContrastiveLearning(cfg, w);
        var metrics = File.ReadAllLines(Path.Combine(run.Dir, "pre", "metrics.jsonl"));
        Assert.Equal(4, metrics.Length);
        Assert.True(File.Exists(Path.Combine(run.Dir, "pre", "curves", "vl-pretrain_loss.png")));
        Assert.True(Directory.Exists(Path.Combine(run.Dir, "pre", "checkpoints", "vl-pretrain", "final")));
    }

    [Fact]
    public void PretrainResumedAfterAStopEndsBitIdenticalToAnUninterruptedRun()
    {
        var b = Path.Combine(run.Dir, "resume");
        var stopped = run.Pretrain(b, "--stop-after", "2");
        Assert.Equal(3, stopped.code);
        Assert.False(Directory.Exists(Path.Combine(b, "model")));
        // Starting again without --resume would overwrite the run: refused.
        AssertOneLineError(run.Pretrain(b), "--resume");
        var resumed = run.Pretrain(b, "--resume");
        Assert.True(resumed.code == 0, resumed.stderr);
        Assert.Contains("resuming from", resumed.stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(run.Pretrained, "model.safetensors")), File.ReadAllBytes(Path.Combine(b, "model", "model.safetensors")));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length);
    }

    [Fact]
    public void FinetuneAndEvalEveryTaskWriteModelsAndMetrics()
    {
        var models = new Dictionary<string, string>();
        foreach (var task in new[] { "vqa", "retrieval", "nlvr2" })
        {
            var outDir = Path.Combine(run.Dir, "ft-" + task);
            var r = CliRunner.Run("finetune", task, "--model", run.Pretrained, "--data", run.World, "--out", outDir, "--steps", "2", "--batch-size", "4", "--json");
            Assert.True(r.code == 0, r.stderr);
            var j = Json(r.stdout);
            Assert.Equal($"{task}-finetune", j["stage"]!.GetValue<string>());
            models[task] = j["model_dir"]!.GetValue<string>();
            Assert.True(File.Exists(Path.Combine(models[task], "model.safetensors")));
            Assert.True(File.Exists(Path.Combine(outDir, "curves", $"{task}-finetune_loss.png")));
        }
        // The heads a pre-trained folder lacks start fresh, and say so.
        Assert.Contains("vqa_classifier", Json(CliRunner.Run("finetune", "vqa", "--model", run.Pretrained, "--data", run.World, "--out",
            Path.Combine(run.Dir, "ft-vqa2"), "--steps", "1", "--batch-size", "2", "--json").stdout)["fresh_heads"]!.ToJsonString());
        var vqaCfg = BridgeTowerConfig.Load(Path.Combine(models["vqa"], "config.json"));
        Assert.Contains("yes", vqaCfg.Id2Label!);
        using (var w = CheckpointLoader.Open(models["vqa"])) _ = new BridgeTowerForVqa(vqaCfg, w);
        using (var w = CheckpointLoader.Open(models["nlvr2"])) _ = new BridgeTowerForNlvr2(BridgeTowerConfig.Load(Path.Combine(models["nlvr2"], "config.json")), w);

        var vqa = Json(CliRunner.Run("eval", "vqa", "--model", models["vqa"], "--data", run.World, "--json").stdout);
        Assert.InRange(vqa["vqa_accuracy"]!.GetValue<double>(), 0, 1);
        Assert.Equal("train", vqa["majority_from"]!.GetValue<string>());
        Assert.Equal(5, vqa["vqa_accuracy_by_type"]!.AsObject().Count);
        var itm = Json(CliRunner.Run("eval", "itm", "--model", models["retrieval"], "--data", run.World, "--json").stdout);
        Assert.Equal("minimal", itm["positives"]!.GetValue<string>());
        Assert.Equal(4, itm["itm_accuracy_by_kind"]!.AsObject().Count);
        var ret = Json(CliRunner.Run("eval", "retrieval", "--model", models["retrieval"], "--data", run.World, "--rerank-k", "3", "--json").stdout);
        Assert.Equal(6, ret["images"]!.GetValue<int>());
        Assert.Equal(1.0 / 6, ret["retrieval"]!["chance_r1"]!.GetValue<double>(), 4);
        foreach (var k in new[] { "t2i_r1", "i2t_r5", "itc_t2i_r10", "itc_i2t_r1" }) Assert.InRange(ret["retrieval"]![k]!.GetValue<double>(), 0, 1);
        var nlvr = Json(CliRunner.Run("eval", "nlvr2", "--model", models["nlvr2"], "--data", run.World, "--json").stdout);
        Assert.Equal(3, nlvr["statements"]!.GetValue<int>());
        Assert.InRange(nlvr["nlvr2_majority_baseline"]!.GetValue<double>(), 0, 1);
        var table = CliRunner.Run("eval", "nlvr2", "--model", models["nlvr2"], "--data", run.World);
        Assert.Contains("NLVR2 accuracy (3 statements)", table.stdout);
    }

    [Fact]
    public void BadInputIsAOneLineErrorAndANonZeroExit()
    {
        var missing = Path.Combine(run.Dir, "no-such-folder");
        AssertOneLineError(CliRunner.Run("pretrain", "--data", missing, "--out", Path.Combine(run.Dir, "x1")), "dataset folder not found");
        AssertOneLineError(CliRunner.Run("pretrain", "--data", run.World, "--out", Path.Combine(run.Dir, "x2"), "--steps", "0"), "--steps must be positive");
        AssertOneLineError(CliRunner.Run("finetune", "vqa", "--model", missing, "--data", run.World, "--out", Path.Combine(run.Dir, "x3")), "not found");
        AssertOneLineError(CliRunner.Run("eval", "vqa", "--model", run.Pretrained, "--data", run.World), "id2label");
        AssertOneLineError(CliRunner.Run("eval", "nlvr2", "--model", run.Pretrained, "--data", run.World), "nlvr2_classifier");
        AssertOneLineError(CliRunner.Run("world", "--out", Path.Combine(run.Dir, "x4"), "--train", "1"), "--train");
        // A malformed dataset file names the file and line.
        var bad = Path.Combine(run.Dir, "bad");
        Directory.CreateDirectory(bad);
        File.WriteAllText(Path.Combine(bad, "pairs_train.jsonl"), "{\"image\": \"a.png\", \"caption\": \"x\"}\n{not json\n");
        AssertOneLineError(CliRunner.Run("pretrain", "--data", bad, "--out", Path.Combine(run.Dir, "x5")), "pairs_train.jsonl:2");
        File.WriteAllText(Path.Combine(bad, "pairs_train.jsonl"), "{\"image\": \"a.png\", \"caption\": \"x\"}\n");
        AssertOneLineError(CliRunner.Run("pretrain", "--data", bad, "--out", Path.Combine(run.Dir, "x6")), "a.png");
        // Parse errors (a required option missing) exit non-zero too.
        Assert.NotEqual(0, CliRunner.Run("finetune", "nlvr2", "--data", run.World, "--out", Path.Combine(run.Dir, "x7")).code);
    }

    [Fact]
    public void EveryTrainingCommandHasHelp()
    {
        foreach (var args in new[] { new[] { "world" }, ["pretrain"], ["finetune", "vqa"], ["finetune", "retrieval"], ["finetune", "nlvr2"],
                     ["eval", "vqa"], ["eval", "retrieval"], ["eval", "itm"], ["eval", "nlvr2"] })
        {
            var r = CliRunner.Run([.. args, "--help"]);
            Assert.Equal(0, r.code);
            Assert.Contains(args[0] == "world" ? "--image-size" : "--data", r.stdout);
        }
        Assert.Contains("--resume", CliRunner.Run("pretrain", "--help").stdout);
        Assert.Contains("--max-images", CliRunner.Run("eval", "retrieval", "--help").stdout);
    }
}
