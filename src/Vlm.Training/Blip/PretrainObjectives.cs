// BLIP / ALBEF pre-training objectives as pure functions of tensors, so each can be checked against PyTorch from
// fixed inputs (tests/Vlm.Training.Tests/Blip/Data/pretrain_refs.py):
//  - ITC with momentum distillation (ALBEF arXiv 2107.07651 §3.2-3.3, BLIP arXiv 2201.12086 §3.2): similarities of the
//    online features against [momentum features of the batch; queue], divided by a learnable temperature; targets
//    α·softmax(momentum similarities) + (1 − α)·ground truth, the ground truth being the diagonal, or, given image ids
//    (BLIP's retrieval fine-tuning), every column with the same id, normalised per row.
//  - ITM with ITC-guided hard negatives: per text a negative image and per image a negative text drawn from
//    softmax(similarities) over the batch with the positives zeroed; CE over [positives; (text, negative image);
//    (negative text, image)] with labels [1; 0; 0].
//  - LM: the decoder reads [DEC] + caption, labels are the caption with padding (and any prompt) at −100; shifted
//    cross-entropy with label smoothing 0.1 (BLIP's med.py).
// Semantics follow salesforce/BLIP models/blip_pretrain.py, blip_retrieval.py and salesforce/ALBEF
// models/model_pretrain.py (read for their semantics; this is an independent implementation).
using Vlm.Core;

namespace Vlm.Training.Blip;

/// <summary>ITC output: the loss and the (detached) online similarity matrices (B, B + Q), from which ITM draws
/// its hard negatives.</summary>
public sealed record ItcOutput(Tensor Loss, Tensor SimI2T, Tensor SimT2I, Tensor TargetsI2T, Tensor TargetsT2I);

/// <summary>ITM output: loss, logits (3B, 2) and accuracy of argmax against the labels.</summary>
public sealed record ItmOutput(Tensor Loss, Tensor Logits, double Accuracy);

public static class PretrainObjectives
{
    /// <summary>Ground-truth ITC targets (B, B + Q): with <paramref name="idx"/> (image ids of the batch) and
    /// <paramref name="idxQueue"/> (ids of the queued features, −100 for never-filled slots), pos[i, j] =
    /// [idx_i == idx_all_j] / Σ_j; without them the identity on the batch columns.</summary>
    public static Tensor GroundTruth(int b, int q, long[]? idx, long[]? idxQueue)
    {
        int n = b + q;
        var t = new float[b * n];
        if (idx is null) { for (int i = 0; i < b; i++) t[i * n + i] = 1f; }
        else
        {
            if (idx.Length != b) throw new ArgumentException($"idx has {idx.Length} entries for a batch of {b}");
            if (q > 0 && (idxQueue is null || idxQueue.Length != q)) throw new ArgumentException($"idx-aware ITC needs the queue's ids ({q} entries)");
            for (int i = 0; i < b; i++)
            {
                int count = 0;
                for (int j = 0; j < n; j++) if ((j < b ? idx[j] : idxQueue![j - b]) == idx[i]) count++;
                // The batch column i always matches, so count ≥ 1; torch divides the float row by its float sum.
                float c = count;
                for (int j = 0; j < n; j++) if ((j < b ? idx[j] : idxQueue![j - b]) == idx[i]) t[i * n + j] = 1f / c;
            }
        }
        return Tensor.FromArray(t, b, n);
    }

