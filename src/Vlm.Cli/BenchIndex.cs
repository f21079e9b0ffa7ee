using Vlm.Core;
using Vlm.Models.Retrieval;

namespace Vlm.Cli;

/// <summary>Retrieval-index benchmarks: one query against 100 000 stored 512-d vectors, float32 and int8 (issue target:
/// under 50 ms on 2 cores). GFLOP/s counts the dot products (2·n·d).</summary>
public static class BenchIndex
{
    public static IEnumerable<BenchCase> Cases()
    {
        yield return new BenchCase("index_query_100k", "Top-10 query over 100k × 512 stored vectors (float32 and int8)", Run);
    }

    private static IEnumerable<BenchResult> Run(BenchOptions o)
    {
        const int n = 100_000, dim = 512, k = 10;
        var rng = new Rng(11);
        var f32 = new VectorIndex(dim, VectorStorage.Float32);
        var i8 = new VectorIndex(dim, VectorStorage.Int8);
        var v = new float[dim];
        for (int i = 0; i < n; i++)
        {
            for (int d = 0; d < dim; d++) v[d] = (float)rng.NextNormal();
            var e = new IndexEntry(i.ToString(System.Globalization.CultureInfo.InvariantCulture), "", "image");
            f32.Add(e, v);
            i8.Add(e, v);
        }
        var q = Enumerable.Range(0, dim).Select(_ => (float)rng.NextNormal()).ToArray();
        var ms = Bench.MedianMsInterleaved([() => f32.Search(q, k), () => i8.Search(q, k)], o.Reps);
        double flop = 2.0 * n * dim;
        string shape = $"{n}x{dim} k={k}";
        yield return new BenchResult("index_query_100k", "float32", shape, o.Threads, flop / ms[0] / 1e6, ms[0], Bench.PeakMb());
        yield return new BenchResult("index_query_100k", "int8", shape, o.Threads, flop / ms[1] / 1e6, ms[1], Bench.PeakMb());
    }
}
