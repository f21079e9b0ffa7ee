using BenchmarkDotNet.Attributes;
using Vlm.Core;
using Vlm.Core.Kernels;

namespace Vlm.Benchmarks;

/// <summary>Managed GEMM vs OpenBLAS on the ViT-B/16 shapes (M×K×N; 1576 = 8 × 197 tokens), single- and
/// two-threaded. OpenBLAS's thread count is process-global, so it is set before each measured call.</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    [Params("1576x768x768", "1576x768x3072", "1576x3072x768", "50x768x768")]
    public string Shape { get; set; } = "";

    [Params(1, 2)]
    public int Threads { get; set; }

    private float[] _a = [], _b = [], _c = [];
    private int _m, _k, _n;

    [GlobalSetup]
    public void Setup()
    {
        var d = Shape.Split('x').Select(int.Parse).ToArray();
        (_m, _k, _n) = (d[0], d[1], d[2]);
        var rng = new Rng(0);
        _a = Tensor.Randn([_m, _k], rng).ToArray();
        _b = Tensor.Randn([_k, _n], rng).ToArray();
        _c = new float[_m * _n];
    }

    [Benchmark(Baseline = true)]
    public void Managed() =>
        GemmManaged.Sgemm(false, false, _m, _n, _k, 1f, _a, _k, _b, _n, 0f, _c, _n, Threads);

    [Benchmark]
    public void OpenBlasSgemm()
    {
        if (!OpenBlas.IsAvailable) throw new InvalidOperationException("libopenblas.so.0 did not load");
        OpenBlas.SetThreads(Threads);
        OpenBlas.Sgemm(false, false, _m, _n, _k, 1f, _a, _k, _b, _n, 0f, _c, _n);
    }
}
