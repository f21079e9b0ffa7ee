using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

public class BridgeTowerBehaviourTests
{
    private static BridgeTowerConfig Config(string c) => BridgeTowerConfig.Load(Fixtures.Path(c, "config.json"));

    private static Dictionary<string, Tensor> Run(BridgeTowerModel m, Dictionary<string, Tensor> inputs, bool all = false)
    {
        m.Eval();
        var d = new Dictionary<string, Tensor>();
        using (Tensor.NoGrad())
            m.Forward(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                new BridgeTowerForwardOptions { OutputHiddenStates = all, OutputAttentions = all }).AddNamed(d);
        return d;
    }

    private static void AllClose(Dictionary<string, Tensor> e, Dictionary<string, Tensor> a, float tol = 1e-5f)
    {
        Assert.Equal(e.Keys.Order(), a.Keys.Order());
        foreach (var (k, v) in e) TensorAssert.Close(v, a[k], tol, tol, k);
    }

    private static bool Differs(Dictionary<string, Tensor> e, Dictionary<string, Tensor> a) =>
        e.Any(kv => kv.Value.ToArray().Zip(a[kv.Key].ToArray()).Any(p => MathF.Abs(p.First - p.Second) > 1e-3f));

    /// <summary>A fresh model's state dict with every LayerNorm / link-tower scalar randomised too, so that
    /// copying the wrong tensor anywhere shows.</summary>
    private static Dictionary<string, Tensor> RandomWeights(BridgeTowerConfig cfg, ulong seed)
    {
        var (_, store) = BridgeTowerWeights.LoadModel(cfg, null, new Rng(seed));
        var rng = new Rng(seed + 100);
        var d = new Dictionary<string, Tensor>();
        foreach (var (k, v) in store.Named)
            d[k] = k.Contains("LayerNorm") || k.Contains("layernorm") || k.Contains("ln_") || v.Rank == 0
                ? Tensor.Randn(v.ShapeArray(), rng, k.EndsWith("weight") ? 1f : 0f, 0.2f)
                : v.Detach();
        return d;
    }

    [Fact]
    public void Batch_items_one_at_a_time_match_the_batch()
    {
        var cfg = Config("bridgetower_model");
        using var w = BridgeTowerWeights.OpenFolder(Fixtures.Path("bridgetower_model"));
        var (m, _) = BridgeTowerWeights.LoadModel(cfg, w);
        var inputs = Fixtures.Load("bridgetower_model", "inputs.safetensors");
        var batch = Run(m, inputs, all: true);
        for (int i = 0; i < 2; i++)
        {
            var one = Run(m, inputs.ToDictionary(kv => kv.Key, kv => kv.Value.Narrow(0, i, 1).Contiguous()), all: true);
            foreach (var (k, v) in batch)
            {
                // Image tower states are (seq, batch, dim), as HF returns them.
                var row = k.StartsWith("hidden_states.1.", StringComparison.Ordinal) ? v.Narrow(1, i, 1) : v.Narrow(0, i, 1);
                TensorAssert.Close(row.Contiguous(), one[k], 1e-5f, 1e-5f, $"item {i} {k}");
            }
        }
    }

    [Fact]
    public void Per_layer_cross_modal_transforms_with_identical_weights_reproduce_the_shared_model()
    {
        var cfg = Config("bridgetower_error_share_cross_modal_transformer_layers");
        Assert.False(cfg.ShareCrossModalTransformerLayers);
        var shared = cfg with { ShareCrossModalTransformerLayers = true };
        var w = RandomWeights(shared, 1);
        var inputs = Fixtures.Load("bridgetower_error_share_cross_modal_transformer_layers", "inputs.safetensors");
        var expected = Run(BridgeTowerWeights.LoadModel(shared, new InMemoryWeights(w)).Model, inputs, all: true);

        Dictionary<string, Tensor> PerLayer(Func<int, string, Tensor> value)
        {
            var d = w.Where(kv => !kv.Key.StartsWith("cross_modal_text_transform.") && !kv.Key.StartsWith("cross_modal_image_transform."))
                .ToDictionary(kv => kv.Key, kv => kv.Value);
            for (int i = 0; i < cfg.NumHiddenLayers; i++)
                foreach (var t in new[] { "cross_modal_text_transform", "cross_modal_image_transform" })
                    foreach (var p in new[] { "weight", "bias" })
                        d[$"{t}.{i}.{p}"] = value(i, $"{t}.{p}");
            return d;
        }
        var same = BridgeTowerWeights.LoadModel(cfg, new InMemoryWeights(PerLayer((_, k) => w[k]))).Model;
        AllClose(expected, Run(same, inputs, all: true));
        // Different weights in layer 1 change only what follows the bridge: layer 0 is untouched.
        var rng = new Rng(9);
        var differentW = PerLayer((i, k) => i == 0 ? w[k] : Tensor.Randn(w[k].ShapeArray(), rng, 0f, 0.1f));
        var different = Run(BridgeTowerWeights.LoadModel(cfg, new InMemoryWeights(differentW)).Model, inputs, all: true);
        TensorAssert.Close(expected["hidden_states.2.0.0"], different["hidden_states.2.0.0"], 1e-5f, 1e-5f, "cross layer 0");
        Assert.True(Differs(expected, different));
    }

