// `vlm eval`: one held-out evaluation of an HF BridgeTower folder on a dataset folder in the standard formats,
// through the shared Evaluator, as a table (name, model, baseline) and the same numbers as JSON.
using System.Text.Json.Nodes;
using Vlm.Training.Data;
using Vlm.Training.Model;
using Vlm.Training.Training;

namespace Vlm.Training.Eval;

public enum EvalTask { Vqa, Retrieval, Itm, Nlvr2 }

public sealed record EvalRow(string Name, double Value, double? Baseline, string? BaselineName);

public sealed record EvalReport(EvalTask Task, JsonObject Json, List<EvalRow> Rows);

public sealed record EvalOptions
{
    public required string Model { get; init; }
    public required string Data { get; init; }
    public string Split { get; init; } = "test";
    /// <summary>Retrieval: the first N images of the split (with all their captions).</summary>
    public int MaxImages { get; init; } = 1000;
    /// <summary>Retrieval: candidates per query re-ranked by ITM.</summary>
    public int RerankK { get; init; } = 10;
    /// <summary>VQA / ITM / NLVR2: evaluate at most this many examples (0 = all).</summary>
    public int Limit { get; init; }
    public int MaxTextLength { get; init; } = 40;
    public string? ImagePattern { get; init; }
}

public static class EvalJobs
{
    /// <summary>Heads each evaluation needs trained (a fresh one would make the numbers meaningless).</summary>
    private static string[] Needs(EvalTask t) => t switch
    {
        EvalTask.Vqa => ["vqa_classifier"],
        EvalTask.Itm => ["itm_score"],
        EvalTask.Retrieval => ["itm_score", "itc_text_head", "itc_image_head"],
        _ => ["nlvr2_classifier"],
    };

