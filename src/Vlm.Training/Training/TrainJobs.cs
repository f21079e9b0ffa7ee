// Single training stages on any dataset folder in the standard formats (the `vlm pretrain` and `vlm finetune`
// commands): VL pre-training (MLM + ITM + ITC) on image-text pairs, and VQA / retrieval / NLVR2 fine-tuning from an
// HF BridgeTower folder. They run the same trainer, batches and objectives as the world pipeline, and write the
// same run layout: checkpoints/{stage}/step-N|final (resumable), model/ (HF folder), metrics.jsonl, curves/*.png.
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Tokenizers;
using Vlm.Training.Data;
using Vlm.Training.Model;
using Vlm.Training.Text;
using Vlm.Vision.Processing;

namespace Vlm.Training.Training;

public enum FinetuneTask { Vqa, Retrieval, Nlvr2 }

public sealed record TrainJobOptions
{
    public required string Data { get; init; }
    public required string Out { get; init; }
    /// <summary>HF BridgeTower folder to start from (required for fine-tuning).</summary>
    public string? Model { get; init; }
    /// <summary>config.json of a fresh model (pre-training without <see cref="Model"/>); vocabulary from the tokenizer.</summary>
    public string? Config { get; init; }
    /// <summary>Tokenizer folder for a fresh model; default: a byte-level BPE trained on the training captions.</summary>
    public string? Tokenizer { get; init; }
    public string Split { get; init; } = "train";
    public int Steps { get; init; } = 200;
    public int BatchSize { get; init; } = 16;
    public int Accumulate { get; init; } = 1;
    public double LearningRate { get; init; } = 2e-4;
    public ulong Seed { get; init; }
    public bool Resume { get; init; }
    public bool ItcHardNegatives { get; init; }
    public int CheckpointEvery { get; init; } = 50;
    public int MaxTextLength { get; init; } = 40;
    /// <summary>Image size of a fresh model (the default small config).</summary>
    public int ImageSize { get; init; } = 64;
    /// <summary>VQA answer vocabulary: the most frequent normalised training answers (the paper's 3,129).</summary>
    public int MaxAnswers { get; init; } = 3129;
    public string? ImagePattern { get; init; }
    /// <summary>Stop after this step as if killed (resume tests).</summary>
    public long? StopAfterStep { get; init; }
}

public sealed record TrainJobResult(StageResult Stage, string ModelDir, int Examples, int Parameters, IReadOnlyList<string> FreshHeads, IReadOnlyList<string> Curves);

public static class TrainJobs
{
    public const string PretrainStage = "vl-pretrain";

    public static string StageName(FinetuneTask t) => t switch
    {
        FinetuneTask.Vqa => "vqa-finetune",
        FinetuneTask.Retrieval => "retrieval-finetune",
        _ => "nlvr2-finetune",
    };

    /// <summary>Text collator and pixel cache for a model: the tokenizer in <paramref name="tokenizerDir"/>, the
    /// preprocessor_config.json of <paramref name="modelDir"/> (or, without one, BridgeTower's at the config's image size).</summary>
    public static (TextCollator Text, PixelCache Pixels) Inputs(string tokenizerDir, string? modelDir, BridgeTowerConfig config, int maxTextLength)
    {
        var tok = AutoTokenizer.FromFolder(tokenizerDir);
        // RoBERTa positions start after the padding id, so a sequence may hold max_position_embeddings - pad - 1 tokens.
        int max = Math.Min(maxTextLength, config.TextConfig.MaxPositionEmbeddings - config.TextConfig.PadTokenId - 1);
        if (tok.VocabSize > config.TextConfig.VocabSize)
            throw new InvalidDataException($"{tokenizerDir}: the tokenizer has {tok.VocabSize} entries but the model's vocab_size is {config.TextConfig.VocabSize}");
        var pre = modelDir is null ? null : Path.Combine(modelDir, "preprocessor_config.json");
        ImageProcessorBase proc;
        if (pre != null && File.Exists(pre)) proc = ImageProcessorBase.FromConfigFile(pre);
        else
        {
            using var d = System.Text.Json.JsonDocument.Parse(Checkpoint.PreprocessorJson(config.VisionConfig.ImageSize));
            proc = ImageProcessorBase.FromJson(d.RootElement);
        }
        return (new TextCollator(tok, max), new PixelCache(proc as BridgeTowerImageProcessor
            ?? throw new InvalidDataException($"{pre}: not a BridgeTowerImageProcessor config")));
    }

