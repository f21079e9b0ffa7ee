using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Vlm.Cli;

/// <summary>
/// fma_peak: the machine's float32 FMA ceiling, measured in the same run as the model figures. Each thread runs
/// 12 independent FMA chains on registers (no memory traffic), enough to cover the FMA latency on both the
/// AVX2 and the AVX-512 units. A model forward's GFLOP/s divided by this line is its fraction of the hardware's
/// limit: that is what bounds how much faster than an OpenBLAS-backed PyTorch any engine can be on GEMM-bound work.
/// </summary>
public static class BenchPeak
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("fma_peak", "float32 FMA throughput ceiling (12 register chains per thread; avx512 and avx2)", Run);
    }

    private const long Iterations = 20_000_000;

    private static IEnumerable<BenchResult> Run(BenchOptions o)
    {
        var variants = new List<(string name, int lanes, Func<long, float> body)>();
        if (Avx512F.IsSupported) variants.Add(("avx512", 16, Chains512));
        if (Fma.IsSupported) variants.Add(("avx2", 8, Chains256));
        if (variants.Count == 0) yield break;
        var po = new ParallelOptions { MaxDegreeOfParallelism = o.Threads };
        var runs = variants.Select(v => (Action)(() => Parallel.For(0, o.Threads, po, _ => Sink(v.body(Iterations))))).ToList();
        var ms = Bench.MedianMsInterleaved(runs, o.Reps);
        for (int i = 0; i < variants.Count; i++)
        {
            double flop = (double)Iterations * 12 * variants[i].lanes * 2 * o.Threads;
            yield return new BenchResult("fma_peak", variants[i].name, "12 chains", o.Threads, flop / ms[i] / 1e6, ms[i], Bench.PeakMb());
        }
    }

    private static float _sink;
    private static void Sink(float x) => _sink += x * 0f;

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains512(long iters)
    {
        var a = Vector512.Create(1.0000001f); var b = Vector512.Create(0.9999999f);
        Vector512<float> c0 = Vector512<float>.Zero, c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Avx512F.FusedMultiplyAdd(a, b, c0); c1 = Avx512F.FusedMultiplyAdd(a, b, c1); c2 = Avx512F.FusedMultiplyAdd(a, b, c2);
            c3 = Avx512F.FusedMultiplyAdd(a, b, c3); c4 = Avx512F.FusedMultiplyAdd(a, b, c4); c5 = Avx512F.FusedMultiplyAdd(a, b, c5);
            c6 = Avx512F.FusedMultiplyAdd(a, b, c6); c7 = Avx512F.FusedMultiplyAdd(a, b, c7); c8 = Avx512F.FusedMultiplyAdd(a, b, c8);
            c9 = Avx512F.FusedMultiplyAdd(a, b, c9); c10 = Avx512F.FusedMultiplyAdd(a, b, c10); c11 = Avx512F.FusedMultiplyAdd(a, b, c11);
        }
        return (c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11).ToScalar();
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains256(long iters)
    {
        var a = Vector256.Create(1.0000001f); var b = Vector256.Create(0.9999999f);
        Vector256<float> c0 = Vector256<float>.Zero, c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Fma.MultiplyAdd(a, b, c0); c1 = Fma.MultiplyAdd(a, b, c1); c2 = Fma.MultiplyAdd(a, b, c2);
            c3 = Fma.MultiplyAdd(a, b, c3); c4 = Fma.MultiplyAdd(a, b, c4); c5 = Fma.MultiplyAdd(a, b, c5);
            c6 = Fma.MultiplyAdd(a, b, c6); c7 = Fma.MultiplyAdd(a, b, c7); c8 = Fma.MultiplyAdd(a, b, c8);
            c9 = Fma.MultiplyAdd(a, b, c9); c10 = Fma.MultiplyAdd(a, b, c10); c11 = Fma.MultiplyAdd(a, b, c11);
        }
        return (c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11).ToScalar();
    }
}