    [Fact]
    public void One_shared_link_tower_serves_every_layer()
    {
        var cfg = Config("bridgetower_error_share_link_tower_layers") with { LinkTowerType = LinkTowerType.ScaledAdd };
        Assert.True(cfg.ShareLinkTowerLayers);
        Assert.Equal(2, cfg.NumHiddenLayers);
        var w = RandomWeights(cfg, 2);
        var inputs = Fixtures.Load("bridgetower_error_share_link_tower_layers", "inputs.safetensors");
        var shared = Run(BridgeTowerWeights.LoadModel(cfg, new InMemoryWeights(w)).Model, inputs, all: true);
        var perCfg = cfg with { ShareLinkTowerLayers = false };
        var d = w.Where(kv => !kv.Key.Contains("_link_tower.")).ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (k, v) in w.Where(kv => kv.Key.Contains("_link_tower.")))
            d[k.Replace("_link_tower.", "_link_tower.0.")] = v;
        AllClose(shared, Run(BridgeTowerWeights.LoadModel(perCfg, new InMemoryWeights(d)).Model, inputs, all: true));
        // 3 cross-modal layers: the one tower is applied at both bridges, equal to two per-layer copies of it.
        var cfg3 = cfg with { NumHiddenLayers = 2, TextConfig = cfg.TextConfig with { NumHiddenLayers = 3 }, VisionConfig = cfg.VisionConfig with { NumHiddenLayers = 3 } };
        var w3 = RandomWeights(cfg3 with { NumHiddenLayers = 3 }, 3);
        var s3 = Run(BridgeTowerWeights.LoadModel(cfg3 with { NumHiddenLayers = 3 }, new InMemoryWeights(w3)).Model, inputs, all: true);
        var d3 = w3.Where(kv => !kv.Key.Contains("_link_tower.")).ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (k, v) in w3.Where(kv => kv.Key.Contains("_link_tower.")))
            for (int i = 0; i < 2; i++) d3[k.Replace("_link_tower.", $"_link_tower.{i}.")] = v;
        var p3 = Run(BridgeTowerWeights.LoadModel(cfg3 with { NumHiddenLayers = 3, ShareLinkTowerLayers = false }, new InMemoryWeights(d3)).Model, inputs, all: true);
        AllClose(s3, p3);
    }

    [Fact]
    public void Separate_layernorms_start_from_the_vision_encoder_ln_post()
    {
        var cfg = Config("bridgetower_error_init_layernorm_separate");
        Assert.True(cfg.InitLayernormFromVisionEncoder);
        Assert.False(cfg.VisionConfig.ShareLayernorm);
        // Fresh model: each ln_separate is a copy (not an alias) of ln_post.
        var (fresh, store) = BridgeTowerWeights.LoadModel(cfg, null, new Rng(4));
        Assert.Equal(cfg.VisionConfig.NumHiddenLayers, fresh.Vision.LnSeparate!.Count);
        Assert.NotSame(store["vision_model.visual.ln_post.weight"], fresh.Vision.LnSeparate[0].Weight);
        // Loading a checkpoint of a plain vision encoder (ln_post, no ln_separate): the separate LayerNorms take
        // ln_post's values, and the model runs like the shared-LayerNorm one.
        var sharedCfg = cfg with { VisionConfig = cfg.VisionConfig with { ShareLayernorm = true } };
        var w = RandomWeights(sharedCfg, 5);
        var (m, _) = BridgeTowerWeights.LoadModel(cfg, new InMemoryWeights(w));
        for (int i = 0; i < m.Vision.LnSeparate!.Count; i++)
        {
            TensorAssert.Close(w["vision_model.visual.ln_post.weight"], m.Vision.LnSeparate[i].Weight, 0f, 0f, "weight");
            TensorAssert.Close(w["vision_model.visual.ln_post.bias"], m.Vision.LnSeparate[i].Bias, 0f, 0f, "bias");
        }
        var (ms, _) = BridgeTowerWeights.LoadModel(sharedCfg, new InMemoryWeights(w));
        var inputs = Fixtures.Load("bridgetower_error_share_link_tower_layers", "inputs.safetensors");
        using (Tensor.NoGrad())
        {
            m.Eval(); ms.Eval();
            TensorAssert.Close(ms.Vision.ForwardAllLayers(inputs["pixel_values"]), m.Vision.ForwardAllLayers(inputs["pixel_values"]), 1e-6f, 1e-6f, "vision layers");
        }
        AllClose(Run(ms, inputs), Run(m, inputs));
    }

    [Theory]
    [InlineData("bridgetower_error_share_cross_modal_transformer_layers")]
    [InlineData("bridgetower_error_share_link_tower_layers")]
    public void Configurations_hf_cannot_run_run_here(string caseName)
    {
        var outs = BridgeTowerCases.Run(Fixtures.Path(caseName));
        Assert.Equal([2, 64], outs["pooler_output"].ShapeArray());
        Assert.All(outs.Values, t => Assert.All(t.ToArray(), v => Assert.True(float.IsFinite(v))));
    }

    [Fact]
    public void Construct_stage_error_case_builds()
    {
        var outs = BridgeTowerCases.Run(Fixtures.Path("bridgetower_error_init_layernorm_separate"));
        Assert.Empty(outs);
    }

    [Fact]
    public void Bicubic_matrix_is_identity_at_the_same_size_and_rows_sum_to_one()
    {
        var m = BtVisionTransformer.BicubicMatrix(4, 4);
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) Assert.Equal(i == j ? 1f : 0f, m[i, j], 6);
        var up = BtVisionTransformer.BicubicMatrix(4, 7);
        for (int i = 0; i < 7; i++) Assert.Equal(1f, Enumerable.Range(0, 4).Sum(j => up[i, j]), 5);
    }
}
