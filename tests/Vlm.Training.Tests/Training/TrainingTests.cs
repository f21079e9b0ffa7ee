using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.Model;
using Vlm.Training.Text;
using Vlm.Training.Training;

namespace Vlm.Training.Tests.Training;

public sealed class TrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-train-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The smallest configuration that runs every stage (seconds on 2 cores).</summary>
    public static WorldRunOptions Tiny(ulong seed = 3) => new()
    {
        Seed = seed, TrainScenes = 24, ValScenes = 2, TestScenes = 8, ImageSize = 32, PatchSize = 16, Hidden = 64, TowerLayers = 1,
        CrossLayers = 1, BatchSize = 4, TextMlmSteps = 2, VisionSteps = 2, PretrainSteps = 4, VqaSteps = 3, RetrievalSteps = 3,
        CheckpointEvery = 2, EvalImages = 8, RerankK = 3,
    };

    private static readonly string[] Captions =
        ["a large red circle and a small blue square", "a red circle left of a blue square", "two crosses", "exactly one green diamond",
         "a small white triangle above a large cyan cross", "is there a purple circle?", "what color is the square?"];

    [Fact]
    public void BpeTrainedOnCaptionsRoundTripsThroughTheHfFiles()
    {
        int n = WorldBpe.TrainAndSave(Captions.Concat(Captions), _dir, vocabSize: 300);
        Assert.InRange(n, 262, 300);
        var tok = AutoTokenizer.FromFolder(_dir);
        Assert.Equal(1, tok.PadId);
        Assert.Equal(4, tok.MaskId);
        foreach (var c in Captions)
        {
            var e = tok.Encode(c);
            Assert.Equal(0, e.Ids[0]);
            Assert.Equal(2, e.Ids[^1]);
            Assert.Equal(c, tok.Decode(e.Ids, skipSpecialTokens: true));
        }
        // Frequent words became single tokens.
        Assert.Single(tok.Tokenize(" circle"));
        Assert.StartsWith("#version", File.ReadAllLines(Path.Combine(_dir, "merges.txt"))[0]);
    }

    [Fact]
    public void MlmMaskingFollows15Percent80_10_10AndLeavesSpecialsAlone()
    {
        WorldBpe.TrainAndSave(Captions, _dir, vocabSize: 300);
        var tok = AutoTokenizer.FromFolder(_dir);
        var col = new TextCollator(tok, 40);
        var texts = Enumerable.Range(0, 400).Select(i => Captions[i % Captions.Length]).ToList();
        var t = col.Encode(texts);
        var (masked, labels) = col.Mask(t, new Rng(5));
        var m = masked.ToInt64Array(); var l = labels.ToInt64Array();
        int candidates = 0, chosen = 0, toMask = 0, kept = 0;
        for (int i = 0; i < m.Length; i++)
        {
            long orig = t.IdArray[i];
            bool special = orig is 0 or 1 or 2;
            if (special) { Assert.Equal(-100, l[i]); Assert.Equal(orig, m[i]); continue; }
            candidates++;
            if (l[i] == -100) { Assert.Equal(orig, m[i]); continue; }
            chosen++;
            Assert.Equal(orig, l[i]);
            if (m[i] == 4) toMask++;
            else if (m[i] == orig) kept++;
        }
        Assert.InRange(chosen / (double)candidates, 0.13, 0.17);
        Assert.InRange(toMask / (double)chosen, 0.75, 0.85);
        Assert.InRange(kept / (double)chosen, 0.05, 0.16);
    }

    [Fact]
    public void HardNegativesNeverPickTheSameImageAndFollowSimilarity()
    {
        int b = 4;
        var sims = new float[] { 1, 0.9f, -1, -1, 0.9f, 1, -1, -1, -1, -1, 1, 0.9f, -1, -1, 0.9f, 1 };
        var ids = new[] { 10, 11, 12, 10 };
        var rng = new Rng(1);
        for (int k = 0; k < 50; k++)
        {
            var neg = Objectives.SampleHardNegatives(sims, b, ids, rng);
            for (int i = 0; i < b; i++) Assert.NotEqual(ids[i], ids[neg[i]]);
            Assert.Equal(1, neg[0]);   // τ = 0.05 makes the 0.9 candidate overwhelmingly likely
            Assert.Equal(2, neg[3]);
        }
    }

    private static MultiTaskBridgeTower SmallModel(out BridgeTowerConfig cfg)
    {
        cfg = new BridgeTowerConfig
        {
            HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 2, ContrastiveHiddenSize = 32, LogitScaleInitValue = 2.6592f,
            Id2Label = ["yes", "no", "red"], NumLabels = 3,
            TextConfig = new BridgeTowerTextConfig { VocabSize = 50, HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 128, MaxPositionEmbeddings = 20, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0 },
            VisionConfig = new BridgeTowerVisionConfig { HiddenSize = 64, NumHiddenLayers = 2, PatchSize = 16, ImageSize = 32 },
        };
        return new MultiTaskBridgeTower(cfg, new Rng(9), 7);
    }

    /// <summary>A saved checkpoint is an HF folder: config.json round-trips, and every single-head HF class loads
    /// model.safetensors and reproduces the multi-task model's heads.</summary>
    [Fact]
    public void SavedModelFolderLoadsIntoEveryHfHeadWithIdenticalOutputs()
    {
        var m = SmallModel(out var cfg);
        WorldBpe.TrainAndSave(Captions, Path.Combine(_dir, "tok"), 300);
        var dir = Path.Combine(_dir, "model");
        Checkpoint.WriteModelFiles(dir, m, Path.Combine(_dir, "tok"), 32);
        var cfg2 = BridgeTowerConfig.Load(Path.Combine(dir, "config.json"));
        Assert.Equal(Checkpoint.ConfigJson(cfg), Checkpoint.ConfigJson(cfg2));
        Assert.NotNull(AutoTokenizer.FromFolder(dir));
        Assert.True(File.Exists(Path.Combine(dir, "preprocessor_config.json")));

        var rng = new Rng(2);
        var ids = Tensor.FromArray(new long[] { 0, 7, 9, 11, 2, 0, 5, 2, 1, 1 }, 2, 5);
        var mask = Tensor.FromArray(new float[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, 2, 5);
        var px = Tensor.Randn([2, 3, 32, 32], rng);
        m.Eval();
        using var _ = Tensor.NoGrad();
        var o = m.Forward(ids, mask, px);
        using (var w = CheckpointLoader.Open(dir))
        {
            var itm = new BridgeTowerForImageAndTextRetrieval(cfg2, w);
            itm.Eval();
            Assert.Equal(m.ItmLogits(o).ToArray(), itm.Forward(ids, mask, px).Logits.ToArray());
        }
        using (var w = CheckpointLoader.Open(dir))
        {
            var mlm = new BridgeTowerForMaskedLM(cfg2, w);
            mlm.Eval();
            Assert.Equal(m.MlmLogits(o.TextFeatures).ToArray(), mlm.Forward(ids, mask, px).Logits.ToArray());
        }
        using (var w = CheckpointLoader.Open(dir))
        {
            var itc = new BridgeTowerForContrastiveLearning(cfg2, w);
            itc.Eval();
            var r = itc.Forward(ids, mask, px, returnLoss: true);
            var e = m.Itc(o);
            Assert.Equal(e.Text.ToArray(), r.TextEmbeds.ToArray());
            Assert.Equal(e.Image.ToArray(), r.ImageEmbeds.ToArray());
            Assert.Equal(e.Cross.ToArray(), r.CrossEmbeds.ToArray());
            Assert.Equal(r.Loss!.Item(), Objectives.Itc(e, m.LogitScale).Item(), 5);
            Assert.Equal(itc.EmbedText(ids, mask).ToArray(), m.EmbedText(ids, mask).ToArray());
            Assert.Equal(itc.EmbedImage(px).ToArray(), m.EmbedImage(px).ToArray());
        }
        using (var w = CheckpointLoader.Open(dir))
        {
            var vqa = new BridgeTowerForVqa(cfg2, w);
            vqa.Eval();
            Assert.Null(vqa.FreshHeadParameters);
            Assert.Equal(m.VqaLogits(o).ToArray(), vqa.Forward(ids, mask, px).Logits.ToArray());
        }
    }

    [Fact]
    public void CheckpointRoundTripsModelAndOptimizerStateExactly()
    {
        var m = SmallModel(out _);
        WorldBpe.TrainAndSave(Captions, Path.Combine(_dir, "tok"), 300);
        var opt = new Vlm.Nn.Optim.AdamW(Vlm.Nn.Optim.ParamGroups.ByName(m.Parameters, 0.01), 1e-3);
        var ids = Tensor.FromArray(new long[] { 0, 7, 9, 11, 2 }, 1, 5);
        var px = Tensor.Randn([1, 3, 32, 32], new Rng(1));
        var loss = m.ItmLogits(m.Forward(ids, Tensor.Ones(1, 5), px)).Sum();
        loss.Backward();
        opt.Step();
        var ck = Path.Combine(_dir, "ck");
        Checkpoint.Save(ck, m, opt, new TrainerState("s", 1, 10, [1, 2, 3, 4, 0, 0], false), Path.Combine(_dir, "tok"), 32);
        Assert.False(Directory.EnumerateDirectories(_dir, ".tmp-*").Any());
        var m2 = new MultiTaskBridgeTower(m.Config, new Rng(77), 7);
        var opt2 = new Vlm.Nn.Optim.AdamW(Vlm.Nn.Optim.ParamGroups.ByName(m2.Parameters, 0.01), 1e-3);
        Checkpoint.Load(ck, m2, opt2);
        foreach (var (k, t) in m.Parameters.Named) Assert.Equal(t.ToArray(), m2.Parameters[k].ToArray());
        var s1 = opt.StateDict(); var s2 = opt2.StateDict();
        Assert.Equal(s1.Keys.OrderBy(k => k), s2.Keys.OrderBy(k => k));
        foreach (var k in s1.Keys.Where(k => k != "steps_taken")) Assert.Equal(s1[k].ToArray(), s2[k].ToArray());
        Assert.Equal(1, Checkpoint.ReadState(ck)!.Step);
    }

    /// <summary>A run killed mid-stage and resumed ends with weights bit-identical to an uninterrupted run.</summary>
    [Fact]
    public void ResumeAfterAnInterruptionIsBitIdentical()
    {
        var a = Path.Combine(_dir, "a"); var b = Path.Combine(_dir, "b");
        var o = Tiny() with { PretrainSteps = 5, CheckpointEvery = 2, EvalImages = 4 };
        var full = new WorldPipeline(o, a, TextWriter.Null) { ProgressOutput = TextWriter.Null }.Run();
        Assert.False(full.Interrupted);
        // Stopped after step 3 of VL pre-training (StopAt saves a checkpoint at the step it stops at, as a kill
        // right after a checkpoint leaves it).
        var part = new WorldPipeline(o with { StopAt = ("vl-pretrain", 3) }, b, TextWriter.Null) { ProgressOutput = TextWriter.Null }.Run();
        Assert.True(part.Interrupted);
        Assert.False(File.Exists(Path.Combine(b, "metrics.json")));
        var resumed = new WorldPipeline(o with { Resume = true }, b, TextWriter.Null) { ProgressOutput = TextWriter.Null }.Run();
        Assert.False(resumed.Interrupted);
        Assert.Contains(resumed.Stages, s => s.Stage == "text-mlm" && s.Skipped);
        foreach (var model in new[] { "pretrained", "vqa", "retrieval" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, "models", model, "model.safetensors")),
                File.ReadAllBytes(Path.Combine(b, "models", model, "model.safetensors")));
        // Evaluation results agree exactly (stage timings aside).
        static string Metrics(string d)
        {
            var n = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(d, "metrics.json")))!.AsObject();
            n.Remove("stages");
            return n.ToJsonString();
        }
        Assert.Equal(Metrics(a), Metrics(b));
        // The metrics log holds each step once, as the uninterrupted run's does.
        static string[] Steps(string d) => File.ReadAllLines(Path.Combine(d, "metrics.jsonl")).Select(l => l[..l.IndexOf(",\"", l.IndexOf("\"step\"", StringComparison.Ordinal), StringComparison.Ordinal)]).ToArray();
        Assert.Equal(Steps(a), Steps(b));
    }
}

