using Vlm.Core;
using Vlm.Models.Blip;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.Blip;

/// <summary>Every BLIP reference folder: logits, losses, encoder states within the case tolerance, generated ids
/// exactly, per-step scores within tolerance; with the KV cache and without it.</summary>
public class BlipParityTests
{
    public static TheoryData<string, bool> Cases() => new()
    {
        { "blip_itm", true }, { "blip_vqa", true }, { "blip_caption", true },
        { "blip_vqa", false }, { "blip_caption", false },
    };

    internal static (float atol, float rtol) Tolerance(string caseName)
    {
        using var doc = Fixtures.CaseJson(caseName);
        var t = doc.RootElement.GetProperty("tolerance");
        return ((float)t.GetProperty("atol").GetDouble(), (float)t.GetProperty("rtol").GetDouble());
    }

    internal static void AssertMatches(string caseName, Dictionary<string, Tensor> actual)
    {
        var (atol, rtol) = Tolerance(caseName);
        var expected = Fixtures.Load(caseName, "outputs.safetensors");
        Assert.NotEmpty(expected);
        foreach (var (name, e) in expected)
        {
            Assert.True(actual.ContainsKey(name), $"{caseName}: output '{name}' not produced (have: {string.Join(", ", actual.Keys.Order())})");
            var a = actual[name];
            if (e.DType == DType.Int64)
            {
                Assert.Equal(e.ShapeArray(), a.ShapeArray());
                Assert.Equal(e.ToInt64Array(), a.ToInt64Array());
            }
            else TensorAssert.Close(e, a, atol, rtol, $"{caseName}/{name}");
        }
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Outputs_match_reference(string caseName, bool useCache)
    {
        AssertMatches(caseName, BlipCases.Run(Fixtures.Path(caseName), useCache));
    }
}
