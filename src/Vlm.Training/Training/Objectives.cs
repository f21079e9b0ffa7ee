// Losses of the training recipe (BridgeTower arXiv 2206.08657 §4, after METER/ViLT): masked language modelling,
// image-text matching, image-text contrastive learning (BridgeTower's contrastive head: text, image and cross
// embeddings, three CLIP losses), VQA as multi-label classification on soft scores, and the two uni-modal
// objectives (text-tower MLM, vision-tower attribute classification).
using Vlm.Core;
using Vlm.Training.Data;
using Vlm.Training.Model;

namespace Vlm.Training.Training;

public static class Objectives
{
    /// <summary>Cross-entropy MLM loss and masked-token accuracy; logits (B, L, V), labels (B, L) with -100 elsewhere.</summary>
    public static (Tensor loss, double acc) Mlm(Tensor logits, Tensor labels)
    {
        int v = logits.Size(-1);
        var flat = logits.Reshape(-1, v);
        var lab = labels.Reshape(-1);
        var loss = F.CrossEntropy(flat, lab);
        long[] pred, gold = lab.ToInt64Array();
        using (Tensor.NoGrad()) pred = flat.ArgMax(1).ToInt64Array();
        int n = 0, ok = 0;
        for (int i = 0; i < gold.Length; i++)
            if (gold[i] != -100) { n++; if (pred[i] == gold[i]) ok++; }
        return (loss, n == 0 ? 0 : ok / (double)n);
    }

    /// <summary>HF BridgeTowerForContrastiveLearning's loss: mean of the CLIP losses text↔image, text↔cross, image↔cross
    /// (each cross-entropy over rows, targets the diagonal), scaled by exp(logit_scale).</summary>
    public static Tensor Itc(ItcEmbeddings e, Tensor logitScale)
    {
        var s = logitScale.Exp();
        int b = e.Text.Size(0);
        var labels = Tensor.Arange(b);
        var l1 = F.CrossEntropy(e.Text.MatMul(e.Image.T).Mul(s), labels);
        var l2 = F.CrossEntropy(e.Text.MatMul(e.Cross.T).Mul(s), labels);
        var l3 = F.CrossEntropy(e.Image.MatMul(e.Cross.T).Mul(s), labels);
        return l1.Add(l2).Add(l3).Div(3f);
    }

    /// <summary>ITM cross-entropy and accuracy; logits (B, 2), labels 1 = match.</summary>
    public static (Tensor loss, double acc) Itm(Tensor logits, long[] labels)
    {
        var loss = F.CrossEntropy(logits, Tensor.FromArray(labels, labels.Length));
        return (loss, Accuracy(logits, labels));
    }

    public static double Accuracy(Tensor logits, long[] labels)
    {
        long[] pred;
        using (Tensor.NoGrad()) pred = logits.ArgMax(1).ToInt64Array();
        return pred.Zip(labels).Count(p => p.First == p.Second) / (double)Math.Max(1, labels.Length);
    }

    /// <summary>For each row i, an image index j ≠ i sampled with probability ∝ exp(sim(text i, image j) / τ) (ALBEF's
    /// ITC-guided hard negatives); rows whose only candidates share the image id get a uniform pick among the rest.</summary>
    public static int[] SampleHardNegatives(float[] sims, int b, IReadOnlyList<int> imageIds, Rng rng, float temperature = 0.05f)
    {
        var res = new int[b];
        for (int i = 0; i < b; i++)
        {
            var w = new double[b];
            double max = double.NegativeInfinity;
            for (int j = 0; j < b; j++) if (imageIds[j] != imageIds[i]) max = Math.Max(max, sims[i * b + j] / temperature);
            double sum = 0;
            for (int j = 0; j < b; j++)
                if (imageIds[j] != imageIds[i]) sum += w[j] = Math.Exp(sims[i * b + j] / temperature - max);
            if (sum == 0) { res[i] = (i + 1) % b; continue; }
            double u = rng.NextDouble() * sum;
            int pick = -1;
            for (int j = 0; j < b && pick < 0; j++) { u -= w[j]; if (u <= 0 && w[j] > 0) pick = j; }
            if (pick < 0) pick = Array.FindLastIndex(w, x => x > 0);
            res[i] = pick;
        }
        return res;
    }

    /// <summary>Uniformly random other-image indices within the batch (different image id when possible).</summary>
    public static int[] RandomNegatives(int b, IReadOnlyList<int> imageIds, Rng rng)
    {
        var res = new int[b];
        for (int i = 0; i < b; i++)
        {
            var cands = Enumerable.Range(0, b).Where(j => imageIds[j] != imageIds[i]).ToList();
            res[i] = cands.Count == 0 ? (i + 1) % b : cands[rng.NextInt(cands.Count)];
        }
        return res;
    }

    /// <summary>Rows of <paramref name="pixels"/> picked by <paramref name="index"/>.</summary>
    public static Tensor Rows(Tensor pixels, int[] index) =>
        pixels.IndexSelect(0, Tensor.FromArray(index.Select(i => (long)i).ToArray(), index.Length));
}
