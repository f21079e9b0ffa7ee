using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary><see cref="BridgeTowerForwardOptions.OutputCrossAttentions"/> (not an HF output): the cross-attention
/// maps behind the service's heat maps.</summary>
public class BridgeTowerCrossAttentionTests
{
    [Fact]
    public void Cross_attentions_are_distributions_over_the_other_modality_and_change_nothing_else()
    {
        var cfg = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_model", "config.json"));
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var (m, _) = BridgeTowerWeights.LoadModel(cfg, w);
        m.Eval();
        var inputs = Fixtures.Load("bridgetower_model", "inputs.safetensors");
        var ids = inputs["input_ids"];
        // Pad row 1 by masking its last two tokens, so masked keys must get no attention.
        var maskArr = inputs["attention_mask"].ToInt64Array();
        int b = ids.Size(0), l = ids.Size(1);
        maskArr[l + l - 1] = 0; maskArr[l + l - 2] = 0;
        var mask = Tensor.FromArray(maskArr, b, l);
        BridgeTowerModelOutput plain, withMaps;
        using (Tensor.NoGrad())
        {
            plain = m.Forward(ids, mask, inputs["pixel_values"], new BridgeTowerForwardOptions { OutputAttentions = true });
            withMaps = m.Forward(ids, mask, inputs["pixel_values"], new BridgeTowerForwardOptions { OutputCrossAttentions = true });
        }
        Assert.Null(plain.CrossAttentions);
        TensorAssert.Close(plain.PoolerOutput, withMaps.PoolerOutput, 0f, 0f, "pooler_output");
        var maps = withMaps.CrossAttentions!;
        Assert.Equal(plain.Attentions!.Count, maps.Count);           // one per cross-modal layer
        int heads = plain.Attentions[0].Text.Size(1), n = withMaps.ImageFeatures.Size(1);
        foreach (var (t2i, i2t) in maps)
        {
            Assert.Equal(new[] { b, heads, l, n }, t2i.ShapeArray());
            Assert.Equal(new[] { b, heads, n, l }, i2t.ShapeArray());
            var p = t2i.Contiguous().ToArray();
            for (int r = 0; r < p.Length / n; r++) Assert.Equal(1f, p.AsSpan(r * n, n).ToArray().Sum(), 1e-4f);
            var q = i2t.Contiguous().ToArray();
            for (int r = 0; r < q.Length / l; r++)
            {
                var row = q.AsSpan(r * l, l).ToArray();
                Assert.Equal(1f, row.Sum(), 1e-4f);
                if (r >= heads * n)   // batch row 1: its two masked text tokens get nothing
                {
                    Assert.Equal(0f, row[l - 1], 1e-6f);
                    Assert.Equal(0f, row[l - 2], 1e-6f);
                }
            }
        }
    }
}
