// The main job on the embedded synthetic world: generate the world in the standard dataset formats, train a BPE
// tokenizer on its captions, pre-train a small BridgeTower as the paper does (uni-modal stages first: text tower
// by MLM, vision tower by attribute classification; then MLM + ITM + ITC on image-text pairs), fine-tune VQA and
// retrieval from the pre-trained weights, and evaluate on held-out scenes against chance / majority baselines.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.Eval;
using Vlm.Training.Model;
using Vlm.Training.Text;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;
using Vlm.Vision.Processing;

namespace Vlm.Training.Training;

public sealed record WorldRunOptions
{
    public ulong Seed { get; init; }
    public int TrainScenes { get; init; } = 2000;
    public int ValScenes { get; init; } = 20;
    public int TestScenes { get; init; } = 200;
    public int ImageSize { get; init; } = 64;
    public int PatchSize { get; init; } = 16;
    public int Hidden { get; init; } = 128;
    public int TowerLayers { get; init; } = 2;
    public int CrossLayers { get; init; } = 2;
    public int BatchSize { get; init; } = 32;
    public int Accumulate { get; init; } = 1;
    public int TextMlmSteps { get; init; } = 400;
    public int VisionSteps { get; init; } = 600;
    public int PretrainSteps { get; init; } = 400;
    public int VqaSteps { get; init; } = 500;
    public int RetrievalSteps { get; init; } = 150;
    public double LearningRate { get; init; } = 2e-4;
    /// <summary>Learning rate of the uni-modal stages (text MLM, vision attributes): their towers start from scratch
    /// and get no ×5 (at 2e-4 the vision tower's attribute loss is still falling steeply after 600 steps).</summary>
    public double UniModalLearningRate { get; init; } = 1e-3;
    /// <summary>Pre-training ITM negatives sampled by ITC similarity instead of uniformly.</summary>
    public bool ItcHardNegatives { get; init; }
    /// <summary>Skip the uni-modal stages (the VL stage starts from random towers).</summary>
    public bool FromScratch { get; init; }
    public int CheckpointEvery { get; init; } = 50;
    public int EvalImages { get; init; } = 100;
    public int RerankK { get; init; } = 10;
    public int MaxTextLength { get; init; } = 40;
    public bool Resume { get; init; }
    /// <summary>Stop after this many optimizer steps of the named stage (simulated kill, for tests).</summary>
    public (string Stage, long Step)? StopAt { get; init; }
}

public sealed record ItmNegative(int ImageId, string ImagePath, string Caption, string Kind);

public sealed record HeldOutExample(string Image, string Question, string Answer, string Predicted, IReadOnlyList<string> TopCaptions);

public sealed record WorldReport
{
    public required Dictionary<string, double> ItmByKind { get; init; }
    public required double ItmOverall { get; init; }
    public required Dictionary<string, double> VqaByCategory { get; init; }
    public required Dictionary<string, double> VqaMajorityByCategory { get; init; }
    public required Dictionary<string, int> VqaCountByCategory { get; init; }
    public required double VqaAccuracy { get; init; }
    public required double VqaMajority { get; init; }
    public required Dictionary<string, double> Retrieval { get; init; }
    public required int RetrievalImages { get; init; }
    public required List<HeldOutExample> Examples { get; init; }
    public required List<StageResult> Stages { get; init; }
    public required string ModelDir { get; init; }
    public bool Interrupted { get; init; }
}

public sealed class WorldPipeline(WorldRunOptions o, string outDir, TextWriter? log = null)
{
    private readonly TextWriter _log = log ?? Console.Error;
    public TextWriter? ProgressOutput { get; init; }
    public const int NumAttributes = TrainingModels.NumAttributes;

    private WorldGenerator _gen = null!;
    private TextCollator _text = null!;
    private PixelCache _pixels = null!;
    private string _tokDir = null!;
    private List<ImageCaption> _trainPairs = null!, _testPairs = null!;
    private List<ItmNegative> _trainNeg = null!, _testNeg = null!;
    private List<VqaItem> _trainVqa = null!, _testVqa = null!;
    private Dictionary<int, List<(ItmNegative Negative, string Positive)>> _negByImage = null!;
    private List<string> _answers = null!;
    private Dictionary<string, int> _answerIndex = null!;
    private Dictionary<int, float[]> _attributes = null!;

