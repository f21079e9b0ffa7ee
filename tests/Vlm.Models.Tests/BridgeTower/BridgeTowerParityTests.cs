using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>Every BridgeTower reference folder: all stored outputs (features, logits, losses, hidden states,
/// attention probabilities) reproduced within the case's tolerance.</summary>
public class BridgeTowerParityTests
{
    public static TheoryData<string> Cases() => new()
    {
        "bridgetower_model", "bridgetower_itm", "bridgetower_mlm", "bridgetower_contrastive",
        "bridgetower_variant_link_scaled_add", "bridgetower_variant_link_interpolate",
        "bridgetower_variant_single_cross_layer_shared_link", "bridgetower_variant_relative_key",
        "bridgetower_variant_relative_key_query", "bridgetower_variant_mlm_tied_activations",
        "bridgetower_variant_vision_options", "bridgetower_variant_interpolate_pos_encoding",
    };

    internal static (float atol, float rtol) Tolerance(string caseName)
    {
        using var doc = Fixtures.CaseJson(caseName);
        var t = doc.RootElement.GetProperty("tolerance");
        return ((float)t.GetProperty("atol").GetDouble(), (float)t.GetProperty("rtol").GetDouble());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Outputs_match_reference(string caseName)
    {
        var (atol, rtol) = Tolerance(caseName);
        var actual = BridgeTowerCases.Run(Fixtures.Path(caseName));
        var expected = Fixtures.Load(caseName, "outputs.safetensors");
        Assert.NotEmpty(expected);
        foreach (var (name, e) in expected)
        {
            Assert.True(actual.ContainsKey(name), $"{caseName}: output '{name}' not produced (have: {string.Join(", ", actual.Keys.Order())})");
            TensorAssert.Close(e, actual[name], atol, rtol, $"{caseName}/{name}");
        }
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
    }

    /// <summary>Inside Tensor.Inference the Linear layers read weights packed once (PackedWeights): every output
    /// must be the same bits as under NoGrad, in two passes (the second reuses the packed copies).</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Inference_scope_gives_the_same_bits(string caseName)
    {
        var noGrad = BridgeTowerCases.Run(Fixtures.Path(caseName));
        for (int pass = 0; pass < 2; pass++)
        {
            var inference = BridgeTowerCases.Run(Fixtures.Path(caseName), inference: true);
            Assert.Equal(noGrad.Keys.Order(), inference.Keys.Order());
            foreach (var (name, t) in noGrad) TensorAssert.Equal(t, inference[name], $"{caseName}/{name} pass {pass}");
        }
    }

    [Fact]
    public void Contrastive_gradients_match_reference()
    {
        const string caseName = "bridgetower_contrastive";
        var grads = BridgeTowerCases.RunGradients(Fixtures.Path(caseName));
        var expected = Fixtures.Load(caseName, "grads.safetensors");
        Assert.Equal(15, expected.Count);
        foreach (var (name, e) in expected)
            TensorAssert.Close(e, grads[name], 1e-4f, 1e-3f, $"grad {name}");
    }
}