    public static TrainJobResult Pretrain(TrainJobOptions o, TextWriter log, TextWriter? progress = null)
    {
        var data = new DatasetFolder(o.Data) { ImagePattern = o.ImagePattern };
        var pairs = data.Pairs(o.Split);
        DatasetFolder.CheckImagesExist(pairs.Select(p => p.ImagePath));
        PrepareOut(o, PretrainStage);
        MultiTaskBridgeTower model;
        string tokDir;
        var fresh = new List<string>();
        if (o.Model != null)
        {
            var lm = TrainingModels.FromFolder(o.Model, o.Seed ^ 0xB7);
            (model, tokDir) = (lm.Model, o.Model);
            fresh.AddRange(lm.FreshHeads);
        }
        else
        {
            tokDir = o.Tokenizer ?? Path.Combine(o.Out, "tokenizer");
            if (o.Tokenizer == null) WorldBpe.TrainAndSave(pairs.Select(p => p.Caption), tokDir);
            var tok = AutoTokenizer.FromFolder(tokDir);
            var config = o.Config != null
                ? FitToTokenizer(BridgeTowerConfig.Load(o.Config), tok, o.MaxTextLength)
                : TrainingModels.SmallConfig(128, 2, 2, 16, o.ImageSize, tok.VocabSize, tok.PadId, o.MaxTextLength, null);
            model = new MultiTaskBridgeTower(config, new Rng(o.Seed ^ 0xB7), TrainingModels.NumAttributes);
        }
        var (text, pixels) = Inputs(tokDir, o.Model, model.Config, o.MaxTextLength);
        log.WriteLine($"pre-training on {pairs.Count} pairs ({pairs.Select(p => p.ImageId).Distinct().Count()} images) from {o.Data}; model: {model.Parameters.NumElements:N0} parameters");
        return RunStage(o, model, tokDir, pixels.Size, PretrainStage, fresh, log, progress,
            (s, m) => { var rng = Rng(o, PretrainStage, s, m); return TaskBatches.Pretrain(text, pixels, TaskBatches.Pick(pairs, o.BatchSize, rng), rng); },
            b => WorldPipeline.PretrainStep(model, b, o.ItcHardNegatives), pairs.Count);
    }

