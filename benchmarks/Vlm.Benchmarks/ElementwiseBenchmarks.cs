using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using BenchmarkDotNet.Attributes;
using Vlm.Core;
using Vlm.Core.Kernels;

namespace Vlm.Benchmarks;

/// <summary>FastMath's fused AVX2 kernels against System.Numerics.Tensors.TensorPrimitives over 10 M floats
/// (normal(0, 3) inputs), on 1 and 2 threads (the span is split in two halves for 2).
/// `dotnet run -c Release --project benchmarks/Vlm.Benchmarks -- --filter '*Elementwise*'`.</summary>
public class ElementwiseBenchmarks
{
    private const int N = 10_000_000;
    private float[] _x = [], _d = [];

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _x = Tensor.Randn([N], new Rng(1), 0f, 3f).ToArray();
        _d = new float[N];
    }

    private void Split(Action<int, int> body)
    {
        if (Threads == 1) { body(0, N); return; }
        Parallel.For(0, Threads, w =>
        {
            int s = (int)((long)N * w / Threads) & ~7, e = w == Threads - 1 ? N : (int)((long)N * (w + 1) / Threads) & ~7;
            body(s, e);
        });
    }

    [Benchmark(Baseline = true)]
    public void ExpTensorPrimitives() => Split((s, e) => TensorPrimitives.Exp(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void ExpFastMath() => Split((s, e) => FastMath.Exp(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void GeluErfFastMath() => Split((s, e) => FastMath.Gelu(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void GeluTanhFastMath() => Split((s, e) => FastMath.GeluTanh(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    /// <summary>GELU-tanh composed from TensorPrimitives calls (what one would write without a fused kernel).</summary>
    [Benchmark]
    public void GeluTanhTensorPrimitives() => Split((s, e) =>
    {
        var x = _x.AsSpan(s, e - s); var d = _d.AsSpan(s, e - s);
        TensorPrimitives.Multiply(x, x, d);
        TensorPrimitives.Multiply(d, 0.044715f, d);
        TensorPrimitives.Add(d, 1f, d);
        TensorPrimitives.Multiply(d, x, d);
        TensorPrimitives.Multiply(d, 0.7978845608f, d);
        TensorPrimitives.Tanh(d, d);
        TensorPrimitives.Multiply(d, 0.5f, d);
        TensorPrimitives.Add(d, 0.5f, d);
        TensorPrimitives.Multiply(d, x, d);
    });

    [Benchmark]
    public void TanhFastMath() => Split((s, e) => FastMath.Tanh(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void TanhTensorPrimitives() => Split((s, e) => TensorPrimitives.Tanh(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void SigmoidFastMath() => Split((s, e) => FastMath.Sigmoid(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void SigmoidTensorPrimitives() => Split((s, e) => TensorPrimitives.Sigmoid(_x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));

    [Benchmark]
    public void GeluBackwardFastMath() => Split((s, e) => FastMath.GeluBackward(_x.AsSpan(s, e - s), _x.AsSpan(s, e - s), _d.AsSpan(s, e - s)));
}
