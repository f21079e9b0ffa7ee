using Vlm.Models.BridgeTower;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>Full-size configurations build (dry: nothing allocated) exactly the parameter names and shapes of the
/// approved lists in Data/ (generated independently by Data/make_param_lists.py; see its header for how).</summary>
public class BridgeTowerStructureTests
{
    private static string Data(string file) => Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Models.Tests", "BridgeTower", "Data", file);

    private static Dictionary<string, string> Approved(string file) =>
        File.ReadAllLines(Data(file)).Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('\t')).ToDictionary(p => p[0], p => p[1]);

    [Theory]
    [InlineData("bridgetower-base", BridgeTowerHead.Model, 326347008L)]
    [InlineData("bridgetower-large-itm-mlm-itc", BridgeTowerHead.ContrastiveLearning, 866612737L)]
    public void Parameter_names_and_shapes_match_the_approved_list(string name, BridgeTowerHead head, long numel)
    {
        var config = BridgeTowerConfig.Load(Data(name + ".config.json"));
        var actual = BridgeTowerWeights.Describe(config, head);
        Assert.Equal(actual.Count, actual.Select(kv => kv.Key).Distinct().Count());
        var mine = actual.ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value));
        var approved = Approved(name + ".params.txt");
        var missing = approved.Keys.Except(mine.Keys).Order().ToList();
        var extra = mine.Keys.Except(approved.Keys).Order().ToList();
        var shapes = approved.Keys.Intersect(mine.Keys).Where(k => approved[k] != mine[k]).Select(k => $"{k}: {mine[k]} vs {approved[k]}").ToList();
        Assert.True(missing.Count + extra.Count + shapes.Count == 0,
            $"missing: {string.Join(", ", missing.Take(10))}\nextra: {string.Join(", ", extra.Take(10))}\nshapes: {string.Join(", ", shapes.Take(10))}");
        Assert.Equal(numel, actual.Sum(kv => kv.Value.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Dry_build_lists_variant_parameters()
    {
        var c = BridgeTowerConfig.Load(Fixtures.Path("bridgetower_variant_link_scaled_add", "config.json"));
        var names = BridgeTowerWeights.Describe(c, BridgeTowerHead.Model).Select(kv => kv.Key).ToHashSet();
        Assert.Contains("cross_modal_text_link_tower.0.scaled_factor", names);
        var shared = c with { ShareLinkTowerLayers = true, ShareCrossModalTransformerLayers = false };
        var n2 = BridgeTowerWeights.Describe(shared, BridgeTowerHead.Model).Select(kv => kv.Key).ToHashSet();
        Assert.Contains("cross_modal_text_link_tower.scaled_factor", n2);
        Assert.Contains("cross_modal_image_transform.1.weight", n2);
        Assert.DoesNotContain("cross_modal_image_transform.weight", n2);
    }
}
