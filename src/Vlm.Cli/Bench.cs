using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Vlm.Core;
using Vlm.Core.Kernels;

namespace Vlm.Cli;

/// <summary>One measured figure. Field names match benchmarks/torch_bench.py so the two outputs can be joined on
/// (name, shape). PeakMb is the process's peak resident set (VmHWM) after the case ran: monotonic over a run,
/// so run a case alone (<c>--filter</c>) for its own peak.</summary>
public sealed record BenchResult(string Name, string Backend, string Shape, int Threads, double Gflops, double Ms, double PeakMb);

public sealed record BenchOptions(int Reps, int Threads);

/// <summary>A named benchmark producing one or more results (e.g. one per backend).</summary>
public sealed record BenchCase(string Name, string Description, Func<BenchOptions, IEnumerable<BenchResult>> Run);

/// <summary>
/// `vlm bench`: engine benchmarks, one JSON object per line with <c>--json</c>.
/// The list is a registry: model benchmarks (vit_b16_forward_b1/b8, train_step_6l_b8,
/// bridgetower_base_forward_b1/b8 — names already used by benchmarks/torch_bench.py) are added with
/// <see cref="Register"/> once the models exist; nothing is printed for figures that do not exist yet.
/// </summary>
public static class Bench
{
    private static readonly List<BenchCase> _cases = [.. BenchPeak.Cases(), .. GemmCases(), AttentionCase(), .. BenchIndex.Cases(), .. BenchBridgeTower.Cases(), .. BenchModels.Cases(), .. BenchBlip.Cases(), .. BenchAb.Cases()];

    public static IReadOnlyList<BenchCase> Cases => _cases;

    public static void Register(BenchCase c)
    {
        if (_cases.Any(x => x.Name == c.Name)) throw new ArgumentException($"benchmark '{c.Name}' is already registered");
        _cases.Add(c);
    }

