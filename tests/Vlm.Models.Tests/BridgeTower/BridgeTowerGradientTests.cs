using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>Finite-difference checks of gradients the fixture gradient file does not cover: relative-position
/// tables (which enter the fused attention as an additive bias), link-tower scalars, and the interpolated position
/// embeddings.</summary>
public class BridgeTowerGradientTests
{
    private static BridgeTowerConfig Tiny(LinkTowerType link, TextPositionEmbedding pos) => BridgeTowerConfig.FromJson($$$"""
        {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2, "layer_norm_eps": 1e-5,
         "link_tower_type": "{{{(link == LinkTowerType.ScaledAdd ? "scaled_add" : "interpolate")}}}",
         "text_config": {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2, "intermediate_size": 48,
                         "vocab_size": 30, "max_position_embeddings": 7, "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0,
                         "position_embedding_type": "{{{(pos == TextPositionEmbedding.RelativeKey ? "relative_key" : "relative_key_query")}}}"},
         "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "image_size": 16, "patch_size": 8}}
        """);

    [Theory]
    [InlineData(LinkTowerType.Interpolate, TextPositionEmbedding.RelativeKeyQuery)]
    [InlineData(LinkTowerType.ScaledAdd, TextPositionEmbedding.RelativeKey)]
    public void Relative_position_tables_and_link_scalars_get_exact_gradients(LinkTowerType link, TextPositionEmbedding pos)
    {
        var cfg = Tiny(link, pos);
        var itm = new BridgeTowerForImageAndTextRetrieval(cfg, null, new Rng(11));
        itm.Train();
        var rng = new Rng(12);
        var ids = Tensor.FromArray(new long[] { 0, 5, 9, 17, 2, 0, 8, 2, 1, 1 }, 2, 5);
        var mask = Tensor.FromArray(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, 2, 5);
        var px = Tensor.Randn([2, 3, 24, 16], rng);
        var labels = Tensor.FromArray(new long[] { 1, 0 }, 2);
        var opts = new BridgeTowerForwardOptions { InterpolatePosEncoding = true };
        string scalar = link == LinkTowerType.ScaledAdd ? "scaled_factor" : "beta";
        // Each row checks a different relative table (the text tower's, or a cross-modal cross-attention's) to
        // keep the number of finite-difference forwards down.
        var checks = new List<string>
        {
            pos == TextPositionEmbedding.RelativeKeyQuery
                ? "bridgetower.cross_modal_image_layers.1.crossattention.self.distance_embedding.weight"
                : "bridgetower.text_model.encoder.layer.0.attention.self.distance_embedding.weight",
            $"bridgetower.cross_modal_text_link_tower.0.{scalar}",
            $"bridgetower.cross_modal_image_link_tower.0.{scalar}",
        };
        if (link == LinkTowerType.Interpolate) checks.Add("bridgetower.vision_model.visual.embeddings.position_embedding.weight");
        foreach (var name in checks)
        {
            var p = itm.Parameters[name];
            GradCheck.Check(_ => itm.Forward(ids, mask, px, labels, opts).Loss!, [p], eps: 1e-2f, atol: 2e-3f, rtol: 3e-2f);
        }
    }

    [Theory]
    [InlineData(2, 3)]
    [InlineData(3, 6)]
    [InlineData(4, 4)]
    [InlineData(5, 2)]
    public void Bicubic_matrix_matches_F_interpolate(int inSize, int outSize)
    {
        var rng = new Rng((ulong)(inSize * 10 + outSize));
        var img = Tensor.Randn([1, 1, inSize, inSize], rng);
        var expected = F.InterpolateBicubic(img, outSize, outSize).Reshape(outSize, outSize);
        var m = BtVisionTransformer.BicubicMatrix(inSize, outSize);
        var mt = new float[outSize * inSize];
        for (int i = 0; i < outSize; i++) for (int j = 0; j < inSize; j++) mt[i * inSize + j] = m[i, j];
        var M = Tensor.FromArray(mt, outSize, inSize);
        var actual = M.MatMul(img.Reshape(inSize, inSize)).MatMul(M.T);
        TensorAssert.Close(expected, actual, 1e-5f, 1e-5f, "bicubic");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Vision_stop_gradient_detaches_every_layer_output(bool stop)
    {
        var cfg = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_vision_options", "config.json"));
        cfg = cfg with { VisionConfig = cfg.VisionConfig with { StopGradient = stop } };
        var (m, store) = BridgeTowerWeights.LoadModel(cfg, null, new Rng(13));
        var px = Tensor.Randn([1, 3, 32, 32], new Rng(14));
        var layers = m.Vision.ForwardAllLayers(px);                       // (blocks, B, 1 + patches, D)
        Assert.Equal([2, 1, 17, 64], layers.ShapeArray());
        layers.Mul(layers).Sum().Backward();
        Assert.NotNull(store["vision_model.visual.ln_separate.0.weight"].Grad);
        Assert.Equal(stop, store["vision_model.visual.embeddings.class_embedding"].Grad is null);
        Assert.Equal(stop, store["vision_model.visual.transformer.resblocks.1.mlp.c_fc.weight"].Grad is null);
    }
}
