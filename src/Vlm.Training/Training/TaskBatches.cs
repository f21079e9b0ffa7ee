// Batches of the training tasks, built from examples already picked for a step (the caller draws them from its
// dataset with the step's random stream, so a batch depends only on (seed, stage, step)): VL pre-training
// (masked caption, its image, which rows get a mismatched image), VQA (question, image, soft answer scores),
// retrieval (caption, image, a hard-negative caption) and NLVR2 (statement, two images, true/false). The world
// pipeline and the `vlm pretrain` / `vlm finetune` commands share them, and the NLVR2 objective (paper §4: the
// two pooled features concatenated, a 2-way classifier, cross-entropy).
using Vlm.Core;
using Vlm.Training.Data;
using Vlm.Training.Model;

namespace Vlm.Training.Training;

public sealed record Nlvr2Batch(TextBatch Text, Tensor Left, Tensor Right, long[] Labels);

public static class TaskBatches
{
    public static WorldPipeline.PretrainBatch Pretrain(TextCollator text, PixelCache pixels, IReadOnlyList<ImageCaption> pairs, Rng rng)
    {
        var t = text.Encode(pairs.Select(p => p.Caption).ToList());
        var (m, l) = text.Mask(t, rng);
        var neg = pairs.Select(_ => rng.NextInt(2) == 0).ToArray();
        return new WorldPipeline.PretrainBatch(t, m, l, pixels.Batch(pairs.Select(p => p.ImagePath).ToList()), pairs.Select(p => p.ImageId).ToArray(), neg, rng);
    }

    /// <summary>Soft VQA targets (ViLT scores of the normalised human answers) over <paramref name="answerIndex"/>;
    /// answers outside the vocabulary get no target.</summary>
    public static WorldPipeline.VqaBatch Vqa(TextCollator text, PixelCache pixels, IReadOnlyList<VqaItem> qs, IReadOnlyDictionary<string, int> answerIndex)
    {
        int a = answerIndex.Count;
        var targets = new float[qs.Count * a];
        for (int i = 0; i < qs.Count; i++)
            foreach (var (ans, s) in Eval.VqaScore.SoftScores(qs[i].Answers))
                if (answerIndex.TryGetValue(ans, out int k)) targets[i * a + k] = s;
        return new WorldPipeline.VqaBatch(text.Encode(qs.Select(q => q.Question).ToList()), pixels.Batch(qs.Select(q => q.ImagePath).ToList()),
            Tensor.FromArray(targets, qs.Count, a), targets);
    }

    /// <summary>The first half of the rows get a hard-negative caption of their image (from
    /// <paramref name="negativesByImage"/>, else a random caption of <paramref name="all"/>); the second half keep
    /// their caption (their negative is an ITC-sampled image, chosen in the step).</summary>
    /// <summary>Retrieval fine-tuning batch. The first half of the ITM rows contrast, on one image, a hard negative
    /// with the true caption it was made from (the two share their sentence form, so only the image can tell them
    /// apart: the world's own captions never take some of the negatives' forms, e.g. "exactly one circle", and a model
    /// shown those forms only as negatives learns the form, not the image); images without hard negatives get a random
    /// caption against their own. The second half keep their captions (their negatives are ITC-sampled images).</summary>
    public static WorldPipeline.RetrievalBatch Retrieval(TextCollator text, PixelCache pixels, IReadOnlyList<ImageCaption> pairs,
        IReadOnlyDictionary<int, List<(ItmNegative Negative, string Positive)>> negativesByImage, IReadOnlyList<ImageCaption> all, Rng rng)
    {
        int n = pairs.Count, half = n / 2;
        var negTexts = new List<string>(); var posTexts = new List<string>();
        for (int i = 0; i < n; i++)
        {
            if (i >= half) { negTexts.Add(pairs[i].Caption); continue; }
            if (negativesByImage.TryGetValue(pairs[i].ImageId, out var negs))
            {
                var (neg, pos) = negs[rng.NextInt(negs.Count)];
                negTexts.Add(neg.Caption); posTexts.Add(pos);
            }
            else { negTexts.Add(all[rng.NextInt(all.Count)].Caption); posTexts.Add(pairs[i].Caption); }
        }
        return new WorldPipeline.RetrievalBatch(text.Encode(pairs.Select(p => p.Caption).ToList()), text.Encode(negTexts.Concat(posTexts).ToList()),
            pixels.Batch(pairs.Select(p => p.ImagePath).ToList()), pairs.Select(p => p.ImageId).ToArray(), rng);
    }

    public static Nlvr2Batch Nlvr2(TextCollator text, PixelCache pixels, IReadOnlyList<Nlvr2Item> items) =>
        new(text.Encode(items.Select(x => x.Sentence).ToList()), pixels.Batch(items.Select(x => x.LeftPath).ToList()),
            pixels.Batch(items.Select(x => x.RightPath).ToList()), items.Select(x => x.Label ? 1L : 0L).ToArray());

    /// <summary>NLVR2 fine-tuning step: 2-way cross-entropy on the concatenated pooled features of the two pairs.</summary>
    public static StepOutput Nlvr2Step(MultiTaskBridgeTower model, Nlvr2Batch b)
    {
        var logits = model.Nlvr2Logits(b.Text.Ids, b.Text.Mask, b.Left, b.Right);
        var loss = F.CrossEntropy(logits, Tensor.FromArray(b.Labels, b.Labels.Length));
        return new StepOutput(loss, new Dictionary<string, double> { ["nlvr2_loss"] = loss.Item(), ["nlvr2_acc"] = Objectives.Accuracy(logits, b.Labels) });
    }

    /// <summary><paramref name="count"/> examples drawn uniformly with replacement.</summary>
    public static T[] Pick<T>(IReadOnlyList<T> from, int count, Rng rng) => Enumerable.Range(0, count).Select(_ => from[rng.NextInt(from.Count)]).ToArray();
}