    public static Command Build()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line: name, backend, shape, threads, gflops, ms, peak_mb" };
        var filter = new Option<string?>("--filter") { Description = "Run only benchmarks whose name (or name/shape) contains this substring" };
        var reps = new Option<int>("--reps") { Description = "Timed repetitions per case (median reported, after 2 warm-up runs; backends of one case alternate run by run)", DefaultValueFactory = _ => 7 };
        var threads = new Option<int>("--threads") { Description = "Threads for the kernels (default: all cores)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var list = new Option<bool>("--list") { Description = "List the registered benchmarks and exit" };
        var cmd = new Command("bench", "Benchmark the engine's kernels (GEMM managed vs OpenBLAS, attention)")
        {
            json, filter, reps, threads, list,
        };
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(list))
            {
                foreach (var c in _cases) Console.WriteLine($"{c.Name,-28} {c.Description}");
                return 0;
            }
            int r = pr.GetValue(reps), t = pr.GetValue(threads);
            if (r < 1) { Console.Error.WriteLine("--reps must be ≥ 1"); return 2; }
            if (t < 1) { Console.Error.WriteLine("--threads must be ≥ 1"); return 2; }
            string? f = pr.GetValue(filter);
            bool asJson = pr.GetValue(json);
            var selected = _cases.Where(c => f is null || c.Name.Contains(f, StringComparison.OrdinalIgnoreCase)).ToList();
            if (selected.Count == 0)
            {
                Console.Error.WriteLine($"no benchmark matches '{f}'; registered: {string.Join(", ", _cases.Select(c => c.Name).Distinct())}");
                return 2;
            }
            if (!asJson)
                Console.WriteLine($"{"name",-30} {"backend",-15} {"shape",-22} {"thr",3} {"GFLOP/s",9} {"ms",10} {"peak MB",9}");
            var opts = new BenchOptions(r, t);
            foreach (var c in selected)
            {
                foreach (var res in c.Run(opts))
                    Console.WriteLine(asJson ? ToJson(res) : ToRow(res));
            }
            return 0;
        });
        return cmd;
    }

    public static string ToJson(BenchResult r)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("name", r.Name);
            w.WriteString("backend", r.Backend);
            w.WriteString("shape", r.Shape);
            w.WriteNumber("threads", r.Threads);
            w.WriteNumber("gflops", Math.Round(r.Gflops, 2));
            w.WriteNumber("ms", Math.Round(r.Ms, 3));
            w.WriteNumber("peak_mb", Math.Round(r.PeakMb, 1));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string ToRow(BenchResult r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Name,-30} {r.Backend,-15} {r.Shape,-22} {r.Threads,3} {r.Gflops,9:F1} {r.Ms,10:F3} {r.PeakMb,9:F1}");

    /// <summary>Median wall time in ms of <paramref name="reps"/> runs after two warm-up runs.</summary>
    public static double MedianMs(Action run, int reps)
    {
        run(); run();
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            run();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return Median(times);
    }

    /// <summary>The median (mean of the middle two for an even count).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var s = values.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    /// <summary>Medians for several variants measured round-robin (A B A B …), so load from other processes on a
    /// shared machine hits every variant alike and the side-by-side ratio stays meaningful.</summary>
    public static double[] MedianMsInterleaved(IReadOnlyList<Action> runs, int reps)
    {
        foreach (var r in runs) { r(); r(); }
        var times = new double[runs.Count][];
        for (int v = 0; v < runs.Count; v++) times[v] = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            for (int v = 0; v < runs.Count; v++)
            {
                long t0 = Stopwatch.GetTimestamp();
                runs[v]();
                times[v][i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
        }
        return times.Select(Median).ToArray();
    }

    public static double PeakMb()
    {
        using var p = Process.GetCurrentProcess();
        return p.PeakWorkingSet64 / (1024.0 * 1024.0);
    }

    // ---------------------------------------------------------------- GEMM

    /// <summary>(M, K, N): ViT-B/16 at 224 px has 197 tokens; 1576 = 8 × 197 (batch 8) for the QKV/out projection
    /// (768→768) and the MLP (768→3072, 3072→768); 50×768×768 is a text-side projection at batch 1.</summary>
    private static readonly (int m, int k, int n)[] GemmShapes = [(1576, 768, 768), (1576, 768, 3072), (1576, 3072, 768), (50, 768, 768)];

    private static IEnumerable<BenchCase> GemmCases()
    {
        yield return new BenchCase("gemm", "C = A·B, row-major, managed vs OpenBLAS; shape is MxKxN", o => GemmAll(o));
        yield return new BenchCase("gemm_linear", "Linear-layer products y = x·Wᵀ (B transposed), managed vs OpenBLAS; shape is MxKxN",
            o => GemmAll(o, LinearShapes, transB: true, "gemm_linear"));
    }

    /// <summary>(M, K, N) of y = x·Wᵀ: 50 text tokens, 325 BridgeTower image tokens (batch 1) and 2600 (batch 8),
    /// through the 768→768, 768→3072 and 3072→768 layers.</summary>
    private static readonly (int m, int k, int n)[] LinearShapes =
        [(50, 768, 768), (325, 768, 768), (325, 768, 3072), (325, 3072, 768), (2600, 768, 768), (2600, 768, 3072)];

    private static IEnumerable<BenchResult> GemmAll(BenchOptions o) => GemmAll(o, GemmShapes, transB: false, "gemm");

    private static IEnumerable<BenchResult> GemmAll(BenchOptions o, (int m, int k, int n)[] shapes, bool transB, string name)
    {
        foreach (var (m, k, n) in shapes)
        {
            var rng = new Rng(0);
            var a = Tensor.Randn([m, k], rng).ToArray();
            var b = Tensor.Randn(transB ? [n, k] : [k, n], rng).ToArray();
            int ldb = transB ? k : n;
            var c = new float[m * n];
            string shape = $"{m}x{k}x{n}";
            double flop = 2.0 * m * n * k;
            var runs = new List<Action> { () => GemmManaged.Sgemm(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, c, n, o.Threads) };
            var names = new List<string> { "managed" };
            if (OpenBlas.IsAvailable)
            {
                OpenBlas.SetThreads(o.Threads);
                runs.Add(() => OpenBlas.Sgemm(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, c, n));
                names.Add("openblas");
            }
            if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            {
                // "managed" takes the AVX-512 6×32 kernel here; also show the AVX2 6×16 kernel AVX2-only CPUs get.
                runs.Add(() => GemmManaged.Sgemm(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, c, n, o.Threads, wide: false));
                names.Add("managed-avx2");
            }
            var ms = MedianMsInterleaved(runs, o.Reps);
            for (int v = 0; v < ms.Length; v++)
                yield return new BenchResult(name, names[v], shape, o.Threads, flop / ms[v] / 1e6, ms[v], PeakMb());
        }
    }

    // ---------------------------------------------------------------- attention

    /// <summary>softmax(Q·Kᵀ/√d)·V for batch 8, 12 heads, 197 tokens, head dim 64 (ViT-B/16 at 224 px).
    /// "managed" and "openblas" are composed here from GEMM calls and an inline softmax on preallocated buffers, to
    /// compare the two GEMM strategies; "F.sdpa/…" is the engine's fused F.ScaledDotProductAttention.
    /// "managed": heads run in parallel, each with single-threaded managed GEMMs (what
    /// Tensor.MatMul does for batched small products). "openblas": heads one after another, each product split by
    /// OpenBLAS over its threads. GFLOP/s counts the two products only.</summary>
    private static BenchCase AttentionCase() => new("attention",
        "softmax(QKᵀ/√d)·V, B8 H12 T197 D64: heads in parallel (managed) vs BLAS-threaded products (openblas)",
        o => AttentionAll(o));

    private static IEnumerable<BenchResult> AttentionAll(BenchOptions o)
    {
        const int B = 8, H = 12, T = 197, D = 64;
        int heads = B * H;
        var rng = new Rng(0);
        var q = Tensor.Randn([heads, T, D], rng).ToArray();
        var kk = Tensor.Randn([heads, T, D], rng).ToArray();
        var v = Tensor.Randn([heads, T, D], rng).ToArray();
        var s = new float[heads * T * T];
        var y = new float[heads * T * D];
        float scale = 1f / MathF.Sqrt(D);
        double flop = heads * 2.0 * (2.0 * T * T * D);
        string shape = $"B{B} H{H} T{T} D{D}";

        void Head(int h, GemmBackend be, bool parallel)
        {
            var sh = s.AsSpan(h * T * T, T * T);
            Gemm.Sgemm(be, false, true, T, T, D, scale, q.AsSpan(h * T * D, T * D), D, kk.AsSpan(h * T * D, T * D), D, 0f, sh, T, parallel);
            for (int i = 0; i < T; i++) SoftmaxRow(sh.Slice(i * T, T));
            Gemm.Sgemm(be, false, false, T, D, T, 1f, sh, T, v.AsSpan(h * T * D, T * D), D, 0f, y.AsSpan(h * T * D, T * D), D, parallel);
        }

        var po = new ParallelOptions { MaxDegreeOfParallelism = o.Threads };
        var runs = new List<Action> { () => Parallel.For(0, heads, po, h => Head(h, GemmBackend.Managed, false)) };
        if (OpenBlas.IsAvailable)
        {
            OpenBlas.SetThreads(o.Threads);
            runs.Add(() => { for (int h = 0; h < heads; h++) Head(h, GemmBackend.OpenBlas, true); });
        }
        // The engine's fused op (Vlm.Core F.ScaledDotProductAttention, no grad) with the Auto GEMM backend; it
        // always uses every core, so its line reports that thread count.
        var qt = Tensor.FromArray(q, B, H, T, D);
        var kt = Tensor.FromArray(kk, B, H, T, D);
        var vt = Tensor.FromArray(v, B, H, T, D);
        runs.Add(() => { using (Tensor.NoGrad()) F.ScaledDotProductAttention(qt, kt, vt); });
        var ms = MedianMsInterleaved(runs, o.Reps);
        yield return new BenchResult("attention", "managed", shape, o.Threads, flop / ms[0] / 1e6, ms[0], PeakMb());
        if (OpenBlas.IsAvailable)
            yield return new BenchResult("attention", "openblas", shape, o.Threads, flop / ms[1] / 1e6, ms[1], PeakMb());
        double fused = ms[^1];
        yield return new BenchResult("attention", $"F.sdpa/{Gemm.Resolve(GemmBackend.Auto).ToString().ToLowerInvariant()}",
            shape, Environment.ProcessorCount, flop / fused / 1e6, fused, PeakMb());
    }

    /// <summary>Numerically stable softmax in place (max-subtracted), as torch.softmax.</summary>
    private static void SoftmaxRow(Span<float> x)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(x);
        System.Numerics.Tensors.TensorPrimitives.Subtract(x, max, x);
        FastMath.Exp(x, x);
        float sum = System.Numerics.Tensors.TensorPrimitives.Sum(x);
        System.Numerics.Tensors.TensorPrimitives.Multiply(x, 1f / sum, x);
    }
}