    public WorldReport Run()
    {
        Directory.CreateDirectory(outDir);
        var worldDir = Path.Combine(outDir, "world");
        _gen = new WorldGenerator(o.Seed, new WorldOptions { MinImageSize = o.ImageSize, MaxImageSize = o.ImageSize });
        var splits = new WorldSplits(o.TrainScenes, o.ValScenes, o.TestScenes);
        if (!(o.Resume && File.Exists(Path.Combine(worldDir, "dataset_karpathy.json"))))
        {
            using var bar = new Pipeline.ProgressBar("world", o.TrainScenes + o.ValScenes + o.TestScenes, "scene", ProgressOutput);
            WorldDataset.Write(worldDir, _gen, splits, (p, rgb, w, h) => PngEncoder.Save(new Image(w, h, PixelMode.RGB, rgb), p),
                new Progress<int>(n => bar.Report(n)));
            new WorldInfo(o.Seed, o.ImageSize, o.TrainScenes, o.ValScenes, o.TestScenes).Save(worldDir);
        }
        LoadData(worldDir);

        _tokDir = Path.Combine(outDir, "tokenizer");
        int vocab = WorldBpe.TrainAndSave(_trainPairs.Select(p => p.Caption).Concat(_trainVqa.Select(q => q.Question)), _tokDir);
        var tok = AutoTokenizer.FromFolder(_tokDir);
        _text = new TextCollator(tok, o.MaxTextLength);
        _log.WriteLine($"tokenizer: byte-level BPE, {vocab} entries, saved to {_tokDir}");
        File.WriteAllText(Path.Combine(outDir, "preprocessor_config.json"), Checkpoint.PreprocessorJson(o.ImageSize));
        _pixels = new PixelCache((BridgeTowerImageProcessor)ImageProcessorBase.FromConfigFile(Path.Combine(outDir, "preprocessor_config.json")));

        var config = MakeConfig(tok.VocabSize, tok.PadId);
        var model = new MultiTaskBridgeTower(config, new Rng(o.Seed ^ 0xB7), NumAttributes);
        _log.WriteLine($"model: BridgeTower, {model.Parameters.NumElements:N0} parameters (hidden {o.Hidden}, {o.TowerLayers} layers per tower, {o.CrossLayers} cross-modal, {o.ImageSize} px / patch {o.PatchSize})");
        var trainer = new BridgeTowerTrainer(model, outDir, _tokDir, o.ImageSize, o.Resume, _log) { ProgressOutput = ProgressOutput };
        var stages = new List<StageResult>();

        if (!o.FromScratch)
        {
            if (!Stage(stages, trainer.Run(Opt("text-mlm", o.TextMlmSteps, o.UniModalLearningRate), MakeTextMlm, b => TextMlmStep(model, b)))) return Partial(stages);
            if (!Stage(stages, trainer.Run(Opt("vision-attributes", o.VisionSteps, o.UniModalLearningRate), MakeAttr, b => AttrStep(model, b)))) return Partial(stages);
        }
        if (!Stage(stages, trainer.Run(Opt("vl-pretrain", o.PretrainSteps), MakePretrain, b => PretrainStep(model, b, o.ItcHardNegatives)))) return Partial(stages);
        Checkpoint.WriteModelFiles(Path.Combine(outDir, "models", "pretrained"), model, _tokDir, o.ImageSize);
        var pretrained = BridgeTowerTrainer.Snapshot(model);

        if (!Stage(stages, trainer.Run(Opt("vqa-finetune", o.VqaSteps), MakeVqa, b => VqaStep(model, b)))) return Partial(stages);
        var vqaDir = Path.Combine(outDir, "models", "vqa");
        Checkpoint.WriteModelFiles(vqaDir, model, _tokDir, o.ImageSize);
        var (vqaByCat, vqaMaj, vqaCount, vqaAcc, vqaMajAll, vqaPreds) = EvalVqa(model);

        BridgeTowerTrainer.Restore(model, pretrained);
        if (!Stage(stages, trainer.Run(Opt("retrieval-finetune", o.RetrievalSteps), MakeRetrieval, b => RetrievalStep(model, b)))) return Partial(stages);
        var retDir = Path.Combine(outDir, "models", "retrieval");
        Checkpoint.WriteModelFiles(retDir, model, _tokDir, o.ImageSize);
        var (itmByKind, itmAll) = EvalItmHardNegatives(model);
        var (recall, images, topCaps) = EvalRetrieval(model);

        var examples = new List<HeldOutExample>();
        foreach (var (imageId, caps) in topCaps.Take(3))
        {
            var q = _testVqa.FirstOrDefault(v => v.ImageId == imageId);
            examples.Add(new HeldOutExample(Path.GetRelativePath(outDir, ImagePathOf(imageId)), q?.Question ?? "", q?.Answers[0] ?? "",
                q is null ? "" : vqaPreds[q.QuestionId], caps));
        }
        WriteCurves();
        var report = new WorldReport
        {
            ItmByKind = itmByKind, ItmOverall = itmAll, VqaByCategory = vqaByCat, VqaMajorityByCategory = vqaMaj, VqaCountByCategory = vqaCount,
            VqaAccuracy = vqaAcc, VqaMajority = vqaMajAll, Retrieval = recall, RetrievalImages = images, Examples = examples, Stages = stages,
            ModelDir = retDir,
        };
        WriteMetricsJson(report);
        return report;
    }

