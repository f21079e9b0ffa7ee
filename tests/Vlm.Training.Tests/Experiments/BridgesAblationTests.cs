using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Training.Eval;
using Vlm.Training.Experiments;
using Vlm.Training.Model;
using Vlm.Training.Training;

namespace Vlm.Training.Tests.Experiments;

public class StatsTests
{
    [Fact]
    public void T_quantiles_match_the_table_and_the_normal_limit()
    {
        Assert.Equal(12.706, Stats.TQuantile975(1), 3);
        Assert.Equal(4.303, Stats.TQuantile975(2), 3);
        Assert.Equal(2.042, Stats.TQuantile975(30), 3);
        // scipy.stats.t.ppf(0.975, df): 60 → 2.0003, 120 → 1.9799, 1000 → 1.9623.
        Assert.Equal(2.0003, Stats.TQuantile975(60), 3);
        Assert.Equal(1.9799, Stats.TQuantile975(120), 3);
        Assert.Equal(1.9623, Stats.TQuantile975(1000), 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => Stats.TQuantile975(0));
    }

    [Fact]
    public void Summary_is_mean_sample_sd_and_t_half_width()
    {
        var s = Stats.Summarise([1.0, 2.0, 3.0]);
        Assert.Equal(2.0, s.Mean, 12);
        Assert.Equal(1.0, s.Sd, 12);
        Assert.Equal(4.303 / Math.Sqrt(3), s.HalfWidth, 6);
        Assert.False(s.ExcludesZero);                        // 2 ± 2.48 reaches below 0
        Assert.True(Stats.Summarise([2.0, 3.0, 4.0]).ExcludesZero);
        Assert.True(Stats.Summarise([-2.0, -3.0, -4.0]).ExcludesZero);
        var one = Stats.Summarise([0.5]);
        Assert.Equal(0.5, one.Mean);
        Assert.True(double.IsNaN(one.HalfWidth));
        Assert.False(one.ExcludesZero);
        Assert.Equal(0, Stats.Summarise([]).N);
    }
}

public class BridgesAblationTests
{
    private static AblationResult Synthetic()
    {
        var runs = new List<AblationRun>();
        for (ulong s = 0; s < 3; s++)
        {
            double m = 0.5 + 0.1 * s;
            runs.Add(new AblationRun("meter", s, 100, m, 0.6, 0.1, 0.2, 1));
            runs.Add(new AblationRun("bridgetower-add", s, 104, m + 0.03 + 0.01 * s, 0.6, 0.1, 0.2, 1));
            runs.Add(new AblationRun("bridgetower-scaled_add", s, 106, m, 0.6, 0.1, 0.2, 1));
            runs.Add(new AblationRun("bridgetower-interpolate", s, 106, m - 0.02, 0.6, 0.1, 0.2, 1));
        }
        return new AblationResult(runs, BridgesAblation.Variants, BridgesAblation.DefaultScale(0), 3, 10);
    }

    [Fact]
    public void Paired_differences_use_the_same_seed()
    {
        var r = Synthetic();
        // Seeds differ by 10 points each, but the paired differences are 3, 4, 5 points.
        var d = BridgesAblation.PairedVsMeter(r, "bridgetower-add", x => x.Vqa);
        Assert.Equal(0.04, d.Mean, 9);
        Assert.Equal(0.01, d.Sd, 9);
        Assert.True(d.ExcludesZero);
        var unpaired = BridgesAblation.Summary(r, "bridgetower-add", x => x.Vqa);
        Assert.True(unpaired.HalfWidth > 0.2);
        var constant = BridgesAblation.PairedVsMeter(r, "bridgetower-interpolate", x => x.Vqa);
        Assert.Equal(-0.02, constant.Mean, 9);
        Assert.Equal(0.0, constant.HalfWidth, 9);
    }

