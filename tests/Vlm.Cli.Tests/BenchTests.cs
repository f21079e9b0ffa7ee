using System.Text.Json;
using Vlm.Cli;

namespace Vlm.Cli.Tests;

/// <summary>`vlm bench` plumbing (the figures themselves are measured, never asserted).</summary>
public class BenchTests
{
    [Fact]
    public void ToJson_HasTheFieldsTorchBenchUses()
    {
        var line = Bench.ToJson(new BenchResult("gemm", "managed", "1576x768x768", 2, 123.456, 7.891234, 55.24));
        using var doc = JsonDocument.Parse(line);
        var r = doc.RootElement;
        Assert.Equal("gemm", r.GetProperty("name").GetString());
        Assert.Equal("managed", r.GetProperty("backend").GetString());
        Assert.Equal("1576x768x768", r.GetProperty("shape").GetString());
        Assert.Equal(2, r.GetProperty("threads").GetInt32());
        Assert.Equal(123.46, r.GetProperty("gflops").GetDouble());
        Assert.Equal(7.891, r.GetProperty("ms").GetDouble());
        Assert.Equal(55.2, r.GetProperty("peak_mb").GetDouble());
        Assert.DoesNotContain('\n', line);
    }

    [Fact]
    public void Registry_HasGemmAndAttention_AndRejectsDuplicates()
    {
        Assert.Contains(Bench.Cases, c => c.Name == "gemm");
        Assert.Contains(Bench.Cases, c => c.Name == "attention");
        Assert.Throws<ArgumentException>(() => Bench.Register(new BenchCase("gemm", "dup", _ => [])));
    }

    [Fact]
    public void MedianMsInterleaved_RunsEveryVariantWarmupPlusReps()
    {
        int a = 0, b = 0;
        var ms = Bench.MedianMsInterleaved([() => a++, () => b++], 5);
        Assert.Equal(2, ms.Length);
        Assert.Equal(7, a);
        Assert.Equal(7, b);
        Assert.All(ms, t => Assert.True(t >= 0));
    }

    [Fact]
    public void UnknownFilter_ExitsWithUsageError()
    {
        var root = new System.CommandLine.RootCommand();
        root.Subcommands.Add(Bench.Build());
        var err = new StringWriter();
        var saved = Console.Error;
        Console.SetError(err);
        try
        {
            Assert.Equal(2, root.Parse(["bench", "--filter", "no-such-benchmark"]).Invoke());
        }
        finally { Console.SetError(saved); }
        Assert.Contains("no benchmark matches", err.ToString());
    }
}

/// <summary>The model benchmarks' encoder (what vit_b16_forward_* and train_step_6l_b8 time).</summary>
public class BenchModelsTests
{
    [Fact]
    public void Registry_HasTheModelBenchmarksTorchBenchNames()
    {
        foreach (var n in new[] { "vit_b16_forward_b1", "vit_b16_forward_b8", "train_step_6l_b8", "bridgetower_base_forward_b1", "bridgetower_base_forward_b8", "blip_base_caption_b1" })
            Assert.Contains(Bench.Cases, c => c.Name == n);
    }

    [Fact]
    public void BridgeTowerFlop_MatchesTorchBenchFormula_AndScalesWithBatch()
    {
        // benchmarks/torch_bench.py bridgetower_flop(1) at the HF default config prints 115785013248 (2·multiply-adds).
        var c = new Vlm.Models.BridgeTower.BridgeTowerConfig();
        Assert.Equal(115_785_013_248.0, BenchBridgeTower.Flop(c, 1, 50), 0.5);
        Assert.Equal(8 * BenchBridgeTower.Flop(c, 1, 50), BenchBridgeTower.Flop(c, 8, 50), 1.0);
        Assert.True(BenchBridgeTower.Flop(c, 1, 60) > BenchBridgeTower.Flop(c, 1, 50));
        Assert.Contains(Bench.Cases, x => x.Name == "fma_peak");
    }

    [Fact]
    public void NoGradEncoder_WhichFreesIntermediates_MatchesTheRecordingOne()
    {
        var (layers, store) = BenchModels.BuildEncoder(2);
        var x = Vlm.Core.Tensor.Randn([2, 5, 768], new Vlm.Core.Rng(3));
        var withGraph = BenchModels.RunEncoder(layers, x).ToArray();
        float[] noGrad;
        using (Vlm.Core.Tensor.NoGrad())
        {
            BenchModels.RunEncoder(layers, x).Dispose();       // fills the pool with freed buffers
            noGrad = BenchModels.RunEncoder(layers, x).ToArray();
        }
        Assert.Equal(withGraph, noGrad);
        Assert.True(store.Unique().Count() == 2 * 12);       // 2 LayerNorms × 2 + 4 Linears × 2 per layer
        Assert.Equal(768 * 5 * 2, withGraph.Length);
    }

    [Fact]
    public void TrainingEncoder_WhichDisposesActivations_GivesTheSameGradientsWhenBuffersAreRecycled()
    {
        // The layer disposes its activations while recording; backward recycles them. A second step, whose buffers
        // come from the pool the first step refilled (with junk written over them in between), must give the
        // identical loss and gradients.
        var (layers, store) = BenchModels.BuildEncoder(2);
        var ps = store.Unique().ToList();
        foreach (var (_, p) in ps) p.RequireGrad();
        var x = Vlm.Core.Tensor.Randn([2, 5, 768], new Vlm.Core.Rng(4));
        (float loss, float[][] grads) Step()
        {
            foreach (var (_, p) in ps) p.Grad = null;
            var loss = BenchModels.RunEncoder(layers, x).Square().Mean();
            loss.Backward();
            return (loss.Item(), ps.Select(kv => kv.Value.Grad!.ToArray()).ToArray());
        }
        var first = Step();
        using (Vlm.Core.Tensor.NoGrad())
            for (int i = 0; i < 4; i++) BenchModels.RunEncoder(layers, x.Mul(7f)).Dispose();
        var second = Step();
        Assert.Equal(first.loss, second.loss);
        for (int i = 0; i < first.grads.Length; i++) Assert.Equal(first.grads[i], second.grads[i]);
        Assert.Contains(first.grads, g => g.Any(v => v != 0f));
    }
}
