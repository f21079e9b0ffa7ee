using Vlm.Core;
using Vlm.Core.Kernels;
using Vlm.TestSupport;

namespace Vlm.Core.Tests.Kernels;

/// <summary><see cref="Gemm.SgemmBias"/> (bias + GELU applied to finished blocks inside the managed kernel) against
/// the naive product followed by a separate bias add and the scalar GELU.</summary>
public class GemmEpilogueTests
{
    /// <summary>Shapes crossing the kernel's blocks: k blocks (KC 256 on AVX2, 1024 on AVX-512), row blocks (MC 72 / 24),
    /// column blocks (NC 512),
    /// edge tiles, and the 2-thread split by columns and by rows.</summary>
    public static TheoryData<int, int, int, bool, bool> Cases()
    {
        var d = new TheoryData<int, int, int, bool, bool>();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 17, 5), (73, 530, 257), (197, 40, 768), (300, 20, 300), (13, 1040, 40) })
            foreach (var tb in new[] { false, true })
                foreach (var gelu in new[] { false, true })
                    d.Add(m, n, k, tb, gelu);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesProductThenBiasThenGelu(int m, int n, int k, bool transB, bool gelu)
    {
        var rng = new Rng((ulong)(m * 131 + n * 7 + k));
        var a = Tensor.Randn([m, k], rng).ToArray();
        var b = Tensor.Randn([transB ? n : k, transB ? k : n], rng).ToArray();
        var bias = Tensor.Randn([n], rng).ToArray();
        int ldb = transB ? k : n;
        var expected = new float[m * n];
        Gemm.SgemmNaive(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, expected, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float v = expected[i * n + j] + bias[j];
                expected[i * n + j] = gelu ? FastMath.GeluScalar(v) : v;
            }
        foreach (var backend in new[] { GemmBackend.Managed, GemmBackend.Naive })
            foreach (var parallel in new[] { false, true })
            {
                var c = new float[m * n];
                Array.Fill(c, float.NaN); // beta = 0: old contents must never leak in
                using (Gemm.Use(backend))
                    Gemm.SgemmBias(false, transB, m, n, k, a, k, b, ldb, c, n, bias, gelu ? GemmEpilogue.Gelu : GemmEpilogue.None, parallel);
                TensorAssert.Close(expected, c, 2e-4f, 2e-4f, $"{backend} parallel={parallel}");
            }
    }

    /// <summary>op(A) = Aᵀ through the epilogue: the kernel's block-by-block transposition of A (n ≤ 1024) and the
    /// up-front transposition (n = 1100), with k crossing the AVX-512 path's 1024-deep k blocks.</summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(30, 300, 1030)]
    [InlineData(7, 1100, 40)]
    [InlineData(325, 64, 96)]
    public void TransposedA_MatchesProductThenBiasThenGelu(int m, int n, int k)
    {
        var rng = new Rng((ulong)(m * 17 + n * 3 + k));
        var a = Tensor.Randn([k, m], rng).ToArray(); // stored K×M
        var b = Tensor.Randn([n, k], rng).ToArray(); // op(B) = Bᵀ, as in a Linear layer
        var bias = Tensor.Randn([n], rng).ToArray();
        var expected = new float[m * n];
        Gemm.SgemmNaive(true, true, m, n, k, 1f, a, m, b, k, 0f, expected, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) expected[i * n + j] = FastMath.GeluScalar(expected[i * n + j] + bias[j]);
        foreach (var parallel in new[] { false, true })
        {
            var c = new float[m * n];
            Array.Fill(c, float.NaN);
            using (Gemm.Use(GemmBackend.Managed))
                Gemm.SgemmBias(true, true, m, n, k, a, m, b, k, c, n, bias, GemmEpilogue.Gelu, parallel);
            TensorAssert.Close(expected, c, 5e-4f, 2e-4f, $"m={m} n={n} k={k} parallel={parallel}");
        }
    }

    [Fact]
    public void NoBiasNoActivationIsPlainProduct()
    {
        var rng = new Rng(3);
        int m = 20, n = 70, k = 300;
        var a = Tensor.Randn([m, k], rng).ToArray();
        var b = Tensor.Randn([k, n], rng).ToArray();
        var expected = new float[m * n];
        var c = new float[m * n];
        Gemm.SgemmNaive(false, false, m, n, k, 1f, a, k, b, n, 0f, expected, n);
        using (Gemm.Use(GemmBackend.Managed))
            Gemm.SgemmBias(false, false, m, n, k, a, k, b, n, c, n, default, GemmEpilogue.None);
        TensorAssert.Close(expected, c, 2e-4f, 2e-4f);
    }

    [Fact]
    public void RejectsBiasOfWrongLength()
    {
        var a = new float[6]; var b = new float[6]; var c = new float[4];
        var ex = Assert.Throws<ArgumentException>(() => Gemm.SgemmBias(false, false, 2, 2, 3, a, 3, b, 2, c, 2, new float[3], GemmEpilogue.None));
        Assert.Contains("bias", ex.Message);
    }

    [Theory]
    [InlineData(1, 1, 1, false)]
    [InlineData(7, 17, 5, true)]
    [InlineData(73, 530, 257, false)]
    [InlineData(197, 40, 768, true)]
    public void QuickGeluEpilogueMatchesProductThenBiasThenQuickGelu(int m, int n, int k, bool transB)
    {
        var rng = new Rng((ulong)(m * 17 + n + k * 3));
        var a = Tensor.Randn([m, k], rng).ToArray();
        var b = Tensor.Randn([transB ? n : k, transB ? k : n], rng).ToArray();
        var bias = Tensor.Randn([n], rng).ToArray();
        int ldb = transB ? k : n;
        var expected = new float[m * n];
        Gemm.SgemmNaive(false, transB, m, n, k, 1f, a, k, b, ldb, 0f, expected, n);
        for (int i = 0; i < m * n; i++) expected[i] = FastMath.QuickGeluScalar(expected[i] + bias[i % n]);
        foreach (var backend in new[] { GemmBackend.Managed, GemmBackend.Naive })
            foreach (var parallel in new[] { false, true })
            {
                var c = new float[m * n];
                Array.Fill(c, float.NaN);
                using (Gemm.Use(backend))
                    Gemm.SgemmBias(false, transB, m, n, k, a, k, b, ldb, c, n, bias, GemmEpilogue.QuickGelu, parallel);
                TensorAssert.Close(expected, c, 2e-4f, 2e-4f, $"{backend} parallel={parallel}");
            }
    }
}