    [Fact]
    public void Table_and_json_report_every_variant_and_metric()
    {
        var r = Synthetic();
        var w = new StringWriter();
        BridgesAblation.PrintTable(r, w);
        var text = w.ToString();
        Assert.Contains("| meter | 100 | 60.0 ± 24.8 | 60.0 ± 0.0 | 10.0 ± 0.0 | 20.0 ± 0.0 |", text);
        Assert.Contains("| bridgetower-add | +4.0 ± 2.5 * | 0.0 ± 0.0 | 0.0 ± 0.0 | 0.0 ± 0.0 |", text);
        var j = BridgesAblation.ToJson(r);
        Assert.Equal(4, j["variants"]!.AsObject().Count);
        Assert.Equal(0.04, j["variants"]!["bridgetower-add"]!["paired_difference_vs_meter"]!["vqa_accuracy"]!["mean"]!.GetValue<double>(), 4);
        Assert.Null(j["variants"]!["meter"]!["link_tower_type"]);
        Assert.Equal(12, j["runs"]!.AsArray().Count);
    }
}

public class UniModalTowerFileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "vlm-towers-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    private static BridgeTowerConfig Cfg(int vocab = 40) => new()
    {
        HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 1, ContrastiveHiddenSize = 64, NumLabels = 3,
        TextConfig = new BridgeTowerTextConfig { VocabSize = vocab, HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 1, IntermediateSize = 96, MaxPositionEmbeddings = 12 },
        VisionConfig = new BridgeTowerVisionConfig { HiddenSize = 64, NumHiddenLayers = 2, ImageSize = 32, PatchSize = 16 },
    };

    [Fact]
    public void Towers_move_between_bridgetower_and_meter_and_nothing_else_does()
    {
        var bt = new MultiTaskBridgeTower(Cfg(), new Rng(1), 5);
        var meter = new MultiTaskBridgeTower(Cfg(), new Rng(2), 5, meter: true);
        Assert.True(meter.IsMeter);
        Assert.IsType<Vlm.Models.Meter.MeterModel>(meter.Base);
        // Same parameter names but the link towers.
        var btNames = bt.Parameters.Named.Select(kv => kv.Key).ToHashSet();
        var meterNames = meter.Parameters.Named.Select(kv => kv.Key).ToHashSet();
        Assert.Subset(btNames, meterNames);
        Assert.All(btNames.Except(meterNames), n => Assert.Contains("_link_tower.", n));

        var path = Path.Combine(_dir, UniModalTowerFile.FileName);
        UniModalTowerFile.Save(bt, path);
        var crossBefore = meter.Parameters["bridgetower.cross_modal_text_layers.0.output.dense.weight"].ToArray();
        int n = UniModalTowerFile.Load(meter, path);
        Assert.True(n > 10);
        foreach (var (name, t) in meter.Parameters.Named)
            if (UniModalTowerFile.IsUniModal(name)) Assert.Equal(bt.Parameters[name].ToArray(), t.ToArray());
        Assert.Equal(crossBefore, meter.Parameters["bridgetower.cross_modal_text_layers.0.output.dense.weight"].ToArray());
        Assert.Contains(UniModalTowerFile.Prefixes, p => "mlm_score.decoder.weight".StartsWith(p, StringComparison.Ordinal));

        // Both encoders run the shared heads.
        var ids = Tensor.FromArray(new long[] { 0, 5, 9, 2 }, 1, 4);
        var px = Tensor.Randn([1, 3, 32, 32], new Rng(3));
        var o = meter.Forward(ids, Tensor.Ones(1, 4), px);
        Assert.Equal([1, 2], meter.ItmLogits(o).ShapeArray());
        Assert.Equal([1, 64], meter.Itc(o).Image.ShapeArray());

        var other = new MultiTaskBridgeTower(Cfg(vocab: 41), new Rng(1), 5);
        var e = Assert.Throws<InvalidDataException>(() => UniModalTowerFile.Load(other, path));
        Assert.Contains(path, e.Message);
        Assert.Contains("word_embeddings", e.Message);
    }
}
