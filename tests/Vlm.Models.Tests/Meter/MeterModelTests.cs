using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Models.Meter;
using Vlm.Nn;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.Meter;

public class MeterModelTests
{
    // Vision width (64) differs from the text / cross width (32), so the input transforms are real projections.
    private static BridgeTowerConfig Tiny(int textLayers, int crossLayers, LinkTowerType link = LinkTowerType.Add) => new()
    {
        HiddenSize = 32, NumAttentionHeads = 2, NumHiddenLayers = crossLayers, LinkTowerType = link,
        TextConfig = new BridgeTowerTextConfig
        {
            VocabSize = 30, HiddenSize = 32, NumHiddenLayers = textLayers, NumAttentionHeads = 2, IntermediateSize = 48,
            MaxPositionEmbeddings = 12, HiddenDropoutProb = 0f, AttentionProbsDropoutProb = 0f,
        },
        VisionConfig = new BridgeTowerVisionConfig { HiddenSize = 64, NumHiddenLayers = textLayers, ImageSize = 16, PatchSize = 8 },
    };

    private static (T Model, ParameterStore Store) Build<T>(Func<BtVars, T> make, Rng? rng, IWeightSource? weights = null)
    {
        var vb = weights is null ? VarBuilder.Init(rng!) : VarBuilder.FromWeights(weights);
        var m = make(BtVars.From(vb));
        return (m, vb.Finish());
    }

    private static (Tensor Ids, Tensor Mask, Tensor Pixels) Inputs(ulong seed = 3)
    {
        var ids = Tensor.FromArray(new long[] { 0, 5, 9, 17, 2, 0, 8, 2, 1, 1 }, 2, 5);
        var mask = Tensor.FromArray(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, 2, 5);
        return (ids, mask, Tensor.Randn([2, 3, 16, 16], new Rng(seed)));
    }

    private static Dictionary<string, Tensor> Copy(ParameterStore s) =>
        s.Named.ToDictionary(kv => kv.Key, kv => kv.Value.Detach().Contiguous().Clone());

    [Fact]
    public void Forward_has_bridgetower_shapes_and_states()
    {
        var (m, _) = Build(vb => new MeterModel(Tiny(2, 2), vb), new Rng(1));
        var (ids, mask, px) = Inputs();
        var o = m.Forward(ids, mask, px, new BridgeTowerForwardOptions { OutputHiddenStates = true, OutputAttentions = true, OutputCrossAttentions = true });
        Assert.Equal([2, 5, 32], o.TextFeatures.ShapeArray());
        Assert.Equal([2, 5, 32], o.ImageFeatures.ShapeArray());
        Assert.Equal([2, 64], o.PoolerOutput.ShapeArray());
        Assert.Equal([2, 5, 32], o.LastTextHidden.ShapeArray());
        Assert.Equal([2, 5, 64], o.LastImageHidden.ShapeArray());
        Assert.Equal(3, o.TextHiddenStates!.Count);          // embeddings + 2 layers
        Assert.Equal(3, o.ImageHiddenStates!.Count);         // ln_pre + 2 blocks
        Assert.Equal(2, o.CrossHiddenStates!.Count);         // one per cross-modal layer
        Assert.Equal([2, 2, 5, 5], o.Attentions![1].Text.ShapeArray());
        Assert.Equal([2, 2, 5, 5], o.CrossAttentions![1].TextToImage.ShapeArray());   // 5 text tokens → 1 + 4 patches
        Assert.Equal(2, o.CrossAttentions.Count);
        Assert.All(o.PoolerOutput.ToArray(), v => Assert.True(float.IsFinite(v)));
        // The last cross layer's outputs are the features; the cross stack's first input is the last tower layer.
        TensorAssert.Close(o.CrossHiddenStates[1].Text, o.TextFeatures, 0f, 0f);
        TensorAssert.Close(o.TextHiddenStates[2], o.LastTextHidden, 0f, 0f);
    }

    [Fact]
    public void Has_bridgetowers_parameters_but_the_link_towers()
    {
        var cfg = Tiny(3, 3);
        var (meter, ms) = Build(vb => new MeterModel(cfg, vb), new Rng(1));
        foreach (var link in new[] { LinkTowerType.Add, LinkTowerType.ScaledAdd, LinkTowerType.Interpolate })
        {
            var (_, bs) = Build(vb => new BridgeTowerModel(cfg with { LinkTowerType = link }, vb), new Rng(1));
            var extra = bs.Named.Select(kv => kv.Key).Except(ms.Named.Select(kv => kv.Key)).ToList();
            Assert.All(extra, n => Assert.Contains("_link_tower.", n));
            Assert.Empty(ms.Named.Select(kv => kv.Key).Except(bs.Named.Select(kv => kv.Key)));
            foreach (var (name, t) in ms.Named) Assert.Equal(bs[name].ShapeArray(), t.ShapeArray());
            // Two modalities × (cross layers − 1) bridges × LayerNorm (2h) [+ one scalar for scaled_add / interpolate].
            long perBridge = 2 * 32 + (link == LinkTowerType.Add ? 0 : 1);
            Assert.Equal(2 * 2 * perBridge, bs.NumElements - ms.NumElements);
        }
    }

