using Vlm.Core;
using Vlm.Models.BridgeTower;

namespace Vlm.Cli;

/// <summary>bridgetower_base_forward_b1 / _b8: BridgeTowerModel with the HF default (bridgetower-base) config,
/// random weights, no-grad eval forward of B images at 288 px with 50-token texts — the same call as
/// benchmarks/torch_bench.py's bench_bridgetower.</summary>
public static class BenchBridgeTower
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("bridgetower_base_forward_b1", "BridgeTowerModel (base config) forward, B1 288px 50tok", o => Run(o, 1));
        yield return new BenchCase("bridgetower_base_forward_b8", "BridgeTowerModel (base config) forward, B8 288px 50tok", o => Run(o, 8));
    }

    private static IEnumerable<BenchResult> Run(BenchOptions o, int batch)
    {
        var (model, _) = BridgeTowerWeights.LoadModel(new BridgeTowerConfig(), null, new Rng(0));
        model.Eval();
        var rng = new Rng(1);
        var ids = new long[batch * 50];
        for (int i = 0; i < ids.Length; i++) ids[i] = 3 + (long)(rng.NextDouble() * 997);
        var input = Tensor.FromArray(ids, batch, 50);
        var pixels = Tensor.Randn([batch, 3, 288, 288], rng);
        double ms;
        using (Tensor.NoGrad())
            ms = Bench.MedianMs(() =>
            {
                var r = model.Forward(input, null, pixels);
                r.TextFeatures.Dispose(); r.ImageFeatures.Dispose(); r.PoolerOutput.Dispose();
            }, o.Reps);
        yield return new BenchResult($"bridgetower_base_forward_b{batch}", "vlm", $"B{batch} 288px 50tok", o.Threads, 0.0, ms, Bench.PeakMb());
    }
}
