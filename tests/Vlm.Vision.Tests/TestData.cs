using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Vision.Tests;

/// <summary>Data made by Data/make_test_data.py (Pillow 9.4) and the shared image_preprocessing fixture.</summary>
internal static class TestData
{
    public static string Dir { get; } = Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Vision.Tests", "Data");

    private static readonly Lazy<Dictionary<string, Tensor>> ExpectedLazy = new(() => SafeTensors.Load(Path.Combine(Dir, "expected.safetensors")));
    public static Dictionary<string, Tensor> Expected => ExpectedLazy.Value;

    private static readonly Lazy<JsonDocument> MetaLazy = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "expected.json"))));
    public static JsonElement Meta => MetaLazy.Value.RootElement;

    public static string FixtureDir => Fixtures.Path("image_preprocessing");

    public static byte[] Bytes(Tensor t) => t.Contiguous().SpanU8.ToArray();

    /// <summary>Asserts equal uint8 contents and shapes, reporting the first and the largest difference.</summary>
    public static void Equal(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.Shape.SequenceEqual(actual.Shape), $"{what}: shape {actual.ShapeString} != expected {expected.ShapeString}");
        var e = expected.ToArray(); var a = actual.ToArray();
        int bad = 0, first = -1; float maxd = 0;
        for (int i = 0; i < e.Length; i++)
            if (e[i] != a[i]) { bad++; if (first < 0) first = i; maxd = Math.Max(maxd, Math.Abs(e[i] - a[i])); }
        Assert.True(bad == 0, $"{what}: {bad}/{e.Length} values differ (max |diff| {maxd}); first at {first}: {a[Math.Max(first, 0)]} vs {e[Math.Max(first, 0)]}");
    }

    public static Tensor Rgb(Image img) => img.ToRgb().ToTensor();
}
