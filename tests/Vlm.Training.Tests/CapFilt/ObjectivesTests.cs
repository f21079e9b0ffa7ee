using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.Training.CapFilt;
using Vlm.Training.Data;

namespace Vlm.Training.Tests.CapFilt;

public class BlipObjectivesTests
{
    private static PairBatch Batch(int b, int l, int vocab, ulong seed)
    {
        var rng = new Rng(seed);
        var ids = new long[b * l]; var mask = new float[b * l];
        for (int i = 0; i < b; i++)
        {
            int len = 3 + i % (l - 2);
            for (int j = 0; j < l; j++)
            {
                ids[i * l + j] = j == 0 ? WorldWordPiece.ClsId : j == len - 1 ? WorldWordPiece.SepId : j < len ? 7 + rng.NextInt(vocab - 7) : WorldWordPiece.PadId;
                mask[i * l + j] = j < len ? 1 : 0;
            }
        }
        var px = new float[b * 3 * 16 * 16];
        for (int i = 0; i < px.Length; i++) px[i] = rng.NextFloat() - 0.5f;
        return new PairBatch(Tensor.FromArray(px, b, 3, 16, 16), new TextBatch(Tensor.FromArray(ids, b, l), Tensor.FromArray(mask, b, l), ids, b, l),
            Enumerable.Range(0, b).ToArray(), new Rng(seed + 1));
    }

    public static TheoryData<string> Names => new() { "inbatch", "inbatch-hard", "recipe" };

    [Theory]
    [MemberData(nameof(Names))]
    public void Losses_are_finite_and_reach_every_parameter(string name)
    {
        IBlipObjectives obj = name switch { "recipe" => new RecipeBlipObjectives(), "inbatch-hard" => new InBatchBlipObjectives(itcHardNegatives: true), _ => new InBatchBlipObjectives() };
        var size = new BlipSize { ImageSize = 16, PatchSize = 8, Hidden = 32, Heads = 2, VisionLayers = 1, TextLayers = 1, MaxTextLength = 8 };
        var b = Batch(4, 8, 20, 3);

        var (ret, retStore) = BlipTiny.Create(BlipTiny.Config(size, 20, "BlipForImageTextRetrieval"), new Rng(1), (vb, c) => new BlipForImageTextRetrieval(vb, c));
        var r = obj.Retrieval(ret, b);
        Assert.True(float.IsFinite(r.Loss.Item()));
        // untrained: ITC near ln(B) = 1.386, ITM near ln 2 = 0.693
        Assert.InRange(r.Metrics["itc_loss"], 1.0, 1.8);
        Assert.InRange(r.Metrics["itm_loss"], 0.4, 1.0);
        r.Loss.Backward();
        foreach (var prefix in new[] { "vision_model.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head." })
            Assert.Contains(retStore.Unique(), kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && kv.Value.Grad is { } g && g.ToArray().Any(x => x != 0));

        var (cap, capStore) = BlipTiny.Create(BlipTiny.Config(size, 20, "BlipForConditionalGeneration"), new Rng(2), (vb, c) => new BlipForConditionalGeneration(vb, c));
        var c = obj.Caption(cap, CapFiltRunner.MakeDecoderBatch(b));
        Assert.InRange(c.Metrics["lm_loss"], 2.0, 4.0);   // ≈ ln 20 = 3.0 untrained
        c.Loss.Backward();
        Assert.Contains(capStore.Unique(), kv => kv.Key.StartsWith("vision_model.", StringComparison.Ordinal) && kv.Value.Grad is { } g && g.ToArray().Any(x => x != 0));
    }
}
