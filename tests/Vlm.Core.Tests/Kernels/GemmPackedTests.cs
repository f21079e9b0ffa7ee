using System.Runtime.Intrinsics.X86;
using Vlm.Core;
using Vlm.Core.Kernels;
using Vlm.TestSupport;

namespace Vlm.Core.Tests.Kernels;

/// <summary><see cref="GemmManaged.SgemmBiasPacked"/> (op(B) packed once) against the per-call packing path, bit for
/// bit, and against the naive loop: both micro-kernels, shapes crossing every block and both thread splits.</summary>
public class GemmPackedTests
{
    /// <summary>(m, n, k): edge tiles; k past the AVX-512 path's 1024-deep k blocks; n past NC = 512 column blocks;
    /// few panels (rows split across threads); one row (a decoding step); A blocks under and over the L2 bound of
    /// the all-rows order (250×600 and 400×1100 floats).</summary>
    public static TheoryData<int, int, int, bool> Cases()
    {
        var d = new TheoryData<int, int, int, bool>();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 17, 5), (1, 700, 31), (197, 100, 1100), (30, 1040, 40), (300, 70, 130), (250, 96, 600), (400, 33, 1100) })
            foreach (var transB in new[] { true, false })
                d.Add(m, n, k, transB);
        return d;
    }

    private static IEnumerable<bool> Kernels() => Avx512F.IsSupported ? [true, false] : [false];

    [Theory]
    [MemberData(nameof(Cases))]
    public void SameBitsAsPackingPerCall_AndCloseToNaive(int m, int n, int k, bool transB)
    {
        if (!GemmManaged.IsAccelerated) return;
        var rng = new Rng((ulong)(m * 7919 + n * 31 + k));
        var a = Tensor.Randn([m, k], rng).ToArray();
        var b = Tensor.Randn([transB ? n : k, transB ? k : n], rng).ToArray();
        int ldb = transB ? k : n;
        var naive = new float[m * n];
        Gemm.SgemmNaive(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, naive, n);
        foreach (bool wide in Kernels())
        {
            var packed = GemmManaged.Pack(transB, k, n, b, ldb, wide);
            Assert.Equal(wide && Avx512F.IsSupported, packed.Wide);
            foreach (int threads in new[] { 1, 2 })
            {
                var expected = new float[m * n];
                GemmManaged.Sgemm(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, expected, n, threads, wide);
                var actual = new float[m * n];
                Array.Fill(actual, float.NaN); // the packed path must write every element
                GemmManaged.SgemmBiasPacked(m, a, k, packed, actual, n, default, GemmEpilogue.None, threads);
                string what = $"wide={wide} threads={threads} {m}x{k}x{n} transB={transB}";
                TensorAssert.Equal(expected, actual, what);
                TensorAssert.Close(naive, actual, 2e-6f * (1 + k) + 1e-6f, 1e-5f, what);
            }
        }
    }

    [Theory]
    [InlineData(GemmEpilogue.None)]
    [InlineData(GemmEpilogue.Gelu)]
    [InlineData(GemmEpilogue.QuickGelu)]
    public void BiasAndActivation_SameBitsAsSgemmBias(GemmEpilogue act)
    {
        if (!GemmManaged.IsAccelerated) return;
        var rng = new Rng(5);
        const int m = 197, n = 300, k = 130;
        var a = Tensor.Randn([m, k], rng).ToArray();
        var w = Tensor.Randn([n, k], rng).ToArray();
        var bias = Tensor.Randn([n], rng).ToArray();
        var packed = GemmManaged.Pack(true, k, n, w, k);
        foreach (int threads in new[] { 1, 2 })
        {
            var expected = new float[m * n];
            GemmManaged.SgemmBias(false, true, m, n, k, a, k, w, k, expected, n, bias, act, threads);
            var actual = new float[m * n];
            GemmManaged.SgemmBiasPacked(m, a, k, packed, actual, n, bias, act, threads);
            TensorAssert.Equal(expected, actual, $"{act} threads={threads}");
        }
    }

    [Fact]
    public void PaddedLeadingDimensions_AndShortSpans()
    {
        if (!GemmManaged.IsAccelerated) return;
        var rng = new Rng(6);
        const int m = 9, n = 40, k = 20, lda = 23, ldc = 45;
        var a = Tensor.Randn([m, lda], rng).ToArray();
        var w = Tensor.Randn([n, k], rng).ToArray();
        var packed = GemmManaged.Pack(true, k, n, w, k);
        var expected = new float[m * ldc];
        var actual = new float[m * ldc];
        Array.Fill(expected, 7f); Array.Fill(actual, 7f);
        GemmManaged.Sgemm(false, true, m, n, k, 1f, a, lda, w, k, 0f, expected, ldc, 2);
        GemmManaged.SgemmBiasPacked(m, a, lda, packed, actual, ldc, default, GemmEpilogue.None, 2);
        TensorAssert.Equal(expected, actual, "padded");
        Assert.Throws<ArgumentException>(() => GemmManaged.SgemmBiasPacked(m, a.AsSpan(0, 10), lda, packed, actual, ldc, default, GemmEpilogue.None, 2));
        Assert.Throws<ArgumentException>(() => GemmManaged.SgemmBiasPacked(m, a, lda, packed, new float[5], ldc, default, GemmEpilogue.None, 2));
        Assert.Throws<ArgumentException>(() => GemmManaged.SgemmBiasPacked(m, a, lda, packed, actual, ldc, new float[3], GemmEpilogue.None, 2));
        Assert.Throws<ArgumentException>(() => GemmManaged.Pack(true, k, n, w.AsSpan(0, 100), k));
    }
}