    private WorldReport Partial(List<StageResult> stages) => new()
    {
        ItmByKind = [], ItmOverall = double.NaN, VqaByCategory = [], VqaMajorityByCategory = [], VqaCountByCategory = [], VqaAccuracy = double.NaN,
        VqaMajority = double.NaN, Retrieval = [], RetrievalImages = 0, Examples = [], Stages = stages, ModelDir = "", Interrupted = true,
    };

    private static bool Stage(List<StageResult> list, StageResult r) { list.Add(r); return r.Completed; }

    private StageOptions Opt(string name, int steps, double? lr = null) => new()
    {
        Name = name, Steps = steps, LearningRate = lr ?? o.LearningRate, Accumulate = o.Accumulate, CheckpointEvery = o.CheckpointEvery,
        ExamplesPerBatch = o.BatchSize, StopAfterStep = o.StopAt is { } s && s.Stage == name ? s.Step : null,
    };

    private BridgeTowerConfig MakeConfig(int vocab, int pad) =>
        TrainingModels.SmallConfig(o.Hidden, o.TowerLayers, o.CrossLayers, o.PatchSize, o.ImageSize, vocab, pad, o.MaxTextLength, _answers);

    // ---------------------------------------------------------------- data

    private Dictionary<int, string> _imagePaths = null!;
    private string ImagePathOf(int id) => _imagePaths[id];

    private void LoadData(string dir)
    {
        _trainPairs = DatasetFormats.ReadPairsJsonl(Path.Combine(dir, "pairs_train.jsonl"), dir);
        _testPairs = DatasetFormats.ReadPairsJsonl(Path.Combine(dir, "pairs_test.jsonl"), dir);
        _imagePaths = new();
        foreach (var split in new[] { "train", "val", "test" })
            foreach (var c in DatasetFormats.ReadCocoCaptions(Path.Combine(dir, $"captions_{split}.json"), dir)) _imagePaths[c.ImageId] = c.ImagePath;
        _trainNeg = ReadNegatives(Path.Combine(dir, "itm_negatives_train.jsonl"), dir);
        _testNeg = ReadNegatives(Path.Combine(dir, "itm_negatives_test.jsonl"), dir);
        _negByImage = PairWithMinimalPositives(_trainNeg, _gen.SampleScene);
        _trainVqa = DatasetFormats.ReadVqa(Path.Combine(dir, "questions_train.json"), Path.Combine(dir, "annotations_train.json"), ImagePathOf);
        _testVqa = DatasetFormats.ReadVqa(Path.Combine(dir, "questions_test.json"), Path.Combine(dir, "annotations_test.json"), ImagePathOf);
        _answers = _trainVqa.SelectMany(q => q.Answers).Select(Eval.VqaScore.Normalize).Distinct().OrderBy(a => a, StringComparer.Ordinal).ToList();
        _answerIndex = _answers.Select((a, i) => (a, i)).ToDictionary(x => x.a, x => x.i);
        // Attribute targets for uni-modal vision pre-training come from the world's scene description.
        _attributes = _trainPairs.Select(p => p.ImageId).Distinct().ToDictionary(id => id, id => Attributes(_gen.SampleScene(id)));
        _log.WriteLine($"world: {o.TrainScenes} train / {o.TestScenes} test scenes, {_trainPairs.Count} train captions, {_trainVqa.Count} train questions, {_answers.Count} answers, {_trainNeg.Count} train hard negatives");
    }

