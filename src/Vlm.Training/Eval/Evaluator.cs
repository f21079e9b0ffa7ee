// Held-out evaluation of a trained BridgeTower as the paper reports it, shared by the world pipeline and `vlm eval`:
// VQA accuracy per question type beside the per-type majority answer; ITM accuracy per hard-negative kind (each
// negative caption beside a true one, chance 50 %); retrieval R@1/5/10 both directions from ITC similarities, then
// with the top k of each query re-ranked by ITM (BridgeTower / ALBEF protocol); NLVR2 accuracy beside the majority
// label. The scoring parts (RerankedScores, ItmAccuracy, Nlvr2Accuracy) are pure functions of the model's outputs.
using Vlm.Core;
using Vlm.Training.Data;
using Vlm.Training.Model;
using Vlm.Training.Pipeline;
using Vlm.Training.Training;

namespace Vlm.Training.Eval;

public sealed record VqaEvaluation(Dictionary<string, double> ByType, Dictionary<string, double> MajorityByType, Dictionary<string, int> CountByType,
    double Accuracy, double Majority, Dictionary<int, string> Predictions);

public sealed record ItmEvaluation(Dictionary<string, double> ByKind, Dictionary<string, int> CountByKind, double Overall);

/// <param name="Recall">t2i_r{k} / i2t_r{k} (re-ranked), itc_t2i_r{k} / itc_i2t_r{k} (ITC alone), chance_r{k}</param>
/// <param name="ImageToText">re-ranked scores (texts × images), row-major, for showing an image's top captions</param>
public sealed record RetrievalEvaluation(Dictionary<string, double> Recall, int Images, int Texts, float[] ImageToText)
{
    /// <summary>Indices of the <paramref name="count"/> best texts for image <paramref name="image"/>.</summary>
    public List<int> TopTexts(int image, int count) =>
        Enumerable.Range(0, Texts).OrderByDescending(t => ImageToText[t * Images + image]).ThenBy(t => t).Take(count).ToList();
}

public sealed record Nlvr2Evaluation(double Accuracy, double Majority, bool MajorityLabel, int Count, bool[] Predictions);

public sealed class Evaluator(MultiTaskBridgeTower model, TextCollator text, PixelCache pixels, TextWriter? progress = null)
{
    private const int BatchSize = 64;

    private T NoGradEval<T>(Func<T> f)
    {
        model.Eval();
        try { using (Tensor.NoGrad()) return f(); }
        finally { model.Train(); }
    }

    /// <summary>Official VQA accuracy of the argmax answer over <paramref name="answers"/> (the head's labels), per
    /// question type; the baseline answers every question of a type with that type's most frequent first answer in
    /// <paramref name="majorityFrom"/> (the training split), "yes" for a type it lacks.</summary>
    public VqaEvaluation Vqa(IReadOnlyList<VqaItem> test, IReadOnlyList<string> answers, IReadOnlyList<VqaItem> majorityFrom) => NoGradEval(() =>
    {
        var preds = new Dictionary<int, string>();
        using (var bar = new ProgressBar("eval vqa", test.Count, "q", progress))
            for (int s = 0; s < test.Count; s += BatchSize)
            {
                var qs = test.Skip(s).Take(BatchSize).ToList();
                var t = text.Encode(qs.Select(q => q.Question).ToList());
                var logits = model.VqaLogits(model.Forward(t.Ids, t.Mask, pixels.Batch(qs.Select(q => q.ImagePath).ToList())));
                var am = logits.ArgMax(1).ToInt64Array();
                for (int i = 0; i < qs.Count; i++) preds[qs[i].QuestionId] = answers[(int)am[i]];
                bar.Report(s + qs.Count);
            }
        var majority = majorityFrom.Where(q => q.Answers.Count > 0).GroupBy(q => q.QuestionType).ToDictionary(g => g.Key,
            g => g.GroupBy(q => VqaScore.Normalize(q.Answers[0])).OrderByDescending(x => x.Count()).ThenBy(x => x.Key, StringComparer.Ordinal).First().Key);
        var byType = new Dictionary<string, double>(); var majType = new Dictionary<string, double>(); var count = new Dictionary<string, int>();
        double all = 0, allMaj = 0;
        foreach (var g in test.GroupBy(q => q.QuestionType).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            double acc = 0, maj = 0;
            foreach (var q in g)
            {
                acc += VqaScore.Accuracy(preds[q.QuestionId], q.Answers);
                maj += VqaScore.Accuracy(majority.GetValueOrDefault(g.Key, "yes"), q.Answers);
            }
            byType[g.Key] = acc / g.Count(); majType[g.Key] = maj / g.Count(); count[g.Key] = g.Count();
            all += acc; allMaj += maj;
        }
        return new VqaEvaluation(byType, majType, count, all / Math.Max(1, test.Count), allMaj / Math.Max(1, test.Count), preds);
    });

