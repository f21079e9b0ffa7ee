using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

public class BridgeTowerConfigTests
{
    [Fact]
    public void Absent_keys_take_hf_defaults()
    {
        var c = BridgeTowerConfig.FromJson("""{"model_type": "bridgetower", "text_config": {"vocab_size": 99}, "vision_config": {}}""");
        Assert.Equal(768, c.HiddenSize);
        Assert.Equal(6, c.NumHiddenLayers);
        Assert.Equal(LinkTowerType.Add, c.LinkTowerType);
        Assert.True(c.ShareCrossModalTransformerLayers);
        Assert.False(c.ShareLinkTowerLayers);
        Assert.Equal(99, c.TextConfig.VocabSize);
        Assert.Equal(514, c.TextConfig.MaxPositionEmbeddings);
        Assert.Equal(1, c.TextConfig.TypeVocabSize);
        Assert.Equal(1, c.TextConfig.PadTokenId);
        Assert.Equal(TextPositionEmbedding.Absolute, c.TextConfig.PositionEmbeddingType);
        Assert.Equal(288, c.VisionConfig.ImageSize);
        Assert.Equal(16, c.VisionConfig.PatchSize);
        Assert.True(c.VisionConfig.ShareLayernorm);
        Assert.Equal(12, c.VisionConfig.NumHeads);
        Assert.Equal(7, c.SplitIndex);
        Assert.Null(c.ContrastiveHiddenSize);
    }

    [Fact]
    public void Fixture_configs_bind_every_switch()
    {
        var c = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_vision_options", "config.json"));
        Assert.True(c.VisionConfig.RemoveLastLayer);
        Assert.False(c.VisionConfig.ShareLayernorm);
        Assert.True(c.VisionConfig.StopGradient);
        Assert.Equal(2, c.VisionConfig.NumBlocks);
        Assert.Equal(0.002f, c.VisionConfig.LayerNormEps);
        Assert.Equal(0.001f, c.TextConfig.LayerNormEps);
        Assert.Equal(0.005f, c.LayerNormEps);
        var m = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_mlm_tied_activations", "config.json"));
        Assert.Equal("relu", m.HiddenAct);
        Assert.Equal("gelu_new", m.TextConfig.HiddenAct);
        Assert.True(m.TieWordEmbeddings);
        Assert.Equal(TextPositionEmbedding.RelativeKeyQuery,
            BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_relative_key_query", "config.json")).TextConfig.PositionEmbeddingType);
        Assert.Equal(LinkTowerType.Interpolate, BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_link_interpolate", "config.json")).LinkTowerType);
        var ct = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_contrastive", "config.json"));
        Assert.Equal(24, ct.ContrastiveHiddenSize);
        Assert.Equal(2.6592f, ct.LogitScaleInitValue);
    }

    [Theory]
    [InlineData("""{"link_tower_type": "concat"}""", "link_tower_type 'concat'")]
    [InlineData("""{"text_config": {"position_embedding_type": "rotary"}}""", "text_config.position_embedding_type 'rotary'")]
    [InlineData("""{"text_config": {"hidden_act": "swiglu"}}""", "text_config.hidden_act 'swiglu'")]
    [InlineData("""{"hidden_act": "mish"}""", "hidden_act 'mish'")]
    [InlineData("""{"hidden_size": "big"}""", "hidden_size must be an integer")]
    [InlineData("""{"vision_config": {"share_layernorm": 1}}""", "vision_config.share_layernorm must be true or false")]
    [InlineData("""{"hidden_size": 512}""", "hidden_size (512) must equal text_config.hidden_size (768)")]
    [InlineData("""{"num_hidden_layers": 13}""", "num_hidden_layers (13)")]
    [InlineData("""{"vision_config": {"num_hidden_layers": 6}}""", "vision_config has 6 resblocks")]
    [InlineData("""{"model_type": "blip"}""", "model_type is 'blip'")]
    [InlineData("""[1, 2]""", "not a JSON object")]
    [InlineData("""{"text_config": 3}""", "text_config must be an object")]
    public void Bad_values_name_the_field(string json, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => BridgeTowerConfig.FromJson(json, "cfg.json"));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("cfg.json: ", e.Message);
    }

    [Fact]
    public void Id2label_gives_answers_and_num_labels()
    {
        var c = BridgeTowerConfig.FromJson("""{"id2label": {"1": "no", "0": "yes", "2": "2"}}""");
        Assert.Equal(["yes", "no", "2"], c.Id2Label!);
        Assert.Equal(3, c.NumLabels);
        Assert.Throws<InvalidDataException>(() => BridgeTowerConfig.FromJson("""{"id2label": {"0": "a", "2": "b"}}"""));
    }
}
