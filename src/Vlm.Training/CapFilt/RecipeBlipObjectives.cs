// CapFilt's losses through the BLIP pre-training objectives of Vlm.Training.Blip (PretrainObjectives, tested against
// PyTorch): ITC with image-id-aware ground-truth targets (pairs of the same image are positives, as BLIP's retrieval
// fine-tuning does), ITM on ITC-guided hard negatives drawn as the reference draws them, and the LM loss with label
// smoothing 0.1 on [DEC]-led decoder inputs. Applied to the HF model classes, so without the momentum encoder and
// the feature queue (α = 0, empty queue) and with a fixed temperature.
using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Training.Blip;
using Vlm.Training.Training;

namespace Vlm.Training.CapFilt;

public sealed class RecipeBlipObjectives(float temperature = 0.07f) : IBlipObjectives
{
    public string Name => "BLIP recipe: id-aware ITC (no momentum/queue) + ITC-sampled hard ITM negatives + LM (smoothing 0.1)";

    public StepOutput Caption(BlipForConditionalGeneration model, PairBatch b)
    {
        var (ids, labels) = PretrainObjectives.DecoderInputs(b.Text.Ids, WorldWordPiece.DecId, WorldWordPiece.PadId);
        var (logits, _, _) = model.Forward(b.Pixels, ids, b.Text.Mask);
        var loss = PretrainObjectives.LmLoss(logits, labels, 0.1f);
        return new StepOutput(loss, new Dictionary<string, double> { ["lm_loss"] = loss.Item() });
    }

    public StepOutput Retrieval(BlipForImageTextRetrieval model, PairBatch b)
    {
        int n = b.ImageIds.Length;
        var image = model.Vision.Forward(b.Pixels);                                                 // (B, 1+N, D)
        var text = model.TextEncoder.Forward(b.Text.Ids, b.Text.Mask, null, null, isDecoder: false);   // (B, L, D)
        var fi = model.ImageFeatures(image); var ft = model.TextFeatures(text);                     // (B, E)
        var empty = Tensor.Zeros(0, fi.Size(1));
        var idx = b.ImageIds.Select(i => (long)i).ToArray();
        var itc = PretrainObjectives.Itc(fi, ft, fi.Detach(), ft.Detach(), empty, empty, Tensor.Full([1], temperature), 0f, idx, []);
        var (negImage, negText) = PretrainObjectives.SampleHardNegatives(itc, idx, b.Rng);
        var itm = PretrainObjectives.Itm(
            (tr, ir) => model.TextEncoder.Forward(b.Text.Ids.IndexSelect(0, tr), b.Text.Mask.IndexSelect(0, tr), image.IndexSelect(0, ir), null, isDecoder: false),
            model.ItmLogits, negImage, negText);
        var loss = itc.Loss.Add(itm.Loss);
        return new StepOutput(loss, new Dictionary<string, double> { ["loss"] = loss.Item(), ["itc_loss"] = itc.Loss.Item(), ["itm_loss"] = itm.Loss.Item(), ["itm_acc"] = itm.Accuracy });
    }
}