    /// <summary>P(match) of the ITM head for each (text, image path) pair.</summary>
    public float[] ItmProbabilities(IReadOnlyList<(string Text, string Image)> pairs, string label = "eval itm") => NoGradEval(() =>
    {
        var res = new float[pairs.Count];
        using var bar = new ProgressBar(label, pairs.Count, "pair", progress);
        for (int s = 0; s < pairs.Count; s += BatchSize)
        {
            var chunk = pairs.Skip(s).Take(BatchSize).ToList();
            var t = text.Encode(chunk.Select(c => c.Text).ToList());
            var p = F.Softmax(model.ItmLogits(model.Forward(t.Ids, t.Mask, pixels.Batch(chunk.Select(c => c.Image).ToList()))), -1).ToArray();
            for (int i = 0; i < chunk.Count; i++) res[s + i] = p[i * 2 + 1];
            bar.Report(s + chunk.Count);
        }
        return res;
    });

    /// <summary>Balanced binary ITM accuracy per hard-negative kind: each negative caption with its image, and
    /// <paramref name="positives"/>[i] (a true caption of the same image) beside it; "match" when P(match) > 0.5.</summary>
    public ItmEvaluation ItmHardNegatives(IReadOnlyList<ItmNegative> negatives, IReadOnlyList<string> positives)
    {
        if (positives.Count != negatives.Count) throw new ArgumentException("one positive caption per negative is needed");
        var pairs = negatives.Select(n => (n.Caption, n.ImagePath)).Concat(negatives.Select((n, i) => (positives[i], n.ImagePath))).ToList();
        var p = ItmProbabilities(pairs);
        return ItmAccuracy(negatives.Select(n => n.Kind).ToList(), p.AsSpan(0, negatives.Count).ToArray(), p.AsSpan(negatives.Count).ToArray());
    }

    /// <summary>Per kind: (rejected negatives + accepted positives) / (2 · pairs of that kind).</summary>
    public static ItmEvaluation ItmAccuracy(IReadOnlyList<string> kinds, float[] pNegative, float[] pPositive)
    {
        var byKind = new Dictionary<string, double>(); var count = new Dictionary<string, int>();
        int okAll = 0;
        foreach (var g in kinds.Select((k, i) => (k, i)).GroupBy(x => x.k).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            int ok = 0;
            foreach (var (_, i) in g) ok += (pNegative[i] <= 0.5f ? 1 : 0) + (pPositive[i] > 0.5f ? 1 : 0);
            byKind[g.Key] = ok / (2.0 * g.Count());
            count[g.Key] = g.Count();
            okAll += ok;
        }
        return new ItmEvaluation(byKind, count, okAll / (2.0 * Math.Max(1, kinds.Count)));
    }

    /// <summary>Retrieval between <paramref name="images"/> (paths) and <paramref name="texts"/> (caption, index of its
    /// image): contrastive similarities from the uni-modal towers, then each query's top <paramref name="rerankK"/>
    /// re-scored by ITM.</summary>
    public RetrievalEvaluation Retrieval(IReadOnlyList<string> images, IReadOnlyList<(string Caption, int Image)> texts, int rerankK) => NoGradEval(() =>
    {
        int ni = images.Count, nt = texts.Count;
        var textEmb = new List<float[]>(); var imgEmb = new List<float[]>();
        for (int s = 0; s < nt; s += BatchSize)
        {
            var t = text.Encode(texts.Skip(s).Take(BatchSize).Select(x => x.Caption).ToList());
            Rows(model.EmbedText(t.Ids, t.Mask), textEmb);
        }
        for (int s = 0; s < ni; s += BatchSize) Rows(model.EmbedImage(pixels.Batch(images.Skip(s).Take(BatchSize).ToList())), imgEmb);
        var sim = new float[nt * ni];
        for (int t = 0; t < nt; t++)
            for (int i = 0; i < ni; i++)
            {
                float d = 0;
                for (int k = 0; k < textEmb[t].Length; k++) d += textEmb[t][k] * imgEmb[i][k];
                sim[t * ni + i] = d;
            }
        var gold = texts.Select(x => x.Image).ToList();
        var (t2i, i2t, recall) = RerankedScores(sim, nt, ni, gold, rerankK,
            cand => ItmProbabilities(cand.Select(x => (texts[x.Text].Caption, images[x.Image])).ToList(), "eval retrieval"));
        return new RetrievalEvaluation(recall, ni, nt, i2t);
    });

