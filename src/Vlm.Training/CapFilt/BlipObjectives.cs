// The training losses CapFilt needs (BLIP, arXiv 2201.12086 §3.2): the captioner's language-modelling loss and the
// filter's / retrieval model's image-text contrastive (ITC) + image-text matching (ITM) losses. They sit behind
// IBlipObjectives so the recipe can be swapped: InBatchBlipObjectives is the plain form (HF's own shifted LM loss
// with the config's label smoothing; ITC over the batch's images and texts with a fixed temperature; ITM negatives
// drawn uniformly from the batch, or by ITC similarity as ALBEF/BLIP do when asked), without ALBEF's momentum
// encoder and feature queue.
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Training.Data;
using Vlm.Training.Training;

namespace Vlm.Training.CapFilt;

/// <summary>A batch of image–text pairs with distinct images: pixels (B, 3, S, S), the texts, image ids, and the
/// batch's own random stream (negative sampling).</summary>
public sealed record PairBatch(Tensor Pixels, TextBatch Text, int[] ImageIds, Rng Rng);

public interface IBlipObjectives
{
    string Name { get; }
    /// <summary>Captioner loss for a batch whose texts start with [DEC] (BLIP's decoder bos).</summary>
    StepOutput Caption(BlipForConditionalGeneration model, PairBatch b);
    /// <summary>Filter / retrieval loss (ITC + ITM) for a batch whose texts start with [CLS].</summary>
    StepOutput Retrieval(BlipForImageTextRetrieval model, PairBatch b);
}

public sealed class InBatchBlipObjectives(float temperature = 0.07f, bool itcHardNegatives = false) : IBlipObjectives
{
    public string Name => itcHardNegatives ? "in-batch ITC + ITC-sampled ITM negatives" : "in-batch ITC + random ITM negatives";

    public StepOutput Caption(BlipForConditionalGeneration model, PairBatch b)
    {
        // HF BlipForConditionalGeneration: labels are the decoder inputs with padding ignored.
        var ids = b.Text.IdArray;
        var mask = b.Text.Mask.ToArray();
        var labels = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++) labels[i] = mask[i] > 0 ? ids[i] : -100;
        var (logits, loss, _) = model.Forward(b.Pixels, b.Text.Ids, b.Text.Mask, Tensor.FromArray(labels, b.Text.Batch, b.Text.Length));
        double acc;
        using (Tensor.NoGrad())
        {
            // next-token accuracy on real tokens (the shifted targets)
            var pred = logits.ArgMax(2).ToInt64Array();
            int n = 0, ok = 0, l = b.Text.Length;
            for (int r = 0; r < b.Text.Batch; r++)
                for (int j = 0; j + 1 < l; j++)
                    if (labels[r * l + j + 1] != -100) { n++; if (pred[r * l + j] == labels[r * l + j + 1]) ok++; }
            acc = n == 0 ? 0 : ok / (double)n;
        }
        return new StepOutput(loss!, new Dictionary<string, double> { ["lm_loss"] = loss!.Item(), ["lm_acc"] = acc });
    }

    public StepOutput Retrieval(BlipForImageTextRetrieval model, PairBatch b)
    {
        int n = b.ImageIds.Length;
        var image = model.Vision.Forward(b.Pixels);                                               // (B, 1+N, D)
        var text = model.TextEncoder.Forward(b.Text.Ids, b.Text.Mask, null, null, isDecoder: false); // (B, L, D)
        var sim = model.ImageFeatures(image).MatMul(model.TextFeatures(text).T).Div(temperature);  // (B img, B txt)
        var diag = Tensor.Arange(n);
        var itc = F.CrossEntropy(sim, diag).Add(F.CrossEntropy(sim.T, diag)).Div(2f);
        int[] negImage, negText;
        if (itcHardNegatives)
        {
            float[] s, st;
            using (Tensor.NoGrad()) { var d = sim.Detach(); s = d.T.Contiguous().ToArray(); st = d.Contiguous().ToArray(); }
            negImage = Objectives.SampleHardNegatives(s, n, b.ImageIds, b.Rng, temperature);   // per text: an image
            negText = Objectives.SampleHardNegatives(st, n, b.ImageIds, b.Rng, temperature);   // per image: a text
        }
        else
        {
            negImage = Objectives.RandomNegatives(n, b.ImageIds, b.Rng);
            negText = Objectives.RandomNegatives(n, b.ImageIds, b.Rng);
        }
        // ITM over 3B pairs: positives, (text i, negative image), (negative text, image i).
        var textRows = Enumerable.Range(0, n).Concat(Enumerable.Range(0, n)).Concat(negText).ToArray();
        var imageRows = Enumerable.Range(0, n).Concat(negImage).Concat(Enumerable.Range(0, n)).ToArray();
        var ids = Objectives.Rows(b.Text.Ids, textRows);
        var mask = b.Text.Mask.IndexSelect(0, Tensor.FromArray(textRows.Select(i => (long)i).ToArray(), textRows.Length));
        var cross = model.TextEncoder.Forward(ids, mask, Objectives.Rows(image, imageRows), null, isDecoder: false);
        var labels = Enumerable.Repeat(1L, n).Concat(Enumerable.Repeat(0L, 2 * n)).ToArray();
        var (itm, acc) = Objectives.Itm(model.ItmLogits(cross), labels);
        var loss = itc.Add(itm);
        return new StepOutput(loss, new Dictionary<string, double> { ["loss"] = loss.Item(), ["itc_loss"] = itc.Item(), ["itm_loss"] = itm.Item(), ["itm_acc"] = acc });
    }
}