    /// <summary>ITC with momentum distillation.</summary>
    /// <param name="imageFeat">(B, E) normalised online image features (with gradient)</param>
    /// <param name="textFeat">(B, E) normalised online text features (with gradient)</param>
    /// <param name="imageFeatM">(B, E) momentum image features (no gradient)</param>
    /// <param name="textFeatM">(B, E) momentum text features</param>
    /// <param name="imageQueue">(Q, E) queued momentum image features (Q may be 0)</param>
    /// <param name="textQueue">(Q, E) queued momentum text features</param>
    /// <param name="temp">the temperature, a one-element parameter (already clamped)</param>
    /// <param name="alpha">distillation weight α</param>
    /// <param name="idx">image ids of the batch for idx-aware targets, or null (diagonal)</param>
    /// <param name="idxQueue">ids of the queued features when <paramref name="idx"/> is given</param>
    public static ItcOutput Itc(Tensor imageFeat, Tensor textFeat, Tensor imageFeatM, Tensor textFeatM, Tensor imageQueue, Tensor textQueue,
        Tensor temp, float alpha, long[]? idx = null, long[]? idxQueue = null)
    {
        int b = imageFeat.Size(0), e = imageFeat.Size(1), q = imageQueue.Size(0);
        foreach (var (t, name) in new[] { (textFeat, "text features"), (imageFeatM, "momentum image features"), (textFeatM, "momentum text features") })
            if (t.Rank != 2 || t.Size(0) != b || t.Size(1) != e) throw new ArgumentException($"ITC: {name} {t.ShapeString} do not match the image features {imageFeat.ShapeString}");
        if (imageQueue.Rank != 2 || imageQueue.Size(1) != e || textQueue.Rank != 2 || textQueue.Size(0) != q || textQueue.Size(1) != e)
            throw new ArgumentException($"ITC: queues {imageQueue.ShapeString} / {textQueue.ShapeString} are not (Q, {e})");
        if (alpha < 0 || alpha > 1) throw new ArgumentException($"ITC: alpha {alpha} is outside [0, 1]");
        var gt = GroundTruth(b, q, idx, idxQueue);
        Tensor imageAll, textAll, targetsI2T, targetsT2I;                                  // (B+Q, E), (B, B+Q)
        using (Tensor.NoGrad())
        {
            imageAll = q == 0 ? imageFeatM.Detach() : Tensor.Cat([imageFeatM.Detach(), imageQueue], 0);
            textAll = q == 0 ? textFeatM.Detach() : Tensor.Cat([textFeatM.Detach(), textQueue], 0);
            var tm = temp.Detach();
            var simI2TM = imageFeatM.MatMul(textAll.T).Div(tm);
            var simT2IM = textFeatM.MatMul(imageAll.T).Div(tm);
            targetsI2T = F.Softmax(simI2TM, 1).Mul(alpha).Add(gt.Mul(1f - alpha));
            targetsT2I = F.Softmax(simT2IM, 1).Mul(alpha).Add(gt.Mul(1f - alpha));
        }
        var simI2T = imageFeat.MatMul(textAll.T).Div(temp);                                // (B, B+Q)
        var simT2I = textFeat.MatMul(imageAll.T).Div(temp);
        var lossI2T = F.LogSoftmax(simI2T, 1).Mul(targetsI2T).Sum(1).Mean().Neg();
        var lossT2I = F.LogSoftmax(simT2I, 1).Mul(targetsT2I).Sum(1).Mean().Neg();
        return new ItcOutput(lossI2T.Add(lossT2I).Div(2f), simI2T.Detach(), simT2I.Detach(), targetsI2T, targetsT2I);
    }

