using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Training.Data;
using Vlm.Training.Eval;
using Vlm.Training.Training;
using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Cli;

/// <summary>
/// Training commands over dataset folders in the standard formats (the synthetic world or a user's COCO / VQAv2 /
/// Karpathy / JSONL / NLVR2 files): <c>world</c> writes the synthetic world, <c>pretrain</c> runs VL pre-training,
/// <c>finetune vqa|retrieval|nlvr2</c> fine-tunes an HF BridgeTower folder, <c>eval vqa|retrieval|itm|nlvr2</c>
/// evaluates one. Progress bars go to stderr, results to stdout (JSON with <c>--json</c>); bad input is a one-line
/// error and exit code 2.
/// </summary>
public static class TrainCommands
{
    public static IEnumerable<Command> All()
    {
        yield return World();
        yield return Pretrain();
        yield return Finetune();
        yield return EvalCmd();
    }

    private static Command World()
    {
        var outDir = new Option<string>("--out", "-o") { Description = "Folder to write the dataset into", Required = true };
        var train = new Option<int>("--train") { Description = "Training scenes", DefaultValueFactory = _ => 2000 };
        var val = new Option<int>("--val") { Description = "Validation scenes", DefaultValueFactory = _ => 20 };
        var test = new Option<int>("--test") { Description = "Test scenes", DefaultValueFactory = _ => 200 };
        var seed = new Option<ulong>("--seed") { Description = "World seed (scenes, captions, questions)", DefaultValueFactory = _ => 0 };
        var size = new Option<int>("--image-size") { Description = "Image width and height in pixels", DefaultValueFactory = _ => 64 };
        var json = ModelCommands.JsonOption();
        var cmd = new Command("world", "Write the synthetic world as a dataset: COCO captions, VQAv2, Karpathy, JSONL pairs, ITM hard negatives, NLVR2, PNG images")
            { outDir, train, val, test, seed, size, json };
        cmd.SetAction(pr => ModelCommands.Guard("world", () =>
        {
            int n = pr.GetValue(train), v = pr.GetValue(val), t = pr.GetValue(test), s = pr.GetValue(size);
            if (n < 2 || v < 0 || t < 2) return Cli.Fail("world: --train and --test need at least 2 scenes, --val at least 0");
            if (s is < 16 or > 1024) return Cli.Fail("world: --image-size must be between 16 and 1024");
            var dir = pr.GetValue(outDir)!;
            var info = new WorldInfo(pr.GetValue(seed), s, n, v, t);
            using (var bar = new Vlm.Training.Pipeline.ProgressBar("world", n + v + t, "scene"))
                WorldDataset.Write(dir, info.Generator(), new WorldSplits(n, v, t), (p, rgb, w, h) => PngEncoder.Save(new Image(w, h, PixelMode.RGB, rgb), p),
                    new Progress<int>(k => bar.Report(k)));
            info.Save(dir);
            var files = Directory.GetFiles(dir).Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal).ToList();
            if (pr.GetValue(json))
                Console.WriteLine(new JsonObject
                {
                    ["out"] = dir, ["train"] = n, ["val"] = v, ["test"] = t, ["seed"] = info.Seed, ["image_size"] = s,
                    ["files"] = new JsonArray(files.Select(f => (JsonNode)f!).ToArray()),
                }.ToJsonString());
            else
                Console.WriteLine($"wrote {n} train / {v} val / {t} test scenes ({s}x{s}) to {dir}: {string.Join(", ", files)}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Options every training command shares.</summary>
    private sealed class Common
    {
        public readonly Option<string> Data = new("--data", "-d") { Description = "Dataset folder (pairs_{split}.jsonl / captions_{split}.json / dataset_karpathy.json, questions_/annotations_{split}.json, nlvr2_{split}.jsonl)", Required = true };
        public readonly Option<string> Out = new("--out", "-o") { Description = "Run folder: checkpoints/, model/ (HF folder), metrics.jsonl, curves/", Required = true };
        public readonly Option<string> Split = new("--split") { Description = "Split to train on", DefaultValueFactory = _ => "train" };
        public readonly Option<int> Steps;
        public readonly Option<int> Batch = new("--batch-size") { Description = "Examples per micro-batch", DefaultValueFactory = _ => 16 };
        public readonly Option<int> Accumulate = new("--accumulate") { Description = "Micro-batches per optimizer step (gradient accumulation)", DefaultValueFactory = _ => 1 };
        public readonly Option<double> Lr;
        public readonly Option<ulong> Seed = new("--seed") { Description = "Seed of the initialisation and the batches", DefaultValueFactory = _ => 0 };
        public readonly Option<bool> Resume = new("--resume") { Description = "Continue the run in --out from its latest checkpoint" };
        public readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Save a resumable checkpoint every N steps (0 = only the last)", DefaultValueFactory = _ => 50 };
        public readonly Option<int> MaxText = new("--max-text-length") { Description = "Tokens per text, special tokens included", DefaultValueFactory = _ => 40 };
        public readonly Option<string?> ImagePattern = new("--image-pattern") { Description = "VQA images by id when the folder has no captions file, e.g. train2014/COCO_train2014_{id:12}.jpg" };
        public readonly Option<bool> Json = ModelCommands.JsonOption();
        // Stops right after this step's checkpoint, as a kill would (exit code 3): for resume tests.
        public readonly Option<long?> StopAfter = new("--stop-after") { Hidden = true };

        public Common(int steps, double lr)
        {
            Steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => steps };
            Lr = new Option<double>("--lr") { Description = "Peak learning rate (×5 on cross-modal layers and heads; warmup 10 %, linear decay)", DefaultValueFactory = _ => lr };
        }

        public void AddTo(Command c)
        {
            foreach (var o in new Option[] { Data, Out, Split, Steps, Batch, Accumulate, Lr, Seed, Resume, CheckpointEvery, MaxText, ImagePattern, Json, StopAfter }) c.Options.Add(o);
        }

        public TrainJobOptions Read(ParseResult pr) => new()
        {
            Data = pr.GetValue(Data)!, Out = pr.GetValue(Out)!, Split = pr.GetValue(Split)!, Steps = pr.GetValue(Steps), BatchSize = pr.GetValue(Batch),
            Accumulate = pr.GetValue(Accumulate), LearningRate = pr.GetValue(Lr), Seed = pr.GetValue(Seed), Resume = pr.GetValue(Resume),
            CheckpointEvery = pr.GetValue(CheckpointEvery), MaxTextLength = pr.GetValue(MaxText), ImagePattern = pr.GetValue(ImagePattern),
            StopAfterStep = pr.GetValue(StopAfter),
        };
    }

    private static Command Pretrain()
    {
        var c = new Common(steps: 400, lr: 2e-4);
        var model = new Option<string?>("--model", "-m") { Description = "HF BridgeTower folder to start from (its tokenizer and preprocessor are used)" };
        var config = new Option<string?>("--config") { Description = "config.json of a fresh model (without --model; default: a small BridgeTower, hidden 128)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer folder for a fresh model (default: byte-level BPE trained on the captions)" };
        var size = new Option<int>("--image-size") { Description = "Image size of the default fresh model", DefaultValueFactory = _ => 64 };
        var hard = new Option<bool>("--itc-hard-negatives") { Description = "ITM negatives sampled by ITC similarity instead of uniformly" };
        var cmd = new Command("pretrain", "Vision-language pre-training (MLM + ITM + ITC) on image-text pairs") { model, config, tokenizer, size, hard };
        c.AddTo(cmd);
        cmd.SetAction(pr => ModelCommands.Guard("pretrain", () =>
        {
            if (pr.GetValue(model) != null && (pr.GetValue(config) != null || pr.GetValue(tokenizer) != null))
                return Cli.Fail("pretrain: --config and --tokenizer describe a fresh model; they cannot be combined with --model");
            var o = c.Read(pr) with
            {
                Model = pr.GetValue(model), Config = pr.GetValue(config), Tokenizer = pr.GetValue(tokenizer), ImageSize = pr.GetValue(size),
                ItcHardNegatives = pr.GetValue(hard),
            };
            return Report(TrainJobs.Pretrain(o, Console.Error), pr.GetValue(c.Json));
        }));
        return cmd;
    }

    private static Command Finetune()
    {
        var cmd = new Command("finetune", "Fine-tune an HF BridgeTower folder on VQA, retrieval or NLVR2");
        foreach (var (task, name, desc, steps, lr) in new[]
        {
            (FinetuneTask.Vqa, "vqa", "VQA as multi-label classification over the training answers (BCE on soft scores)", 500, 2e-4),
            (FinetuneTask.Retrieval, "retrieval", "Image-text retrieval: ITC + ITM with hard-negative captions and ITC-sampled hard-negative images", 150, 2e-4),
            (FinetuneTask.Nlvr2, "nlvr2", "NLVR2: is the statement true of the image pair (two pooled features concatenated, 2-way cross-entropy)", 300, 2e-4),
        })
        {
            var c = new Common(steps, lr);
            var model = new Option<string>("--model", "-m") { Description = "HF BridgeTower folder to fine-tune (e.g. a pretrain run's model/)", Required = true };
            var sub = new Command(name, desc) { model };
            c.AddTo(sub);
            Option<int>? maxAnswers = null;
            if (task == FinetuneTask.Vqa)
            {
                maxAnswers = new Option<int>("--max-answers") { Description = "Answer vocabulary: the most frequent training answers", DefaultValueFactory = _ => 3129 };
                sub.Options.Add(maxAnswers);
            }
            sub.SetAction(pr => ModelCommands.Guard($"finetune {name}", () =>
            {
                var o = c.Read(pr) with { Model = pr.GetValue(model) };
                if (maxAnswers != null)
                {
                    if (pr.GetValue(maxAnswers) <= 0) return Cli.Fail("finetune vqa: --max-answers must be positive");
                    o = o with { MaxAnswers = pr.GetValue(maxAnswers) };
                }
                return Report(TrainJobs.Finetune(task, o, Console.Error), pr.GetValue(c.Json));
            }));
            cmd.Subcommands.Add(sub);
        }
        return cmd;
    }

    private static int Report(TrainJobResult r, bool json)
    {
        var s = r.Stage;
        if (json)
        {
            var last = new JsonObject();
            foreach (var (k, v) in s.Last) last[k] = double.IsFinite(v) ? Math.Round(v, 6) : null;
            Console.WriteLine(new JsonObject
            {
                ["stage"] = s.Stage, ["completed"] = s.Completed, ["skipped"] = s.Skipped, ["steps"] = s.Steps, ["seconds"] = Math.Round(s.Seconds, 1),
                ["model_dir"] = r.ModelDir, ["examples"] = r.Examples, ["parameters"] = r.Parameters,
                ["fresh_heads"] = new JsonArray(r.FreshHeads.Select(h => (JsonNode)h!).ToArray()),
                ["curves"] = new JsonArray(r.Curves.Select(f => (JsonNode)f!).ToArray()), ["last"] = last,
            }.ToJsonString());
        }
        else
        {
            var metrics = string.Join(", ", s.Last.Where(kv => kv.Key.EndsWith("loss", StringComparison.Ordinal) || kv.Key.EndsWith("acc", StringComparison.Ordinal))
                .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F3}")));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{s.Stage}: {(s.Skipped ? "already complete" : $"{s.Steps} steps in {s.Seconds:F0} s")}{(metrics.Length > 0 ? $" (last: {metrics})" : "")}"));
            if (r.ModelDir.Length > 0) Console.WriteLine($"model: {r.ModelDir}");
            if (r.Curves.Count > 0) Console.WriteLine($"curves: {Path.GetDirectoryName(r.Curves[0])}");
        }
        return s.Completed ? 0 : 3;
    }

    private static Command EvalCmd()
    {
        var cmd = new Command("eval", "Evaluate an HF BridgeTower folder on a dataset split beside chance / majority baselines");
        foreach (var (task, name, desc) in new[]
        {
            (EvalTask.Vqa, "vqa", "VQA accuracy (official metric) per question type, beside the per-type majority answer"),
            (EvalTask.Retrieval, "retrieval", "Recall@1/5/10 both directions: ITC similarities, then the top k re-ranked by ITM"),
            (EvalTask.Itm, "itm", "ITM accuracy per hard-negative kind (each negative beside a true caption; chance 50 %)"),
            (EvalTask.Nlvr2, "nlvr2", "NLVR2 accuracy beside always answering the majority label"),
        })
        {
            var model = ModelCommands.ModelOption();
            var data = new Option<string>("--data", "-d") { Description = "Dataset folder", Required = true };
            var split = new Option<string>("--split") { Description = "Split to evaluate", DefaultValueFactory = _ => "test" };
            var limit = new Option<int>("--limit") { Description = "Evaluate at most this many examples (0 = all)", DefaultValueFactory = _ => 0 };
            var maxText = new Option<int>("--max-text-length") { Description = "Tokens per text, special tokens included", DefaultValueFactory = _ => 40 };
            var pattern = new Option<string?>("--image-pattern") { Description = "VQA images by id when the folder has no captions file" };
            var json = ModelCommands.JsonOption();
            var sub = new Command(name, desc) { model, data, split, limit, maxText, pattern, json };
            var maxImages = new Option<int>("--max-images") { Description = "The first N images of the split, with all their captions", DefaultValueFactory = _ => 1000 };
            var rerank = new Option<int>("--rerank-k") { Description = "Candidates per query re-ranked by ITM", DefaultValueFactory = _ => 10 };
            if (task == EvalTask.Retrieval) { sub.Options.Add(maxImages); sub.Options.Add(rerank); }
            sub.SetAction(pr => ModelCommands.Guard($"eval {name}", () =>
            {
                var r = EvalJobs.Run(task, new EvalOptions
                {
                    Model = pr.GetValue(model)!, Data = pr.GetValue(data)!, Split = pr.GetValue(split)!, Limit = pr.GetValue(limit),
                    MaxTextLength = pr.GetValue(maxText), ImagePattern = pr.GetValue(pattern), MaxImages = task == EvalTask.Retrieval ? pr.GetValue(maxImages) : 1,
                    RerankK = task == EvalTask.Retrieval ? pr.GetValue(rerank) : 1,
                });
                if (pr.GetValue(json)) Console.WriteLine(r.Json.ToJsonString());
                else PrintTable(r);
                return 0;
            }));
            cmd.Subcommands.Add(sub);
        }
        return cmd;
    }

    private static string P(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture).PadLeft(6) + "%";

    private static void PrintTable(EvalReport r)
    {
        int w = Math.Max(40, r.Rows.Max(x => x.Name.Length));
        Console.WriteLine($"{"".PadRight(w)}  model   baseline");
        Console.WriteLine(new string('-', w + 20));
        foreach (var x in r.Rows)
            Console.WriteLine($"{x.Name.PadRight(w)} {P(x.Value)}" + (x.Baseline is double b ? $" {P(b)}  ({x.BaselineName})" : ""));
        Console.WriteLine($"{r.Json["split"]} split of {r.Json["data"]}; model {r.Json["model"]}");
    }
}