public sealed class MinimalPositiveTests
{
    /// <summary>Every hard negative of many scenes maps back to a caption that is true of its scene and differs
    /// from the negative (checked against the scene's own claims).</summary>
    [Fact]
    public void MinimalPositivesAreTrueAndDifferOnlyInTheTestedAttribute()
    {
        var gen = new Vlm.Training.World.WorldGenerator(11);
        int built = 0;
        for (int id = 0; id < 200; id++)
        {
            var scene = gen.SampleScene(id);
            var text = gen.Describe(scene);
            foreach (var neg in text.Negatives)
            {
                var n = new ItmNegative(id, "x.png", neg.Caption, Vlm.Training.World.WorldDataset.KindName(neg.Kind));
                var pos = WorldPipeline.MinimalPositive(n, scene);
                Assert.NotNull(pos);
                Assert.NotEqual(neg.Caption, pos);
                if (n.Kind is "colour_swap" or "relation_reversed") Assert.Equal(neg.Caption.Split(' ').Length, pos!.Split(' ').Length);
                Assert.True(Holds(pos!, scene), $"{n.Kind}: '{pos}' (from '{neg.Caption}') is not true of scene {id}");
                built++;
            }
        }
        Assert.True(built > 400);
    }

    // An independent check of the caption forms the minimal positives take.
    private static bool Holds(string caption, Vlm.Training.World.Scene s)
    {
        var colours = Enum.GetValues<Vlm.Training.World.Colour>().ToDictionary(Vlm.Training.World.Words.Of);
        var shapes = Enum.GetValues<Vlm.Training.World.Shape>().ToDictionary(Vlm.Training.World.Words.Of);
        var w = caption.Split(' ');
        if (w[0] == "exactly" || !caption.StartsWith("a ", StringComparison.Ordinal))
        {
            var plural = Enum.GetValues<Vlm.Training.World.Shape>().ToDictionary(Vlm.Training.World.Words.Plural);
            int n = w[0] == "exactly" ? 1 : Array.IndexOf(new[] { "zero", "one", "two", "three", "four", "five", "six" }, w[0]);
            var sh = w[0] == "exactly" ? shapes[w[^1]] : plural[w[^1]];
            return s.Count(sh) == n;
        }
        var rels = new[] { ("left of", Vlm.Training.World.Relation.LeftOf), ("right of", Vlm.Training.World.Relation.RightOf), ("above", Vlm.Training.World.Relation.Above), ("below", Vlm.Training.World.Relation.Below) };
        foreach (var (phrase, rel) in rels)
        {
            int at = caption.IndexOf(" " + phrase + " ", StringComparison.Ordinal);
            if (at < 0) continue;
            var a = caption[..at].Split(' '); var b = caption[(at + phrase.Length + 2)..].Split(' ');
            var sa = new Vlm.Training.World.Spec(shapes[a[^1]], colours[a[^2]], null);
            var sb = new Vlm.Training.World.Spec(shapes[b[^1]], colours[b[^2]], null);
            return new Vlm.Training.World.RelationClaim(sa, rel, sb).Holds(s);
        }
        if (caption.Contains(" and ", StringComparison.Ordinal))
            return caption.Split(" and ").All(part => { var p = part.Split(' '); return s.Objects.Any(o => o.Colour == colours[p[^2]] && o.Shape == shapes[p[^1]]); });
        return s.Objects.Any(o => o.Colour == colours[w[^2]] && o.Shape == shapes[w[^1]]);
    }
}
