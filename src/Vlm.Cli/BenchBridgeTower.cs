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
        yield return new BenchResult($"bridgetower_base_forward_b{batch}", "vlm", $"B{batch} 288px 50tok", o.Threads,
            Flop(new BridgeTowerConfig(), batch, 50) / ms / 1e6, ms, Bench.PeakMb());
    }

    /// <summary>Matmul FLOPs of one BridgeTowerModel forward (2 per multiply-add; patch embedding, the 12 + 12
    /// uni-modal layers that run, the per-layer transforms, both cross-modal stacks with their attention products,
    /// the poolers). Element-wise work (LayerNorm, softmax, GELU, link towers) is not counted. torch_bench.py uses
    /// the same formula, so the two GFLOP/s columns compare.</summary>
    public static double Flop(BridgeTowerConfig c, int batch, int textLen)
    {
        var t = c.TextConfig; var v = c.VisionConfig;
        double L = textLen, grid = v.ImageSize / v.PatchSize, N = grid * grid + 1;
        double dt = t.HiddenSize, dv = v.HiddenSize, h = c.HiddenSize, it = t.IntermediateSize;
        double patch = 2 * (N - 1) * 3 * v.PatchSize * v.PatchSize * dv;
        double vision = t.NumHiddenLayers * (2 * N * dv * dv * 12 + 4 * N * N * dv);       // blocks that run: one per text layer
        double text = t.NumHiddenLayers * (2 * L * dt * dt * 4 + 2 * L * dt * it * 2 + 4 * L * L * dt);
        double transforms = c.NumHiddenLayers * (2 * L * dt * h + 2 * N * dv * h);
        static double Cross(double q, double kv, double h, double inter) =>
            2 * q * h * h * 4 + 4 * q * q * h                                  // self-attention
            + 2 * q * h * h * 2 + 2 * kv * h * h * 2 + 4 * q * kv * h           // cross-attention (q, o; k, v from the other side)
            + 2 * q * h * inter * 2;                                            // FFN
        double cross = c.NumHiddenLayers * (Cross(N, L, h, it) + Cross(L, N, h, it));
        double poolers = 2 * 2 * h * h;
        return batch * (patch + vision + text + transforms + cross + poolers);
    }
}