    /// <summary>Hard-negative sampling weights (B, B) as the reference: softmax over the batch columns of a
    /// similarity matrix (B, ≥B), plus <paramref name="eps"/>, with the positives set to zero: the diagonal, and with
    /// <paramref name="idx"/> every pair of the same image.</summary>
    public static float[] NegativeWeights(Tensor sim, long[]? idx, float eps = 1e-4f)
    {
        int b = sim.Size(0);
        if (sim.Rank != 2 || sim.Size(1) < b) throw new ArgumentException($"similarities {sim.ShapeString} are not (B, ≥B)");
        if (idx != null && idx.Length != b) throw new ArgumentException($"idx has {idx.Length} entries for a batch of {b}");
        float[] w;
        using (Tensor.NoGrad()) w = F.Softmax(sim.Detach().Narrow(1, 0, b).Contiguous(), 1).Add(eps).ToArray();
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++)
                if (i == j || (idx != null && idx[i] == idx[j])) w[i * b + j] = 0f;
        return w;
    }

    /// <summary>One multinomial draw per row of <paramref name="weights"/> (B rows of B, non-negative, not
    /// normalised), with the project's seeded <see cref="Rng"/>. A row with no positive weight (every pair shares
    /// the image) is an error naming the row.</summary>
    public static int[] Multinomial(float[] weights, int b, Rng rng)
    {
        if (weights.Length != b * b) throw new ArgumentException($"weights have {weights.Length} entries, expected {b}×{b}");
        var res = new int[b];
        for (int i = 0; i < b; i++)
        {
            double sum = 0;
            int last = -1;
            for (int j = 0; j < b; j++)
            {
                float w = weights[i * b + j];
                if (!(w >= 0) || float.IsInfinity(w)) throw new ArgumentException($"negative sampling weight [{i}, {j}] = {w} is not a finite non-negative number");
                if (w > 0) { sum += w; last = j; }
            }
            if (last < 0) throw new InvalidOperationException($"ITM: row {i} has no negative candidate (batch of {b}, every other pair is a positive)");
            double u = rng.NextDouble() * sum, acc = 0;
            int pick = last;
            for (int j = 0; j < b; j++)
            {
                float w = weights[i * b + j];
                if (w <= 0) continue;
                acc += w;
                if (u < acc) { pick = j; break; }
            }
            res[i] = pick;
        }
        return res;
    }

    /// <summary>The reference's draws, in its order: first a negative image for each text (from the t2i
    /// similarities), then a negative text for each image (from i2t).</summary>
    public static (int[] NegImageForText, int[] NegTextForImage) SampleHardNegatives(ItcOutput itc, long[]? idx, Rng rng, float eps = 1e-4f)
    {
        int b = itc.SimI2T.Size(0);
        var negImage = Multinomial(NegativeWeights(itc.SimT2I, idx, eps), b, rng);
        var negText = Multinomial(NegativeWeights(itc.SimI2T, idx, eps), b, rng);
        return (negImage, negText);
    }

    /// <summary>Rows of the ITM batch (3B): text and image indices and labels, in the reference's order —
    /// positives (i, i), then (text i, negative image of text i), then (negative text of image i, image i).</summary>
    public static (long[] TextRows, long[] ImageRows, long[] Labels) ItmRows(int[] negImageForText, int[] negTextForImage)
    {
        int b = negImageForText.Length;
        if (negTextForImage.Length != b) throw new ArgumentException("ITM: negative lists differ in length");
        var t = new long[3 * b]; var im = new long[3 * b]; var l = new long[3 * b];
        for (int i = 0; i < b; i++)
        {
            t[i] = i; im[i] = i; l[i] = 1;
            t[b + i] = i; im[b + i] = negImageForText[i];
            t[2 * b + i] = negTextForImage[i]; im[2 * b + i] = i;
        }
        return (t, im, l);
    }

    /// <summary>ITM loss: <paramref name="fuse"/> maps (text rows, image rows) (3B int64 each) to the fused [CLS]
    /// states (3B, D); <paramref name="head"/> maps those to logits (3B, 2).</summary>
    public static ItmOutput Itm(Func<Tensor, Tensor, Tensor> fuse, Func<Tensor, Tensor> head, int[] negImageForText, int[] negTextForImage)
    {
        var (tr, ir, labels) = ItmRows(negImageForText, negTextForImage);
        int n = tr.Length;
        var cls = fuse(Tensor.FromArray(tr, n), Tensor.FromArray(ir, n));
        var logits = head(cls);
        var loss = F.CrossEntropy(logits, Tensor.FromArray(labels, n));
        long[] pred;
        using (Tensor.NoGrad()) pred = logits.ArgMax(1).ToInt64Array();
        return new ItmOutput(loss, logits, pred.Zip(labels).Count(p => p.First == p.Second) / (double)n);
    }

    /// <summary>BLIP's decoder inputs: the caption ids with the first token (the tokenizer's [CLS]/&lt;s&gt;) replaced
    /// by <paramref name="bosId"/> ([DEC]); labels = those ids with padding and the first
    /// <paramref name="promptLength"/> positions at −100 (captioning fine-tune with a prompt).</summary>
    public static (Tensor Ids, Tensor Labels) DecoderInputs(Tensor ids, int bosId, int padId, int promptLength = 0)
    {
        if (ids.Rank != 2) throw new ArgumentException($"input_ids must be (batch, seq), got {ids.ShapeString}");
        int b = ids.Size(0), l = ids.Size(1);
        var a = ids.ToInt64Array();
        var lab = new long[a.Length];
        for (int i = 0; i < b; i++)
        {
            a[i * l] = bosId;
            for (int j = 0; j < l; j++) lab[i * l + j] = j < promptLength || a[i * l + j] == padId ? -100 : a[i * l + j];
        }
        return (Tensor.FromArray(a, b, l), Tensor.FromArray(lab, b, l));
    }

    /// <summary>Shifted LM loss: CE(logits[:, :-1], labels[:, 1:]), −100 ignored, mean over the counted tokens,
    /// with label smoothing (BLIP pre-training: 0.1).</summary>
    public static Tensor LmLoss(Tensor logits, Tensor labels, float labelSmoothing = 0.1f) =>
        Vlm.Models.Blip.BlipTextLMHeadModel.ShiftedLmLoss(logits, labels, labelSmoothing);

    /// <summary>MLM loss (unshifted CE, −100 ignored) and masked-token accuracy.</summary>
    public static (Tensor Loss, double Accuracy) MlmLoss(Tensor logits, Tensor labels) => Vlm.Training.Training.Objectives.Mlm(logits, labels);

    /// <summary>The reference's α ramp: α·min(1, step / rampSteps) (BLIP ramps over the first two epochs); no ramp
    /// when <paramref name="rampSteps"/> ≤ 0.</summary>
    public static float AlphaAt(float alpha, long step, long rampSteps) =>
        rampSteps <= 0 ? alpha : alpha * (float)Math.Min(1.0, step / (double)rampSteps);
}
