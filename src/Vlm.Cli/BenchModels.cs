using Vlm.Core;
using Vlm.Nn;
using Vlm.Nn.Optim;

namespace Vlm.Cli;

/// <summary>
/// Model-level benchmarks, named like benchmarks/torch_bench.py so the JSON lines join on (name, shape):
/// a ViT-B/16 encoder (the anchor is torch's nn.TransformerEncoder with norm_first, GELU, batch_first, no dropout)
/// forward at batch 1 and 8 and a 6-layer training step (forward + backward + AdamW, loss mean(y²)); the
/// BridgeTower forwards are in BenchBridgeTower. Random weights; no-grad for the forwards. GFLOP/s counts the
/// matmuls only (the same formula torch_bench.py uses).
/// </summary>
public static class BenchModels
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("vit_b16_forward_b1", "12 pre-norm ViT-B layers (768, 12 heads, MLP 3072, GELU), T197, batch 1, no-grad", o => Vit(o, 1));
        yield return new BenchCase("vit_b16_forward_b8", "as vit_b16_forward_b1 at batch 8", o => Vit(o, 8));
        yield return new BenchCase("train_step_6l_b8", "6 ViT-B layers, batch 8: forward + backward of mean(y²) + AdamW step", Train);
        yield return new BenchCase("train_gemms_b8", "the GEMMs of one Linear's forward and backward at batch 8 (y = x·Wᵀ, dx = g·W, dW = gᵀ·x), interleaved; GFLOP/s", TrainGemms);
        yield return new BenchCase("vit_parts_b8", "one ViT-B layer's pieces at batch 8, no-grad (profiling aid; ms per piece, interleaved)", VitParts);
    }

    /// <summary>Matmul flops of pre-norm encoder layers (QKV, scores, ·V, out proj, MLP), as torch_bench.encoder_flop.</summary>
    public static double EncoderFlop(int layers, int batch, int seq = 197, int d = 768, int mlp = 3072)
    {
        double tokens = (double)batch * seq;
        double perLayer = 2 * tokens * d * (3 * d) + 2.0 * batch * seq * seq * d * 2 + 2 * tokens * d * d + 2 * tokens * d * mlp * 2;
        return layers * perLayer;
    }

    /// <summary>One pre-norm transformer encoder layer (torch TransformerEncoderLayer, norm_first=True, GELU):
    /// x + attn(ln1(x)); then + fc2(gelu(fc1(ln2(·)))). Packed QKV projection like torch's in_proj.</summary>
    public sealed class VitLayer : Module
    {
        private readonly LayerNorm _ln1, _ln2;
        private readonly Linear _qkv, _proj, _fc1, _fc2;
        private readonly int _d, _heads;

        public VitLayer(VarBuilder vb, int d = 768, int heads = 12, int mlp = 3072)
        {
            _d = d; _heads = heads;
            _ln1 = Add(new LayerNorm(d, vb["norm1"]));
            _qkv = Add(new Linear(d, 3 * d, vb["self_attn"]["in_proj"]));
            _proj = Add(new Linear(d, d, vb["self_attn"]["out_proj"]));
            _ln2 = Add(new LayerNorm(d, vb["norm2"]));
            _fc1 = Add(new Linear(d, mlp, vb["linear1"]));
            _fc2 = Add(new Linear(mlp, d, vb["linear2"]));
        }

        public Tensor Forward(Tensor x) // (B, T, D) -> (B, T, D)
        {
            int b = x.Size(0), t = x.Size(1), hd = _d / _heads;
            var h = _ln1.Forward(x);
            var qkv = _qkv.Forward(h);                                              // (B, T, 3D)
            Free(h);
            Tensor Split(int i) // (B, H, T, hd) view of qkv; the views in between are let go so qkv's buffer can be recycled
            {
                var n = qkv.Narrow(-1, i * _d, _d);
                var r = n.Reshape(b, t, _heads, hd);
                var p = r.Permute(0, 2, 1, 3);
                Free(n); Free(r);
                return p;
            }
            Tensor q = Split(0), k = Split(1), v = Split(2);
            var ctx = F.ScaledDotProductAttention(q, k, v);                          // (B, H, T, hd), stored heads-last
            Free(q); Free(k); Free(v); Free(qkv);
            var perm = ctx.Permute(0, 2, 1, 3);
            var merged = perm.Reshape(b, t, _d);
            var a = _proj.Forward(merged);
            Free(merged); Free(perm); Free(ctx);
            var r = x.Add(a);
            Free(a);
            var h2 = _ln2.Forward(r);
            var g = _fc1.ForwardGelu(h2);                                           // gelu fused into the GEMM epilogue
            Free(h2);
            var f2 = _fc2.Forward(g);
            Free(g);
            var y = r.Add(f2);
            Free(f2); Free(r);
            return y;
        }
    }

    /// <summary>Lets go of an intermediate: in no-grad inference its buffer goes back to the pool at once; when
    /// recording, the graph keeps what backward reads and the buffer is recycled after that node's backward.</summary>
    private static void Free(Tensor t) => t.Dispose();

    public static (VitLayer[] layers, ParameterStore store) BuildEncoder(int layers, ulong seed = 0)
    {
        var vb = VarBuilder.Init(new Rng(seed));
        var ls = Enumerable.Range(0, layers).Select(i => new VitLayer(vb["layers"][i])).ToArray();
        return (ls, vb.Store);
    }

    public static Tensor RunEncoder(VitLayer[] layers, Tensor x)
    {
        var cur = x;
        foreach (var l in layers)
        {
            var next = l.Forward(cur);
            if (!ReferenceEquals(cur, x)) Free(cur);
            cur = next;
        }
        return cur;
    }

    private static IEnumerable<BenchResult> Vit(BenchOptions o, int batch)
    {
        var (layers, _) = BuildEncoder(12);
        foreach (var l in layers) l.Eval();
        var x = Tensor.Randn([batch, 197, 768], new Rng(1));
        double ms;
        using (Tensor.Inference())
            ms = Bench.MedianMs(() => RunEncoder(layers, x).Dispose(), batch == 1 ? o.Reps : Math.Max(3, o.Reps / 2));
        yield return new BenchResult($"vit_b16_forward_b{batch}", "vlm", $"L12 B{batch} T197 D768", Cores, EncoderFlop(12, batch) / ms / 1e6, ms, Bench.PeakMb());
    }

    private static IEnumerable<BenchResult> VitParts(BenchOptions o)
    {
        var vb = VarBuilder.Init(new Rng(0));
        var ln = new LayerNorm(768, vb["ln"]);
        var qkv = new Linear(768, 2304, vb["qkv"]);
        var fc1 = new Linear(768, 3072, vb["fc1"]);
        var fc2 = new Linear(3072, 768, vb["fc2"]);
        var rng = new Rng(1);
        var x = Tensor.Randn([8, 197, 768], rng);
        var xq = Tensor.Randn([8, 197, 2304], rng);
        var x4 = Tensor.Randn([8, 197, 3072], rng);
        var w = fc1.Weight.Detach();
        Tensor Split(int i) => xq.Narrow(-1, i * 768, 768).Reshape(8, 197, 12, 64).Permute(0, 2, 1, 3);
        var parts = new (string name, Action run)[]
        {
            ("layernorm", () => ln.Forward(x).Dispose()),
            ("linear_768x2304", () => qkv.Forward(x).Dispose()),
            ("matmul_add_768x3072", () => { var y = x.MatMul(w.T); y.Add(fc1.Bias!).Dispose(); y.Dispose(); }),
            ("linear_768x3072", () => fc1.Forward(x).Dispose()),
            ("matmul_add_gelu_768x3072", () => { var y = x.MatMul(w.T); var z = y.Add(fc1.Bias!); y.Dispose(); z.Gelu().Dispose(); z.Dispose(); }),
            ("linear_gelu_768x3072", () => fc1.ForwardGelu(x).Dispose()),
            ("linear_3072x768", () => fc2.Forward(x4).Dispose()),
            ("gelu_1576x3072", () => x4.Gelu().Dispose()),
            ("add_1576x768", () => x.Add(x).Dispose()),
            ("attention", () => F.ScaledDotProductAttention(Split(0), Split(1), Split(2)).Dispose()),
        };
        double[] ms;
        using (Tensor.Inference())
            ms = Bench.MedianMsInterleaved(parts.Select(p => p.run).ToList(), o.Reps);
        for (int i = 0; i < parts.Length; i++)
            yield return new BenchResult("vit_parts_b8", "vlm", parts[i].name, Cores, 0, ms[i], Bench.PeakMb());
    }

    private static IEnumerable<BenchResult> TrainGemms(BenchOptions o)
    {
        const int rows = 8 * 197;
        var rng = new Rng(3);
        foreach (var (inF, outF) in new[] { (768, 3072), (3072, 768), (768, 2304) })
        {
            var x = Tensor.Randn([rows, inF], rng).ToArray();
            var w = Tensor.Randn([outF, inF], rng).ToArray();
            var g = Tensor.Randn([rows, outF], rng).ToArray();
            var y = new float[rows * outF];
            var dx = new float[rows * inF];
            var dw = new float[outF * inF];
            var gT = new float[outF * rows];
            for (int r = 0; r < rows; r++) for (int c = 0; c < outF; c++) gT[c * rows + r] = g[r * outF + c];
            var runs = new (string name, Action run)[]
            {
                ("fwd y=x.Wt", () => Vlm.Core.Kernels.Gemm.Sgemm(false, true, rows, outF, inF, 1f, x, inF, w, inF, 0f, y, outF)),
                ("bwd dx=g.W", () => Vlm.Core.Kernels.Gemm.Sgemm(false, false, rows, inF, outF, 1f, g, outF, w, inF, 0f, dx, inF)),
                ("bwd dW=gt.x", () => Vlm.Core.Kernels.Gemm.Sgemm(true, false, outF, inF, rows, 1f, g, outF, x, inF, 0f, dw, inF)),
                // The same product from a transposed copy made beforehand: the gap to the row above is what the
                // kernel's transposition of A costs.
                ("bwd dW=(gT given).x", () => Vlm.Core.Kernels.Gemm.Sgemm(false, false, outF, inF, rows, 1f, gT, rows, x, inF, 0f, dw, inF)),
            };
            var ms = Bench.MedianMsInterleaved(runs.Select(r => r.run).ToList(), o.Reps);
            double flop = 2.0 * rows * inF * outF;
            for (int i = 0; i < runs.Length; i++)
                yield return new BenchResult("train_gemms_b8", runs[i].name, $"{inF}->{outF}", Cores, flop / ms[i] / 1e6, ms[i], Bench.PeakMb());
        }
    }

    private static IEnumerable<BenchResult> Train(BenchOptions o)
    {
        var (layers, store) = BuildEncoder(6);
        var opt = new AdamW(ParamGroups.All(store), lr: 1e-4);
        var x = Tensor.Randn([8, 197, 768], new Rng(1));
        double forwardMs = 0;
        void Step()
        {
            opt.ZeroGrad(recycle: true);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            // Disposed at the end of the step, as Python's refcounting frees torch's: left to the GC, their buffers
            // miss the pool and the next step page-faults fresh ones.
            using var y = RunEncoder(layers, x);
            using var sq = y.Square();
            using var loss = sq.Mean();
            forwardMs = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            loss.Backward();
            opt.Step();
        }
        if (Vlm.Core.Autograd.Profiler.Enabled)
        {
            // Profile tables are printed by each backward; time the optimizer step separately.
            for (int r = 0; r < Math.Max(2, o.Reps); r++)
            {
                opt.ZeroGrad(recycle: true);
                Vlm.Core.Autograd.Profiler.MarkForwardStart();
                using var proc = System.Diagnostics.Process.GetCurrentProcess();
                double Cpu() { proc.Refresh(); return proc.TotalProcessorTime.TotalMilliseconds; }
                double Sys() { proc.Refresh(); return proc.PrivilegedProcessorTime.TotalMilliseconds; }
                int gc0 = GC.CollectionCount(2);
                // Bytes the GC handed out: pool misses (fresh buffers, whose first touch page-faults) and garbage.
                static double AllocMb() => GC.GetTotalAllocatedBytes(false) / 1048576.0;
                double a0 = AllocMb();
                double c0 = Cpu(), s0 = Sys();
                var sw = System.Diagnostics.Stopwatch.StartNew();
                using var y = RunEncoder(layers, x);
                using var sq = y.Square();
                using var loss = sq.Mean();
                var tf = sw.Elapsed.TotalMilliseconds; double c1 = Cpu(), s1 = Sys(), a1 = AllocMb();
                loss.Backward();
                var tb = sw.Elapsed.TotalMilliseconds; double c2 = Cpu(), s2 = Sys(), a2 = AllocMb();
                opt.Step();
                double c3 = Cpu(), s3 = Sys(), a3 = AllocMb();
                Console.Error.WriteLine($"VLM_PROFILE step: wall forward {tf:F0} ms, backward {tb - tf:F0} ms, optimizer {sw.Elapsed.TotalMilliseconds - tb:F0} ms; " +
                    $"cpu (user+sys / sys) forward {c1 - c0:F0}/{s1 - s0:F0}, backward {c2 - c1:F0}/{s2 - s1:F0}, optimizer {c3 - c2:F0}/{s3 - s2:F0} ms; allocated MB forward {a1 - a0:F0}, backward {a2 - a1:F0}, optimizer {a3 - a2:F0}; gen2 GCs {GC.CollectionCount(2) - gc0}; peak {Bench.PeakMb():F0} MB");
            }
        }
        // Steps alone, back to back, as benchmarks/torch_bench.py times torch's. The forward share is read inside
        // the same steps: a separately timed forward would leave its recorded graph (about 1 GB of activations) to
        // the GC, and the next step would pay for fresh, page-faulting buffers instead of the pool's.
        Step(); Step();
        int reps = Math.Max(3, o.Reps / 2);
        var total = new double[reps]; var fwd = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            Step();
            total[i] = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            fwd[i] = forwardMs;
        }
        yield return new BenchResult("train_step_6l_b8", "vlm", "L6 B8 T197 D768", Cores, 3 * EncoderFlop(6, 8) / Bench.Median(total) / 1e6, Bench.Median(total), Bench.PeakMb());
        yield return new BenchResult("train_step_6l_b8", "vlm-forward-part", "L6 B8 T197 D768", Cores, EncoderFlop(6, 8) / Bench.Median(fwd) / 1e6, Bench.Median(fwd), Bench.PeakMb());
    }

    /// <summary>The engine's parallel loops use every core (no global thread cap exists), so model figures are
    /// reported at <see cref="Environment.ProcessorCount"/> threads whatever --threads says.</summary>
    private static int Cores => Environment.ProcessorCount;
}