    public static EvalReport Run(EvalTask task, EvalOptions o, TextWriter? progress = null)
    {
        var data = new DatasetFolder(o.Data) { ImagePattern = o.ImagePattern };
        if (o.Limit < 0) throw new ArgumentException("--limit must not be negative");
        if (task == EvalTask.Retrieval && (o.MaxImages <= 0 || o.RerankK <= 0)) throw new ArgumentException("--max-images and --rerank-k must be positive");
        var lm = TrainingModels.FromFolder(o.Model, 0, nlvr2: task == EvalTask.Nlvr2);
        var missing = Needs(task).Where(h => lm.FreshHeads.Contains(h)).ToList();
        if (missing.Count > 0) throw new InvalidDataException($"{o.Model}: the model has no trained {string.Join(", ", missing)} head (fine-tune it first)");
        var model = lm.Model;
        var (text, pixels) = TrainJobs.Inputs(o.Model, o.Model, model.Config, o.MaxTextLength);
        var ev = new Evaluator(model, text, pixels, progress);
        var json = new JsonObject { ["task"] = task.ToString().ToLowerInvariant(), ["model"] = o.Model, ["data"] = o.Data, ["split"] = o.Split };
        var rows = new List<EvalRow>();
        static double R(double v) => Math.Round(v, 4);
        List<T> Take<T>(List<T> l) => o.Limit > 0 ? l.Take(o.Limit).ToList() : l;
        switch (task)
        {
            case EvalTask.Vqa:
            {
                var answers = model.Config.Id2Label ?? throw new InvalidDataException($"{o.Model}: config.json has no id2label (the VQA answer vocabulary)");
                var test = Take(data.Vqa(o.Split));
                DatasetFolder.CheckImagesExist(test.Select(q => q.ImagePath));
                // The baseline's majority answers come from the training split when the folder has one.
                var majorityFrom = o.Split != "train" && data.HasVqa("train") ? data.Vqa("train") : test;
                var r = ev.Vqa(test, answers, majorityFrom);
                json["questions"] = test.Count;
                json["vqa_accuracy"] = R(r.Accuracy); json["vqa_majority_baseline"] = R(r.Majority);
                json["majority_from"] = ReferenceEquals(majorityFrom, test) ? o.Split : "train";
                var by = new JsonObject(); var maj = new JsonObject(); var cnt = new JsonObject();
                foreach (var (k, v) in r.ByType)
                {
                    by[k] = R(v); maj[k] = R(r.MajorityByType[k]); cnt[k] = r.CountByType[k];
                    rows.Add(new EvalRow($"VQA {(k.Length == 0 ? "(no type)" : k)} ({r.CountByType[k]} q)", v, r.MajorityByType[k], "majority"));
                }
                json["vqa_accuracy_by_type"] = by; json["vqa_majority_baseline_by_type"] = maj; json["questions_by_type"] = cnt;
                rows.Add(new EvalRow("VQA all", r.Accuracy, r.Majority, "majority"));
                break;
            }
            case EvalTask.Itm:
            {
                var pairs = data.Pairs(o.Split);
                if (!data.HasNegatives(o.Split)) throw new FileNotFoundException($"{o.Data}: no ITM hard negatives for split '{o.Split}' (expected itm_negatives_{o.Split}.jsonl)");
                var first = pairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.First().Caption);
                var negs = Take(data.Negatives(o.Split).Where(n => first.ContainsKey(n.ImageId)).ToList());
                if (negs.Count == 0) throw new InvalidDataException($"{o.Data}: no hard negative of split '{o.Split}' refers to an image of its pairs");
                DatasetFolder.CheckImagesExist(negs.Select(n => n.ImagePath));
                // On a generated world the positive beside each negative is its minimal true counterpart (only the
                // tested attribute differs); elsewhere it is the image's first caption.
                var gen = data.World?.Generator();
                var positives = negs.Select(n => (gen is null ? null : WorldPipeline.MinimalPositive(n, gen.SampleScene(n.ImageId))) ?? first[n.ImageId]).ToList();
                var r = ev.ItmHardNegatives(negs, positives);
                json["pairs"] = 2 * negs.Count;
                json["positives"] = gen is null ? "first caption" : "minimal";
                json["itm_accuracy"] = R(r.Overall); json["itm_chance"] = 0.5;
                var by = new JsonObject(); var cnt = new JsonObject();
                foreach (var (k, v) in r.ByKind)
                {
                    by[k] = R(v); cnt[k] = r.CountByKind[k];
                    rows.Add(new EvalRow($"ITM accuracy, {k} ({r.CountByKind[k]})", v, 0.5, "chance"));
                }
                json["itm_accuracy_by_kind"] = by; json["negatives_by_kind"] = cnt;
                rows.Add(new EvalRow("ITM accuracy, all hard negatives", r.Overall, 0.5, "chance"));
                break;
            }
            case EvalTask.Retrieval:
            {
                var pairs = data.Pairs(o.Split);
                var imageIds = pairs.Select(p => p.ImageId).Distinct().Take(o.MaxImages).ToList();
                var pos = imageIds.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i);
                var pathOf = pairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.First().ImagePath);
                var paths = imageIds.Select(id => pathOf[id]).ToList();
                var texts = pairs.Where(p => pos.ContainsKey(p.ImageId)).Select(p => (p.Caption, pos[p.ImageId])).ToList();
                DatasetFolder.CheckImagesExist(paths);
                var r = ev.Retrieval(paths, texts, o.RerankK);
                json["images"] = r.Images; json["texts"] = r.Texts; json["rerank_k"] = o.RerankK;
                var rec = new JsonObject();
                foreach (var (k, v) in r.Recall) rec[k] = R(v);
                json["retrieval"] = rec;
                foreach (int k in new[] { 1, 5, 10 })
                {
                    rows.Add(new EvalRow($"text->image R@{k} (ITC + ITM re-rank)", r.Recall[$"t2i_r{k}"], r.Recall[$"chance_r{k}"], "chance"));
                    rows.Add(new EvalRow($"image->text R@{k} (ITC + ITM re-rank)", r.Recall[$"i2t_r{k}"], null, null));
                }
                foreach (int k in new[] { 1, 5, 10 })
                {
                    rows.Add(new EvalRow($"text->image R@{k} (ITC only)", r.Recall[$"itc_t2i_r{k}"], r.Recall[$"chance_r{k}"], "chance"));
                    rows.Add(new EvalRow($"image->text R@{k} (ITC only)", r.Recall[$"itc_i2t_r{k}"], null, null));
                }
                break;
            }
            default:
            {
                var test = Take(data.Nlvr2(o.Split));
                DatasetFolder.CheckImagesExist(test.SelectMany(x => new[] { x.LeftPath, x.RightPath }));
                bool fromTrain = o.Split != "train" && data.HasNlvr2("train");
                bool majority = Evaluator.MajorityLabel(fromTrain ? data.Nlvr2("train") : test);
                var r = ev.Nlvr2(test, majority);
                json["statements"] = r.Count;
                json["nlvr2_accuracy"] = R(r.Accuracy); json["nlvr2_majority_baseline"] = R(r.Majority);
                json["majority_label"] = r.MajorityLabel; json["majority_from"] = fromTrain ? "train" : o.Split;
                rows.Add(new EvalRow($"NLVR2 accuracy ({r.Count} statements)", r.Accuracy, r.Majority, $"always {r.MajorityLabel.ToString().ToLowerInvariant()}"));
                break;
            }
        }
        return new EvalReport(task, json, rows);
    }
}