    public static TrainJobResult Finetune(FinetuneTask task, TrainJobOptions o, TextWriter log, TextWriter? progress = null)
    {
        if (o.Model == null) throw new ArgumentException("fine-tuning needs --model (an HF BridgeTower folder)");
        if (!Directory.Exists(o.Model)) throw new DirectoryNotFoundException($"model folder not found: {o.Model}");
        var data = new DatasetFolder(o.Data) { ImagePattern = o.ImagePattern };
        string stage = StageName(task);
        var baseConfig = BridgeTowerConfig.Load(Path.Combine(o.Model, "config.json"));
        switch (task)
        {
            case FinetuneTask.Vqa:
            {
                var qs = data.Vqa(o.Split);
                DatasetFolder.CheckImagesExist(qs.Select(q => q.ImagePath));
                var answers = AnswerVocabulary(qs, o.MaxAnswers);
                PrepareOut(o, stage);
                bool sameLabels = baseConfig.Id2Label is { } old && old.SequenceEqual(answers);
                var lm = TrainingModels.FromFolder(o.Model, o.Seed ^ 0xB7, edit: c => c with { Id2Label = answers, NumLabels = answers.Count },
                    reinitHeads: sameLabels ? null : ["vqa_classifier"]);
                var (text, pixels) = Inputs(o.Model, o.Model, lm.Model.Config, o.MaxTextLength);
                var index = answers.Select((a, i) => (a, i)).ToDictionary(x => x.a, x => x.i);
                log.WriteLine($"VQA fine-tuning on {qs.Count} questions, {answers.Count} answers, from {o.Model}");
                return RunStage(o, lm.Model, o.Model, pixels.Size, stage, lm.FreshHeads, log, progress,
                    (s, m) => TaskBatches.Vqa(text, pixels, TaskBatches.Pick(qs, o.BatchSize, Rng(o, stage, s, m)), index),
                    b => WorldPipeline.VqaStep(lm.Model, b), qs.Count);
            }
            case FinetuneTask.Retrieval:
            {
                var pairs = data.Pairs(o.Split);
                DatasetFolder.CheckImagesExist(pairs.Select(p => p.ImagePath));
                // A user dataset's negatives carry no record of the caption they were made from: the image's first caption
                // stands in as their positive.
                var firstCaption = pairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.First().Caption);
                var negs = data.Negatives(o.Split).Where(n => firstCaption.ContainsKey(n.ImageId)).GroupBy(n => n.ImageId)
                    .ToDictionary(g => g.Key, g => g.Select(n => (n, firstCaption[n.ImageId])).ToList());
                PrepareOut(o, stage);
                var lm = TrainingModels.FromFolder(o.Model, o.Seed ^ 0xB7);
                var (text, pixels) = Inputs(o.Model, o.Model, lm.Model.Config, o.MaxTextLength);
                log.WriteLine($"retrieval fine-tuning on {pairs.Count} pairs, {negs.Sum(n => n.Value.Count)} hard-negative captions, from {o.Model}");
                return RunStage(o, lm.Model, o.Model, pixels.Size, stage, lm.FreshHeads, log, progress,
                    (s, m) => { var rng = Rng(o, stage, s, m); return TaskBatches.Retrieval(text, pixels, TaskBatches.Pick(pairs, o.BatchSize, rng), negs, pairs, rng); },
                    b => WorldPipeline.RetrievalStep(lm.Model, b), pairs.Count);
            }
            default:
            {
                var items = data.Nlvr2(o.Split);
                DatasetFolder.CheckImagesExist(items.SelectMany(x => new[] { x.LeftPath, x.RightPath }));
                PrepareOut(o, stage);
                var lm = TrainingModels.FromFolder(o.Model, o.Seed ^ 0xB7, nlvr2: true);
                var (text, pixels) = Inputs(o.Model, o.Model, lm.Model.Config, o.MaxTextLength);
                log.WriteLine($"NLVR2 fine-tuning on {items.Count} statements ({items.Count(x => x.Label)} true), from {o.Model}");
                return RunStage(o, lm.Model, o.Model, pixels.Size, stage, lm.FreshHeads, log, progress,
                    (s, m) => TaskBatches.Nlvr2(text, pixels, TaskBatches.Pick(items, o.BatchSize, Rng(o, stage, s, m))),
                    b => TaskBatches.Nlvr2Step(lm.Model, b), items.Count);
            }
        }
    }

    /// <summary>The <paramref name="max"/> most frequent normalised answers (ties in ordinal order).</summary>
    public static List<string> AnswerVocabulary(IEnumerable<VqaItem> qs, int max) =>
        qs.SelectMany(q => q.Answers).Select(Eval.VqaScore.Normalize).Where(a => a.Length > 0).GroupBy(a => a)
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).Take(max).Select(g => g.Key).ToList() is { Count: > 0 } l
            ? l : throw new InvalidDataException("the VQA training split has no answers");

    private static Rng Rng(TrainJobOptions o, string stage, long step, int micro) => StepRng.For(o.Seed, stage, step * 64 + micro);

    private static BridgeTowerConfig FitToTokenizer(BridgeTowerConfig c, ITokenizer tok, int maxText) => c with
    {
        ContrastiveHiddenSize = c.ContrastiveHiddenSize ?? 512, LogitScaleInitValue = c.LogitScaleInitValue ?? 2.6592f,
        TextConfig = c.TextConfig with
        {
            VocabSize = tok.VocabSize, PadTokenId = tok.PadId,
            MaxPositionEmbeddings = Math.Max(c.TextConfig.MaxPositionEmbeddings, maxText + tok.PadId + 2),
        },
    };

    /// <summary>Refuses to overwrite another run's checkpoints unless resuming.</summary>
    private static void PrepareOut(TrainJobOptions o, string stage)
    {
        if (o.Steps <= 0) throw new ArgumentException("--steps must be positive");
        if (o.BatchSize <= 0 || o.Accumulate <= 0) throw new ArgumentException("--batch-size and --accumulate must be positive");
        if (!(o.LearningRate > 0)) throw new ArgumentException("--lr must be positive");
        if (!o.Resume && Directory.Exists(Path.Combine(o.Out, "checkpoints", stage)))
            throw new InvalidOperationException($"{o.Out} already holds a {stage} run; pass --resume to continue it or choose another --out");
        Directory.CreateDirectory(o.Out);
    }

    private static TrainJobResult RunStage<TBatch>(TrainJobOptions o, MultiTaskBridgeTower model, string tokDir, int imageSize, string stage,
        IReadOnlyList<string> fresh, TextWriter log, TextWriter? progress, Func<long, int, TBatch> make, Func<TBatch, StepOutput> step, int examples)
    {
        if (fresh.Count > 0) log.WriteLine($"initialised fresh: {string.Join(", ", fresh)}");
        var trainer = new BridgeTowerTrainer(model, o.Out, tokDir, imageSize, o.Resume, log) { ProgressOutput = progress };
        var r = trainer.Run(new StageOptions
        {
            Name = stage, Steps = o.Steps, LearningRate = o.LearningRate, Accumulate = o.Accumulate, CheckpointEvery = o.CheckpointEvery,
            ExamplesPerBatch = o.BatchSize, StopAfterStep = o.StopAfterStep,
        }, make, step);
        var modelDir = Path.Combine(o.Out, "model");
        if (r.Completed)
        {
            Checkpoint.WriteModelFiles(modelDir, model, tokDir, imageSize);
            // Tokenizer files Checkpoint does not copy (a model folder with tokenizer.json or a WordPiece vocab.txt).
            foreach (var f in new[] { "tokenizer.json", "vocab.txt", "added_tokens.json" })
                if (File.Exists(Path.Combine(tokDir, f)) && !File.Exists(Path.Combine(modelDir, f))) File.Copy(Path.Combine(tokDir, f), Path.Combine(modelDir, f));
        }
        var curves = Plot.Curves.Write(o.Out);
        return new TrainJobResult(r, r.Completed ? modelDir : "", examples, (int)model.Parameters.NumElements, fresh, curves);
    }
}