    [Fact]
    public void With_one_cross_layer_equals_bridgetower_exactly()
    {
        // One cross-modal layer: BridgeTower has no bridge (split_index = all text layers) and no link tower, so the
        // two models are the same function of the same parameters.
        var cfg = Tiny(2, 1);
        var (meter, ms) = Build(vb => new MeterModel(cfg, vb), new Rng(5));
        var (bt, _) = Build(vb => new BridgeTowerModel(cfg, vb), null, new InMemoryWeights(Copy(ms)));
        var (ids, mask, px) = Inputs();
        var opts = new BridgeTowerForwardOptions { OutputHiddenStates = true };
        var a = meter.Forward(ids, mask, px, opts);
        var b = bt.Forward(ids, mask, px, opts);
        TensorAssert.Close(b.TextFeatures, a.TextFeatures, 1e-6f, 1e-6f);
        TensorAssert.Close(b.ImageFeatures, a.ImageFeatures, 1e-6f, 1e-6f);
        TensorAssert.Close(b.PoolerOutput, a.PoolerOutput, 1e-6f, 1e-6f);
    }

    [Fact]
    public void Equals_bridgetower_with_the_bridge_inputs_removed()
    {
        // BridgeTower with one more tower layer, scaled_add bridges whose scale is 0 (the uni-modal input of every
        // bridge is erased) and the extra top layers' outputs therefore unused: its first cross layer reads tower
        // layer 2 of 3 = METER's last of 2, and each later cross layer reads LayerNorm(previous cross output). With
        // the fresh link LayerNorm (γ = 1, β = 0) on an already layer-normed input that is the input up to
        // eps / variance ≈ 1e-5, so the two agree to 1e-4.
        var (meter, ms) = Build(vb => new MeterModel(Tiny(2, 2), vb), new Rng(7));
        var btCfg = Tiny(3, 2, LinkTowerType.ScaledAdd);
        var (bt, bs) = Build(vb => new BridgeTowerModel(btCfg, vb), new Rng(8));
        using (Tensor.NoGrad())
        {
            foreach (var (name, t) in ms.Named) bs[name].CopyFrom(t.Detach());
            bs["cross_modal_text_link_tower.0.scaled_factor"].CopyFrom(Tensor.Zeros());
            bs["cross_modal_image_link_tower.0.scaled_factor"].CopyFrom(Tensor.Zeros());
        }
        var (ids, mask, px) = Inputs();
        var a = meter.Forward(ids, mask, px);
        var b = bt.Forward(ids, mask, px);
        TensorAssert.Close(b.TextFeatures, a.TextFeatures, 1e-4f, 1e-4f);
        TensorAssert.Close(b.ImageFeatures, a.ImageFeatures, 1e-4f, 1e-4f);
        TensorAssert.Close(b.PoolerOutput, a.PoolerOutput, 1e-4f, 1e-4f);

        // With the bridges open again (scale 1) the models differ: the construction is what made them equal.
        using (Tensor.NoGrad())
        {
            bs["cross_modal_text_link_tower.0.scaled_factor"].CopyFrom(Tensor.Ones());
            bs["cross_modal_image_link_tower.0.scaled_factor"].CopyFrom(Tensor.Ones());
        }
        var c = bt.Forward(ids, mask, px);
        var diff = c.PoolerOutput.Sub(a.PoolerOutput).Abs().Max().Item();
        Assert.True(diff > 1e-2, $"bridged BridgeTower should differ from METER, max |Δ| = {diff}");
    }

    [Fact]
    public void Gradients_reach_every_used_parameter_and_are_exact()
    {
        var (m, store) = Build(vb => new MeterModel(Tiny(2, 2), vb), new Rng(9));
        m.Train();
        var (ids, mask, px) = Inputs();
        var w = Tensor.Randn([2, 64], new Rng(10));
        var loss = m.Forward(ids, mask, px).PoolerOutput.Mul(w).Sum();
        loss.Backward();
        foreach (var (name, t) in store.Named)
        {
            // HF's text pooler is part of every checkpoint but never called by the encoder.
            if (name.StartsWith("text_model.pooler.", StringComparison.Ordinal)) { Assert.Null(t.Grad); continue; }
            Assert.True(t.Grad != null && t.Grad.Abs().Max().Item() > 0, $"no gradient reached {name}");
        }
        // Finite differences through the whole stack: the first cross input transform and a bottom text layer.
        foreach (var name in new[] { "cross_modal_image_transform.bias", "text_model.encoder.layer.0.output.LayerNorm.bias" })
            GradCheck.Check(_ => m.Forward(ids, mask, px).PoolerOutput, [store[name]], eps: 1e-2f, atol: 2e-3f, rtol: 3e-2f);
    }

    [Fact]
    public void Rejects_per_layer_transforms_naming_the_field()
    {
        var e = Assert.Throws<InvalidDataException>(() => Build(vb => new MeterModel(Tiny(2, 2) with { ShareCrossModalTransformerLayers = false }, vb), new Rng(1)));
        Assert.Contains("share_cross_modal_transformer_layers", e.Message);
    }
}
