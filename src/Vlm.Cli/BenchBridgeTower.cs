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
        yield return new BenchCase("bridgetower_forward_ab", "bridgetower_base_forward b1 and b8, new vs reference paths (VLM_SDPA_REF + VLM_FUSION_REF) interleaved in one process", ForwardAb);
        yield return new BenchCase("bridgetower_base_itm_step_b2", "BridgeTowerForImageAndTextRetrieval (base config) training step, B2 288px 50tok: forward with ITM loss + backward (no optimizer); fresh pool buffers per step in the shape column", TrainStep);
        yield return new BenchCase("bridgetower_parts_ab", "BridgeTower attention / fused pieces, new vs reference path interleaved (ms; profiling aid)", PartsAb);
    }

    private static IEnumerable<BenchResult> Run(BenchOptions o, int batch)
    {
        var (model, _) = BridgeTowerWeights.LoadModel(new BridgeTowerConfig(), null, new Rng(0));
        model.Eval();
        var (input, pixels) = Inputs(batch);
        double ms;
        using (Tensor.Inference())
            ms = Bench.MedianMs(() =>
            {
                using var r = model.Forward(input, null, pixels);
            }, o.Reps);
        yield return new BenchResult($"bridgetower_base_forward_b{batch}", "vlm", $"B{batch} 288px 50tok", o.Threads,
            Flop(new BridgeTowerConfig(), batch, 50) / ms / 1e6, ms, Bench.PeakMb());
    }

    /// <summary>Seeded 50-token texts and 288 px images, as benchmarks/torch_bench.py makes them.</summary>
    private static (Tensor Ids, Tensor Pixels) Inputs(int batch)
    {
        var rng = new Rng(1);
        var ids = new long[batch * 50];
        for (int i = 0; i < ids.Length; i++) ids[i] = 3 + (long)(rng.NextDouble() * 997);
        return (Tensor.FromArray(ids, batch, 50), Tensor.Randn([batch, 3, 288, 288], rng));
    }

    /// <summary>A fine-tuning step's forward and backward at base size. The loop disposes its outputs and the parameters'
    /// gradients, as a training loop does, so a warm step runs in recycled buffers (docs/performance.md, session 7).</summary>
    private static IEnumerable<BenchResult> TrainStep(BenchOptions o)
    {
        const int batch = 2;
        var cfg = new BridgeTowerConfig();
        var model = new BridgeTowerForImageAndTextRetrieval(cfg, null, new Rng(0));
        model.Train();
        var (input, pixels) = Inputs(batch);
        var labels = Tensor.FromArray(new long[] { 1, 0 }, batch);
        long fresh = 0;
        void Step()
        {
            long f0 = BufferPool.ThreadFreshAllocations;
            using (var r = model.Forward(input, null, pixels, labels)) r.Loss!.Backward();
            foreach (var (_, p) in model.Parameters.Named) { p.Grad?.Dispose(); p.Grad = null; }
            fresh = BufferPool.ThreadFreshAllocations - f0;
        }
        double ms = Bench.MedianMs(Step, Math.Max(3, o.Reps / 2));
        yield return new BenchResult("bridgetower_base_itm_step_b2", "vlm", $"B{batch} 288px 50tok, {fresh} fresh buffers/step", o.Threads,
            3 * Flop(cfg, batch, 50) / ms / 1e6, ms, Bench.PeakMb());
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

    /// <summary>Each piece twice, interleaved: "new" is the default path, "ref" the same call with the reference
    /// switch on (VLM_SDPA_REF=1 for attention). Shapes are those of the base config at batch 1 and 8.</summary>
    private static IEnumerable<BenchResult> PartsAb(BenchOptions o)
    {
        var rng = new Rng(2);
        var parts = new List<(string name, Action run, string env)>();
        foreach (int b in new[] { 1, 8 })
        {
            var qkv = Tensor.Randn([b, 325, 3 * 768], rng);
            Tensor Split(int i) => qkv.Narrow(-1, i * 768, 768).Reshape(b, 325, 12, 64).Permute(0, 2, 1, 3);
            var q = Split(0); var k = Split(1); var v = Split(2);
            parts.Add(($"sdpa_vit_b{b}_325x325", () => F.ScaledDotProductAttention(q, k, v).Dispose(), "VLM_SDPA_REF"));
            var xt = Tensor.Randn([b, 50, 768], rng).Reshape(b, 50, 12, 64).Permute(0, 2, 1, 3);
            var maskText = Tensor.Zeros(b, 1, 1, 50);
            var maskImg = Tensor.Zeros(b, 1, 1, 325);
            parts.Add(($"sdpa_cross_b{b}_325x50", () => F.ScaledDotProductAttention(q, xt, xt, maskText).Dispose(), "VLM_SDPA_REF"));
            parts.Add(($"sdpa_cross_b{b}_50x325", () => F.ScaledDotProductAttention(xt, k, v, maskImg).Dispose(), "VLM_SDPA_REF"));
        }
        var runs = new List<Action>();
        foreach (var (_, run, env) in parts)
        {
            runs.Add(() => { Environment.SetEnvironmentVariable(env, null); run(); });
            runs.Add(() => { Environment.SetEnvironmentVariable(env, "1"); run(); Environment.SetEnvironmentVariable(env, null); });
        }
        // Fused pieces of the vision block at batch 8 against their unfused compositions.
        var vb = Vlm.Nn.VarBuilder.Init(new Rng(3));
        var fcW = vb.Param("fc.weight", [3072, 768], Vlm.Nn.Init.Normal(0f, 0.02f));
        var fcB = vb.Param("fc.bias", [3072], Vlm.Nn.Init.Normal(0f, 0.02f));
        var lnW = vb.Param("ln.weight", [768], Vlm.Nn.Init.Ones);
        var lnB = vb.Param("ln.bias", [768], Vlm.Nn.Init.Zeros);
        var x8 = Tensor.Randn([8, 325, 768], rng); var a8 = Tensor.Randn([8, 325, 768], rng);
        var pairs = new (string name, Action fused, Action unfused)[]
        {
            ("linear_quickgelu_b8_768x3072", () => F.Linear(x8, fcW, fcB, Vlm.Core.Kernels.GemmEpilogue.QuickGelu).Dispose(),
                () => { var h = F.Linear(x8, fcW, fcB); h.QuickGelu().Dispose(); h.Dispose(); }),
            ("add_layernorm_b8_768", () => F.AddLayerNorm(x8, a8, [768], lnW, lnB).Dispose(),
                () => { var s = x8.Add(a8); F.LayerNorm(s, [768], lnW, lnB).Dispose(); s.Dispose(); }),
            ("add_layernorm_sum_b8_768", () => { var (s, y) = F.AddLayerNormWithSum(x8, a8, [768], lnW, lnB); s.Dispose(); y.Dispose(); },
                () => { var s = x8.Add(a8); F.LayerNorm(s, [768], lnW, lnB).Dispose(); s.Dispose(); }),
        };
        foreach (var (name, fused, unfused) in pairs)
        {
            parts.Add((name, fused, ""));
            runs.Add(fused); runs.Add(unfused);
        }
        double[] ms;
        using (Tensor.Inference()) ms = Bench.MedianMsInterleaved(runs, o.Reps);
        for (int i = 0; i < parts.Count; i++)
        {
            yield return new BenchResult("bridgetower_parts_ab", "new", parts[i].name, o.Threads, ms[2 * i + 1] / ms[2 * i], ms[2 * i], Bench.PeakMb());
            yield return new BenchResult("bridgetower_parts_ab", "ref", parts[i].name, o.Threads, 0, ms[2 * i + 1], Bench.PeakMb());
        }
    }

    /// <summary>Whole-model A/B: per batch size, rounds of (new, reference) forwards; "gflops" holds ref/new of the
    /// medians, and each round's ratio is printed to stderr.</summary>
    private static IEnumerable<BenchResult> ForwardAb(BenchOptions o)
    {
        var (model, _) = BridgeTowerWeights.LoadModel(new BridgeTowerConfig(), null, new Rng(0));
        model.Eval();
        var only = Environment.GetEnvironmentVariable("VLM_AB_BATCH");
        foreach (int batch in new[] { 1, 8 })
        {
            if (only != null && only != batch.ToString(System.Globalization.CultureInfo.InvariantCulture)) continue;
            var rng = new Rng(1);
            var ids = new long[batch * 50];
            for (int i = 0; i < ids.Length; i++) ids[i] = 3 + (long)(rng.NextDouble() * 997);
            var input = Tensor.FromArray(ids, batch, 50);
            var pixels = Tensor.Randn([batch, 3, 288, 288], rng);
            void Run(bool reference)
            {
                string? v = reference ? "1" : null;
                Environment.SetEnvironmentVariable("VLM_SDPA_REF", v);
                Environment.SetEnvironmentVariable("VLM_FUSION_REF", v);
                using (Tensor.Inference())
                {
                    var r = model.Forward(input, null, pixels);
                    r.TextFeatures.Dispose(); r.ImageFeatures.Dispose(); r.PoolerOutput.Dispose();
                }
                Environment.SetEnvironmentVariable("VLM_SDPA_REF", null);
                Environment.SetEnvironmentVariable("VLM_FUSION_REF", null);
            }
            Run(false); Run(true);
            var tNew = new double[o.Reps]; var tRef = new double[o.Reps];
            for (int i = 0; i < o.Reps; i++)
            {
                // Alternate which goes first, so a drift in machine speed does not favour one side.
                bool refFirst = i % 2 == 1;
                for (int j = 0; j < 2; j++)
                {
                    bool reference = (j == 0) == refFirst;
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    Run(reference);
                    double ms = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                    if (reference) tRef[i] = ms; else tNew[i] = ms;
                }
                Console.Error.WriteLine($"b{batch} round {i + 1} {DateTime.UtcNow:HH:mm:ss}: new {tNew[i]:F0} ms, ref {tRef[i]:F0} ms, ref/new {tRef[i] / tNew[i]:F3}");
            }
            double mNew = Bench.Median(tNew), mRef = Bench.Median(tRef);
            yield return new BenchResult($"bridgetower_forward_ab_b{batch}", "new", $"B{batch} 288px 50tok", o.Threads, mRef / mNew, mNew, Bench.PeakMb());
            yield return new BenchResult($"bridgetower_forward_ab_b{batch}", "ref", $"B{batch} 288px 50tok", o.Threads, 0, mRef, Bench.PeakMb());
        }
    }
}
