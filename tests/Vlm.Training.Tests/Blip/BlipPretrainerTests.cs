using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.Blip;
using Vlm.Models.Generation;
using Vlm.Training.Blip;

namespace Vlm.Training.Tests.Blip;

public sealed class BlipPretrainerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-blip-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static BlipWorldOptions Tiny(PretrainKind kind, int steps, long? stopAfter = null, bool resume = false) => new()
    {
        Kind = kind, Seed = 4, TrainScenes = 12, ImageSize = 32, PatchSize = 16, Hidden = 32, VisionLayers = 1, TextLayers = 2, QueueSize = 8, MaxTextLength = 24,
        Train = new BlipPretrainOptions { Steps = steps, BatchSize = 4, LearningRate = 1e-3, WarmupFraction = 0, CheckpointEvery = 3, StopAfterStep = stopAfter, Resume = resume, Seed = 9 },
    };

    [Fact]
    public void BatchesAreSeededEpochPermutations()
    {
        var all = Enumerable.Range(0, 3).SelectMany(s => BlipPretrainer.BatchIndices(10, 4, 1, s)).ToList();   // 12 positions: epoch 0 + 2 of epoch 1
        Assert.Equal(Enumerable.Range(0, 10), all.Take(10).Order());
        Assert.Equal(BlipPretrainer.BatchIndices(10, 4, 1, 2), BlipPretrainer.BatchIndices(10, 4, 1, 2));
        Assert.NotEqual(BlipPretrainer.BatchIndices(10, 4, 1, 0), BlipPretrainer.BatchIndices(10, 4, 2, 0));
    }

    [Fact]
    public void BlipOnTheWorldCheckpointsExportsToHfAndResumesExactly()
    {
        var full = BlipWorldPretrain.Run(Tiny(PretrainKind.Blip, 6), Path.Combine(_dir, "full"), TextWriter.Null, TextWriter.Null);
        Assert.True(full.Training.Completed);
        Assert.True(full.Training.Last["loss"] < full.Training.First["loss"], $"{full.Training.First["loss"]} -> {full.Training.Last["loss"]}");
        Assert.Equal(6, File.ReadAllLines(Path.Combine(_dir, "full", "metrics.jsonl")).Length);
        // HF folders load strictly into the HF head classes and run.
        var ret = BlipForImageTextRetrieval.FromFolder(full.RetrievalDir!);
        var cap = BlipForConditionalGeneration.FromFolder(full.CaptioningDir!);
        var pixels = Tensor.Randn([1, 3, 32, 32], new Rng(1));
        var ids = Tensor.FromArray(new long[] { 0, 10, 11, 2 }, 1, 4);
        Assert.Equal([1, 2], ret.Forward(ids, null, pixels).itmScore.ShapeArray());
        var gen = cap.Generate(pixels, null, null, new GenerationOptions { MaxNewTokens = 5 });
        Assert.NotNull(gen);

        // Interrupted after step 3 (checkpoint), resumed to 6: parameters, momentum and queue equal the straight run.
        BlipWorldPretrain.Run(Tiny(PretrainKind.Blip, 6, stopAfter: 3), Path.Combine(_dir, "cut"), TextWriter.Null, TextWriter.Null);
        Assert.True(Directory.Exists(Path.Combine(_dir, "cut", "checkpoints", "step-000003")));
        var resumed = BlipWorldPretrain.Run(Tiny(PretrainKind.Blip, 6, resume: true), Path.Combine(_dir, "cut"), TextWriter.Null, TextWriter.Null);
        Assert.True(resumed.Training.Completed);
        var a = SafeTensors.Load(Path.Combine(full.CheckpointDir, "final", BlipCheckpoint.ModelFile));
        var b = SafeTensors.Load(Path.Combine(resumed.CheckpointDir, "final", BlipCheckpoint.ModelFile));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var k in a.Keys) Assert.True(a[k].ToArray().SequenceEqual(b[k].ToArray()), k);
        var sa = SafeTensors.Load(Path.Combine(full.CheckpointDir, "final", BlipCheckpoint.StateFile));
        var sb = SafeTensors.Load(Path.Combine(resumed.CheckpointDir, "final", BlipCheckpoint.StateFile));
        foreach (var k in sa.Keys.Where(k => k.StartsWith("momentum.", StringComparison.Ordinal) || k.StartsWith("queue.", StringComparison.Ordinal)))
            Assert.True(sa[k].DType == DType.Float32 ? sa[k].ToArray().SequenceEqual(sb[k].ToArray()) : sa[k].ToInt64Array().SequenceEqual(sb[k].ToInt64Array()), k);
        var cfg = BlipCheckpoint.ReadConfig(Path.Combine(full.CheckpointDir, "final"));
        Assert.Equal(PretrainKind.Blip, cfg.Kind);
        Assert.Equal(8, cfg.QueueSize);
    }

    [Fact]
    public void AlbefOnTheWorldTrains()
    {
        var r = BlipWorldPretrain.Run(Tiny(PretrainKind.Albef, 12) with { TextLayers = 2 }, Path.Combine(_dir, "albef"), TextWriter.Null, TextWriter.Null);
        Assert.True(r.Training.Completed);
        Assert.Null(r.RetrievalDir);
        // Batches differ per step (and MLM masks): compare the mean of the first and last three steps.
        var losses = File.ReadAllLines(Path.Combine(_dir, "albef", "metrics.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();
        Assert.Equal(12, losses.Count);
        Assert.True(losses.TakeLast(3).Average() < losses.Take(3).Average(), string.Join(", ", losses.Select(x => x.ToString("F3"))));
        Assert.True(r.Training.Last.ContainsKey("mlm_loss"));
        var cfg = BlipCheckpoint.ReadConfig(Path.Combine(r.CheckpointDir, "final"));
        Assert.Equal(PretrainKind.Albef, cfg.Kind);
        Assert.Equal(1, cfg.FusionStart);
    }
}