    public static List<ItmNegative> ReadNegatives(string path, string root)
    {
        var list = new List<ItmNegative>();
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            try
            {
                var e = JsonNode.Parse(l)!;
                list.Add(new ItmNegative(e["image_id"]!.GetValue<int>(), Path.Combine(root, e["image"]!.GetValue<string>()),
                    e["caption"]!.GetValue<string>(), e["kind"]!.GetValue<string>()));
            }
            catch (Exception ex) when (ex is JsonException or NullReferenceException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{line}: not an ITM negative record (image, image_id, caption, kind): {ex.Message}");
            }
        }
        return list;
    }

    private static float[] Attributes(Scene s)
    {
        var t = new float[NumAttributes];
        foreach (var ob in s.Objects)
        {
            t[(int)ob.Shape] = 1;
            t[5 + (int)ob.Colour] = 1;
            t[13 + (int)ob.Shape * 8 + (int)ob.Colour] = 1;
            t[53 + (int)ob.Size] = 1;
        }
        return t;
    }

    private T[] Pick<T>(IReadOnlyList<T> from, Rng rng) => TaskBatches.Pick(from, o.BatchSize, rng);

    private Rng RngFor(string stage, long step, int micro) => StepRng.For(o.Seed, stage, step * 64 + micro);

    // ---------------------------------------------------------------- stages

    public sealed record MlmBatch(TextBatch Text, Tensor Masked, Tensor Labels);

    private MlmBatch MakeTextMlm(long step, int micro)
    {
        var rng = RngFor("text-mlm", step, micro);
        var t = _text.Encode(Pick(_trainPairs, rng).Select(p => p.Caption).ToList());
        var (m, l) = _text.Mask(t, rng);
        return new MlmBatch(t, m, l);
    }

    public static StepOutput TextMlmStep(MultiTaskBridgeTower model, MlmBatch b)
    {
        var (loss, acc) = Objectives.Mlm(model.MlmLogits(model.TextTower(b.Masked, b.Text.Mask)), b.Labels);
        return new StepOutput(loss, new Dictionary<string, double> { ["mlm_loss"] = loss.Item(), ["mlm_acc"] = acc });
    }

    public sealed record AttrBatch(Tensor Pixels, Tensor Targets);

    private AttrBatch MakeAttr(long step, int micro)
    {
        var rng = RngFor("vision-attributes", step, micro);
        var pairs = Pick(_trainPairs, rng);
        var targets = new float[pairs.Length * NumAttributes];
        for (int i = 0; i < pairs.Length; i++) _attributes[pairs[i].ImageId].CopyTo(targets, i * NumAttributes);
        return new AttrBatch(_pixels.Batch(pairs.Select(p => p.ImagePath).ToList()), Tensor.FromArray(targets, pairs.Length, NumAttributes));
    }

    public static StepOutput AttrStep(MultiTaskBridgeTower model, AttrBatch b)
    {
        var logits = model.AttributeLogits(b.Pixels);
        var loss = F.BinaryCrossEntropyWithLogits(logits, b.Targets);
        var p = logits.ToArray(); var t = b.Targets.ToArray();
        int ok = 0;
        for (int i = 0; i < p.Length; i++) if ((p[i] > 0) == (t[i] > 0.5f)) ok++;
        return new StepOutput(loss, new Dictionary<string, double> { ["attr_loss"] = loss.Item(), ["attr_acc"] = ok / (double)p.Length });
    }

    public sealed record PretrainBatch(TextBatch Text, Tensor Masked, Tensor Labels, Tensor Pixels, int[] ImageIds, bool[] Negative, Rng Rng);

    private PretrainBatch MakePretrain(long step, int micro)
    {
        var rng = RngFor("vl-pretrain", step, micro);
        return TaskBatches.Pretrain(_text, _pixels, Pick(_trainPairs, rng), rng);
    }

    /// <summary>MLM + ITM + ITC on one batch; ITM negatives are ITC-sampled with <paramref name="itcHardNegatives"/>, else uniform.</summary>
    public static StepOutput PretrainStep(MultiTaskBridgeTower model, PretrainBatch b, bool itcHardNegatives)
    {
        // MLM and ITC on (masked caption, its image); the contrastive text embedding therefore sees the masked
        // caption, a cheap stand-in for a third forward pass on the clean one.
        var oa = model.Forward(b.Masked, b.Text.Mask, b.Pixels);
        var (mlm, mlmAcc) = Objectives.Mlm(model.MlmLogits(oa.TextFeatures), b.Labels);
        var e = model.Itc(oa);
        var itc = Objectives.Itc(e, model.LogitScale);
        int n = b.ImageIds.Length;
        int[] negIdx;
        if (itcHardNegatives)
        {
            float[] sims;
            using (Tensor.NoGrad()) sims = e.Text.Detach().MatMul(e.Image.Detach().T).ToArray();
            negIdx = Objectives.SampleHardNegatives(sims, n, b.ImageIds, b.Rng);
        }
        else negIdx = Objectives.RandomNegatives(n, b.ImageIds, b.Rng);
        var rows = Enumerable.Range(0, n).Select(i => b.Negative[i] ? negIdx[i] : i).ToArray();
        var ob = model.Forward(b.Text.Ids, b.Text.Mask, Objectives.Rows(b.Pixels, rows));
        var (itm, itmAcc) = Objectives.Itm(model.ItmLogits(ob), b.Negative.Select(x => x ? 0L : 1L).ToArray());
        var loss = mlm.Add(itm).Add(itc);
        return new StepOutput(loss, new Dictionary<string, double>
        {
            ["loss"] = loss.Item(), ["mlm_loss"] = mlm.Item(), ["itm_loss"] = itm.Item(), ["itc_loss"] = itc.Item(), ["mlm_acc"] = mlmAcc, ["itm_acc"] = itmAcc,
        });
    }

    public sealed record VqaBatch(TextBatch Text, Tensor Pixels, Tensor Targets, float[] TargetArray);

    private VqaBatch MakeVqa(long step, int micro) =>
        TaskBatches.Vqa(_text, _pixels, Pick(_trainVqa, RngFor("vqa-finetune", step, micro)), _answerIndex);

    public static StepOutput VqaStep(MultiTaskBridgeTower model, VqaBatch b)
    {
        var o = model.Forward(b.Text.Ids, b.Text.Mask, b.Pixels);
        var logits = model.VqaLogits(o);
        int a = logits.Size(1);
        // ViLT / METER: BCE-with-logits on soft scores, times the number of answers.
        var loss = F.BinaryCrossEntropyWithLogits(logits, b.Targets).Mul(a);
        long[] pred;
        using (Tensor.NoGrad()) pred = logits.ArgMax(1).ToInt64Array();
        double score = 0;
        for (int i = 0; i < pred.Length; i++) score += b.TargetArray[i * a + pred[i]];
        return new StepOutput(loss, new Dictionary<string, double> { ["vqa_loss"] = loss.Item(), ["vqa_acc"] = score / pred.Length });
    }

    /// <summary>Texts (B, ·) for ITC and the ITM positives; <paramref name="ItmText"/> (B + B/2, ·): the world's hard-negative
    /// captions of the first half's images, the second half's own captions (to pair with other images), then the first
    /// half's minimal positives.</summary>
    public sealed record RetrievalBatch(TextBatch Text, TextBatch ItmText, Tensor Pixels, int[] ImageIds, Rng Rng);

    private RetrievalBatch MakeRetrieval(long step, int micro)
    {
        var rng = RngFor("retrieval-finetune", step, micro);
        return TaskBatches.Retrieval(_text, _pixels, Pick(_trainPairs, rng), _negByImage, _trainPairs, rng);
    }

    public static StepOutput RetrievalStep(MultiTaskBridgeTower model, RetrievalBatch b)
    {
        int n = b.ImageIds.Length, half = n / 2;
        var oa = model.Forward(b.Text.Ids, b.Text.Mask, b.Pixels);
        var e = model.Itc(oa);
        var itc = Objectives.Itc(e, model.LogitScale);
        float[] sims;
        using (Tensor.NoGrad()) sims = e.Text.Detach().MatMul(e.Image.Detach().T).ToArray();
        var hard = Objectives.SampleHardNegatives(sims, n, b.ImageIds, b.Rng);
        // Balanced ITM: the first half contrasts two captions on one image (hard negative vs its minimal positive), the
        // second half one caption on two images (its own vs an ITC-sampled hard-negative image).
        var rows = Enumerable.Range(0, n).Select(i => i < half ? i : hard[i]).Concat(Enumerable.Range(0, half)).ToArray();
        var ob = model.Forward(b.ItmText.Ids, b.ItmText.Mask, Objectives.Rows(b.Pixels, rows));
        var logits = Tensor.Cat([model.ItmLogits(oa).Narrow(0, half, n - half), model.ItmLogits(ob)], 0);
        var labels = Enumerable.Repeat(1L, n - half).Concat(Enumerable.Repeat(0L, n)).Concat(Enumerable.Repeat(1L, half)).ToArray();
        var (itm, acc) = Objectives.Itm(logits, labels);
        var loss = itm.Add(itc);
        return new StepOutput(loss, new Dictionary<string, double> { ["loss"] = loss.Item(), ["itm_loss"] = itm.Item(), ["itc_loss"] = itc.Item(), ["itm_acc"] = acc });
    }

    // ---------------------------------------------------------------- evaluation

    private Evaluator NewEvaluator(MultiTaskBridgeTower model) => new(model, _text, _pixels, ProgressOutput);

    private (Dictionary<string, double>, Dictionary<string, double>, Dictionary<string, int>, double, double, Dictionary<int, string>) EvalVqa(MultiTaskBridgeTower model)
    {
        var r = NewEvaluator(model).Vqa(_testVqa, _answers, _trainVqa);
        return (r.ByType, r.MajorityByType, r.CountByType, r.Accuracy, r.Majority, r.Predictions);
    }

    /// <summary>Balanced binary ITM accuracy per hard-negative kind on held-out images: each negative caption beside
    /// its minimally different true caption (the colours swapped back, the relation reversed back, the true count, a
    /// present object), so the two differ only in the attribute under test and sentence form gives nothing away;
    /// "match" when P(match) > 0.5. Chance is 50 %.</summary>
    private (Dictionary<string, double>, double) EvalItmHardNegatives(MultiTaskBridgeTower model)
    {
        var firstCaption = _testPairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.First().Caption);
        var negs = _testNeg.Where(n => firstCaption.ContainsKey(n.ImageId)).ToList();
        var positives = negs.Select(n => MinimalPositive(n, _gen.SampleScene(n.ImageId)) ?? firstCaption[n.ImageId]).ToList();
        var r = NewEvaluator(model).ItmHardNegatives(negs, positives);
        return (r.ByKind, r.Overall);
    }

    /// <summary>Each hard negative with the true caption it was made from (<see cref="MinimalPositive"/>), by image;
    /// negatives without one are left out. These are the pairs the retrieval stage's ITM contrasts.</summary>
    public static Dictionary<int, List<(ItmNegative Negative, string Positive)>> PairWithMinimalPositives(IEnumerable<ItmNegative> negatives, Func<int, Scene> scene) =>
        negatives.Select(n => (n, pos: MinimalPositive(n, scene(n.ImageId)))).Where(x => x.pos != null)
            .GroupBy(x => x.n.ImageId).ToDictionary(g => g.Key, g => g.Select(x => (x.n, x.pos!)).ToList());

    /// <summary>The true caption a hard negative was made from (same words but the attribute under test), or null.</summary>
    public static string? MinimalPositive(ItmNegative n, Scene scene)
    {
        var w = n.Caption.Split(' ').ToList();
        var colours = Enum.GetValues<Colour>().Select(Words.Of).ToHashSet();
        switch (n.Kind)
        {
            case "colour_swap":
            {
                var idx = Enumerable.Range(0, w.Count).Where(i => colours.Contains(w[i])).ToList();
                if (idx.Count != 2) return null;
                (w[idx[0]], w[idx[1]]) = (w[idx[1]], w[idx[0]]);
                return string.Join(' ', w);
            }
            case "relation_reversed":
            {
                string c = " " + n.Caption + " ";
                foreach (var (a, b) in new[] { (" left of ", " right of "), (" right of ", " left of "), (" above ", " below "), (" below ", " above ") })
                    if (c.Contains(a, StringComparison.Ordinal)) return c.Replace(a, b, StringComparison.Ordinal).Trim();
                return null;
            }
            case "count_changed":
            {
                var last = w[^1];
                foreach (var sh in Enum.GetValues<Shape>())
                    if (last == Words.Of(sh) || last == Words.Plural(sh))
                    {
                        int k = scene.Count(sh);
                        return k == 0 ? null : k == 1 ? $"exactly one {Words.Of(sh)}" : $"{Words.Number(k)} {Words.Plural(sh)}";
                    }
                return null;
            }
            case "absent_object":
                return scene.Objects.Count == 0 ? null : $"a {Words.Of(scene.Objects[0].Colour)} {Words.Of(scene.Objects[0].Shape)}";
            default:
                return null;
        }
    }

    /// <summary>Retrieval over the first N held-out images and one caption each: ITC similarities, then the top-k of
    /// each query re-ranked by ITM. Returns R@1/5/10 both ways (ITC alone and re-ranked).</summary>
    private (Dictionary<string, double>, int, List<(int, List<string>)>) EvalRetrieval(MultiTaskBridgeTower model)
    {
        var imgs = _testPairs.GroupBy(p => p.ImageId).Take(o.EvalImages).Select(g => g.First()).ToList();
        var r = NewEvaluator(model).Retrieval(imgs.Select(x => x.ImagePath).ToList(), imgs.Select((x, i) => (x.Caption, i)).ToList(), o.RerankK);
        var tops = Enumerable.Range(0, Math.Min(3, imgs.Count)).Select(i => (imgs[i].ImageId, r.TopTexts(i, 3).Select(t => imgs[t].Caption).ToList())).ToList();
        return (r.Recall, imgs.Count, tops);
    }

    // ---------------------------------------------------------------- outputs

    private void WriteCurves() => Plot.Curves.Write(outDir);

    private void WriteMetricsJson(WorldReport r)
    {
        static JsonObject Obj(Dictionary<string, double> d) { var o = new JsonObject(); foreach (var (k, v) in d) o[k] = Math.Round(v, 4); return o; }
        var m = new JsonObject
        {
            ["itm_hard_negative_accuracy"] = Math.Round(r.ItmOverall, 4),
            ["itm_hard_negative_accuracy_by_kind"] = Obj(r.ItmByKind),
            ["itm_chance"] = 0.5,
            ["vqa_accuracy"] = Math.Round(r.VqaAccuracy, 4),
            ["vqa_majority_baseline"] = Math.Round(r.VqaMajority, 4),
            ["vqa_accuracy_by_category"] = Obj(r.VqaByCategory),
            ["vqa_majority_baseline_by_category"] = Obj(r.VqaMajorityByCategory),
            ["retrieval_t2i_r1"] = Math.Round(r.Retrieval["t2i_r1"], 4),
            ["retrieval_i2t_r1"] = Math.Round(r.Retrieval["i2t_r1"], 4),
            ["retrieval_chance_r1"] = Math.Round(r.Retrieval["chance_r1"], 4),
            ["retrieval"] = Obj(r.Retrieval),
            ["retrieval_images"] = r.RetrievalImages,
            ["model_dir"] = Path.GetRelativePath(outDir, r.ModelDir),
            ["models"] = new JsonObject { ["pretrained"] = "models/pretrained", ["vqa"] = "models/vqa", ["retrieval"] = "models/retrieval" },
            ["curves"] = "curves",
            ["seed"] = o.Seed,
            ["stages"] = new JsonArray(r.Stages.Select(s => (JsonNode)new JsonObject
            {
                ["stage"] = s.Stage, ["steps"] = s.Steps, ["seconds"] = Math.Round(s.Seconds, 1), ["skipped"] = s.Skipped,
            }).ToArray()),
        };
        Directory.CreateDirectory(outDir);
        AtomicFile.WriteAllText(Path.Combine(outDir, "metrics.json"), m.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