    private static void Rows(Tensor e, List<float[]> into)
    {
        int c = e.Size(1);
        var a = e.ToArray();
        for (int i = 0; i < e.Size(0); i++) into.Add(a.AsSpan(i * c, c).ToArray());
    }

    /// <summary>Re-ranking on a (texts × images) similarity matrix: each text's top k images and each image's top k
    /// texts (ties to the lower index) are scored by <paramref name="itm"/> (called once, on their union in
    /// (text, image) order) and placed above every other candidate in that order. Returns the re-ranked text→image and
    /// image→text score matrices and R@1/5/10 both ways, re-ranked and ITC alone, beside chance.</summary>
    public static (float[] T2I, float[] I2T, Dictionary<string, double> Recall) RerankedScores(float[] sim, int texts, int images, IReadOnlyList<int> gold,
        int k, Func<IReadOnlyList<(int Text, int Image)>, float[]> itm)
    {
        int kt = Math.Min(k, images), ki = Math.Min(k, texts);
        var t2iCand = new HashSet<(int, int)>();
        for (int t = 0; t < texts; t++)
            foreach (var i in Enumerable.Range(0, images).OrderByDescending(i => sim[t * images + i]).ThenBy(i => i).Take(kt)) t2iCand.Add((t, i));
        var i2tCand = new HashSet<(int, int)>();
        for (int i = 0; i < images; i++)
            foreach (var t in Enumerable.Range(0, texts).OrderByDescending(t => sim[t * images + i]).ThenBy(t => t).Take(ki)) i2tCand.Add((t, i));
        var all = t2iCand.Union(i2tCand).OrderBy(x => x.Item1).ThenBy(x => x.Item2).ToList();
        var probs = itm(all);
        var score = all.Select((x, j) => (x, j)).ToDictionary(p => p.x, p => probs[p.j]);
        // Similarities lie in [-1, 1]; 10 + P(match) puts every candidate above every non-candidate.
        var t2i = (float[])sim.Clone(); var i2t = (float[])sim.Clone();
        foreach (var (t, i) in t2iCand) t2i[t * images + i] = 10f + score[(t, i)];
        foreach (var (t, i) in i2tCand) i2t[t * images + i] = 10f + score[(t, i)];
        var r = new Dictionary<string, double>();
        foreach (int kk in new[] { 1, 5, 10 })
        {
            r[$"t2i_r{kk}"] = Recall.TextToImage(t2i, texts, images, gold, kk);
            r[$"i2t_r{kk}"] = Recall.ImageToText(i2t, texts, images, gold, kk);
            r[$"itc_t2i_r{kk}"] = Recall.TextToImage(sim, texts, images, gold, kk);
            r[$"itc_i2t_r{kk}"] = Recall.ImageToText(sim, texts, images, gold, kk);
            r[$"chance_r{kk}"] = Math.Min(1.0, kk / (double)Math.Max(1, images));
        }
        return (t2i, i2t, r);
    }

    /// <summary>NLVR2 accuracy of the head's argmax, beside always answering <paramref name="majorityLabel"/> (the
    /// training split's more frequent label).</summary>
    public Nlvr2Evaluation Nlvr2(IReadOnlyList<Nlvr2Item> test, bool majorityLabel) => NoGradEval(() =>
    {
        var pred = new bool[test.Count];
        const int bs = BatchSize / 2;
        using (var bar = new ProgressBar("eval nlvr2", test.Count, "ex", progress))
            for (int s = 0; s < test.Count; s += bs)
            {
                var b = TaskBatches.Nlvr2(text, pixels, test.Skip(s).Take(bs).ToList());
                var am = model.Nlvr2Logits(b.Text.Ids, b.Text.Mask, b.Left, b.Right).ArgMax(1).ToInt64Array();
                for (int i = 0; i < am.Length; i++) pred[s + i] = am[i] == 1;
                bar.Report(s + am.Length);
            }
        var (acc, maj) = Nlvr2Accuracy(pred, test.Select(x => x.Label).ToArray(), majorityLabel);
        return new Nlvr2Evaluation(acc, maj, majorityLabel, test.Count, pred);
    });

    public static (double Accuracy, double Majority) Nlvr2Accuracy(bool[] predicted, bool[] gold, bool majorityLabel)
    {
        if (predicted.Length != gold.Length) throw new ArgumentException("predictions and labels differ in count");
        int n = Math.Max(1, gold.Length);
        return (predicted.Zip(gold).Count(x => x.First == x.Second) / (double)n, gold.Count(g => g == majorityLabel) / (double)n);
    }

    /// <summary>The more frequent label (true on a tie).</summary>
    public static bool MajorityLabel(IEnumerable<Nlvr2Item> train)
    {
        int t = 0, f = 0;
        foreach (var x in train) { if (x.Label) t++; else f++; }
        return t >= f;
    }
}
