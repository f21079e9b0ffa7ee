using Vlm.Core;
using Vlm.Core.Kernels;
using Vlm.TestSupport;

namespace Vlm.Core.Tests.Kernels;

/// <summary>Every GEMM backend against the naive triple loop. Backends are passed explicitly (or through the
/// flow-local <see cref="Gemm.Use"/> scope), so no global state is mutated and these tests may run in parallel.</summary>
public class GemmTests
{
    public static IEnumerable<GemmBackend> FastBackends()
    {
        yield return GemmBackend.Managed;
        if (OpenBlas.IsAvailable) yield return GemmBackend.OpenBlas;
    }

    /// <summary>Kernels under test: the public backends plus the managed AVX2 6×16 path forced on (on AVX-512
    /// machines the managed backend otherwise takes the 6×32 path, and both must stay correct).</summary>
    public enum Kernel { Managed, ManagedAvx2, OpenBlas, Naive }

    public static TheoryData<Kernel, bool, bool> BackendsAndTransposes()
    {
        var d = new TheoryData<Kernel, bool, bool>();
        var kernels = new List<Kernel> { Kernel.Managed, Kernel.ManagedAvx2, Kernel.Naive };
        if (OpenBlas.IsAvailable) kernels.Add(Kernel.OpenBlas);
        foreach (var be in kernels)
            foreach (var ta in new[] { false, true })
                foreach (var tb in new[] { false, true })
                    d.Add(be, ta, tb);
        return d;
    }

    private static void Run(Kernel kernel, bool ta, bool tb, int m, int n, int k, float alpha,
        float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc, bool parallel = true)
    {
        if (kernel == Kernel.ManagedAvx2)
        {
            Gemm.Check(ta, tb, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
            GemmManaged.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel ? 2 : 1, wide: false);
            return;
        }
        var be = kernel switch
        {
            Kernel.Managed => GemmBackend.Managed,
            Kernel.OpenBlas => GemmBackend.OpenBlas,
            _ => GemmBackend.Naive,
        };
        Gemm.Sgemm(be, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);
    }

    private static readonly int[] EdgeSizes = [1, 5, 6, 7, 15, 16, 17];

    /// <summary>Shapes that cross the kernel's block sizes: 6-row / 16-column tiles, KC = 256 (k blocks),
    /// MC = 72 (row blocks), NC = 512 (column blocks), and the 2-thread split by columns and by rows.</summary>
    private static readonly (int m, int n, int k)[] LargeShapes =
    [
        (255, 256, 257), (256, 255, 256), (257, 257, 255), (73, 17, 513), (150, 33, 300),
        (13, 1040, 40), (7, 530, 260), (130, 300, 70), (300, 20, 400), (64, 1, 600), (1, 700, 31),
    ];

    private static float[] Random(int len, Rng rng, float padValue = float.NaN, int rows = 0, int cols = 0, int ld = 0)
    {
        var x = new float[len];
        for (int i = 0; i < len; i++) x[i] = rng.NextFloat() * 2 - 1;
        // Padding beyond each row's width is NaN: reading it would poison the result.
        if (ld > cols)
            for (int r = 0; r < rows; r++)
                for (int c = cols; c < ld && r * ld + c < len; c++) x[r * ld + c] = padValue;
        return x;
    }

    /// <summary>Runs one product on <paramref name="backend"/> and on the naive loop and compares them.
    /// pad adds to every leading dimension (padding is NaN in A/B and a sentinel in C, which must survive).</summary>
    private static void CheckOne(Kernel backend, bool ta, bool tb, int m, int n, int k, float alpha, float beta,
        int pad, bool parallel, Rng rng, bool nanC = false)
    {
        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        var a = Random(Math.Max(0, (aRows - 1) * lda + aCols), rng, float.NaN, aRows, aCols, lda);
        var b = Random(Math.Max(0, (bRows - 1) * ldb + bCols), rng, float.NaN, bRows, bCols, ldb);
        var c0 = Random(m * ldc, rng, 12345f, m, n, ldc);
        if (nanC)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) c0[i * ldc + j] = float.NaN;
        var expected = (float[])c0.Clone();
        var actual = (float[])c0.Clone();
        Gemm.SgemmNaive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, expected, ldc);
        Run(backend, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, actual, ldc, parallel);
        string what = $"{backend} ta={ta} tb={tb} m={m} n={n} k={k} alpha={alpha} beta={beta} pad={pad} parallel={parallel}";
        // float32 sums of k products of values in [-1, 1]: rounding grows like √k.
        float atol = 2e-6f * (1 + k) * Math.Max(1, Math.Abs(alpha)) + 1e-6f;
        TensorAssert.Close(expected, actual, atol, 1e-5f, what);
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc; j++)
                Assert.True(actual[i * ldc + j] == 12345f, $"{what}: C padding at ({i},{j}) was overwritten");
    }

    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void SmallShapes_AllEdgeSizes_MatchNaive(Kernel backend, bool ta, bool tb)
    {
        var rng = new Rng(1);
        foreach (int m in EdgeSizes)
            foreach (int n in EdgeSizes)
                foreach (int k in EdgeSizes)
                    CheckOne(backend, ta, tb, m, n, k, 1f, 0f, 0, parallel: false, rng);
    }

    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void LargeShapes_SerialAndParallel_MatchNaive(Kernel backend, bool ta, bool tb)
    {
        var rng = new Rng(2);
        foreach (var (m, n, k) in LargeShapes)
            foreach (bool parallel in new[] { false, true })
                CheckOne(backend, ta, tb, m, n, k, 1f, 0f, 0, parallel, rng);
    }

    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void AlphaBetaAndPaddedLeadingDims_MatchNaive(Kernel backend, bool ta, bool tb)
    {
        var rng = new Rng(3);
        foreach (var (m, n, k) in new[] { (7, 17, 5), (6, 16, 16), (19, 35, 270), (130, 300, 70) })
            foreach (var (alpha, beta) in new[] { (1f, 1f), (0.5f, -1.5f), (-2f, 0f), (1f, 0.25f) })
                foreach (int pad in new[] { 0, 3 })
                    foreach (bool parallel in new[] { false, true })
                        CheckOne(backend, ta, tb, m, n, k, alpha, beta, pad, parallel, rng);
    }

    /// <summary>Shapes crossing the AVX-512 path's blocks (KC 1024, MC 24, NC 512) and the two ways op(A) = Aᵀ is
    /// handled: transposed block by block inside the kernel (each thread's columns within one NC block) or once up
    /// front (n = 1100 spans several). BridgeTower's 325 image tokens split by rows. beta 0 runs over NaN in C;
    /// beta 1 is the weight-gradient accumulation (dW += gᵀ·x).</summary>
    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void DeepKAndLongMN_AlphaBeta_MatchNaive(Kernel backend, bool ta, bool tb)
    {
        if (backend == Kernel.Naive) return;
        var rng = new Rng(7);
        foreach (var (m, n, k) in new[] { (30, 300, 1030), (325, 70, 200), (7, 1100, 300), (20, 530, 1025) })
            foreach (var (alpha, beta) in new[] { (1f, 0f), (1f, 1f), (-0.5f, 0.25f) })
                foreach (bool parallel in new[] { false, true })
                    CheckOne(backend, ta, tb, m, n, k, alpha, beta, beta == 1f ? 1 : 0, parallel, rng, nanC: beta == 0f);
    }

    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void BetaZero_IgnoresNaNInC(Kernel backend, bool ta, bool tb)
    {
        var rng = new Rng(4);
        foreach (var (m, n, k) in new[] { (7, 17, 5), (12, 32, 300), (130, 300, 70) })
            foreach (bool parallel in new[] { false, true })
                CheckOne(backend, ta, tb, m, n, k, 0.75f, 0f, 2, parallel, rng, nanC: true);
    }

    [Theory]
    [MemberData(nameof(BackendsAndTransposes))]
    public void DegenerateK0AndAlpha0_ScaleC(Kernel backend, bool ta, bool tb)
    {
        foreach (float beta in new[] { 0f, 1f, -0.5f })
        {
            var c = new float[] { 1, 2, float.NaN, 4, 5, 6 };
            var expected = beta == 0 ? new float[6] : c.Select(v => v * beta).ToArray();
            Run(backend, ta, tb, 2, 3, 0, 1f, [], 2, [], 3, beta, c, 3);
            TensorAssert.Close(expected, c, 0, 0, $"{backend} k=0 beta={beta}");
        }
        if (backend == Kernel.Naive) return; // the triple loop reads A and B even when alpha is 0
        var a = new float[] { float.NaN, 1, 2, 3 }; var b = new float[] { 1, float.NaN, 3, 4 };
        var c2 = new float[] { float.NaN, 1, 2, 3 };
        Run(backend, ta, tb, 2, 2, 2, 0f, a, 2, b, 2, 0f, c2, 2);
        Assert.Equal(new float[4], c2);
    }

    [Fact]
    public void ZeroRowsOrColumns_LeaveCUntouched()
    {
        foreach (var be in FastBackends())
        {
            var c = new float[] { 7f };
            Gemm.Sgemm(be, false, false, 0, 1, 3, 1f, [], 3, new float[3], 1, 0f, c, 1);
            Gemm.Sgemm(be, false, false, 1, 0, 3, 1f, new float[3], 3, [], 1, 0f, c, 1);
            Assert.Equal(7f, c[0]);
        }
    }

    [Fact]
    public void ShortSpansAndBadLeadingDims_ThrowClearErrors()
    {
        foreach (var be in FastBackends().Append(GemmBackend.Naive))
        {
            var ex = Assert.Throws<ArgumentException>(() =>
                Gemm.Sgemm(be, false, false, 4, 4, 4, 1f, new float[15], 4, new float[16], 4, 0f, new float[16], 4));
            Assert.Contains("A span too short", ex.Message);
            Assert.Throws<ArgumentException>(() =>
                Gemm.Sgemm(be, false, true, 4, 4, 4, 1f, new float[16], 4, new float[16], 3, 0f, new float[16], 4));
            Assert.Throws<ArgumentException>(() =>
                Gemm.Sgemm(be, false, false, 4, 4, 4, 1f, new float[16], 4, new float[16], 4, 0f, new float[15], 4));
        }
    }

    [Fact]
    public void Auto_ResolvesToManagedOnAvx512_ElseOpenBlasWhenItLoads()
    {
        var expected = GemmManaged.IsAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? GemmBackend.Managed
            : OpenBlas.IsAvailable ? GemmBackend.OpenBlas : GemmBackend.Managed;
        Assert.Equal(expected, Gemm.Resolve(GemmBackend.Auto));
        Assert.Equal(GemmBackend.OpenBlas, Gemm.Resolve(GemmBackend.OpenBlas));
        Assert.Equal(GemmBackend.Naive, Gemm.Resolve(GemmBackend.Naive));
    }

    [Fact]
    public void OpenBlas_LoadsOnTheProjectMachine()
    {
        // The project's machines have Debian's libopenblas0-pthread; elsewhere the managed kernel is the fallback.
        if (!File.Exists("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")) return;
        Assert.True(OpenBlas.IsAvailable);
        Assert.True(OpenBlas.GetThreads() >= 1);
    }

    [Fact]
    public void UseScope_IsFlowLocalAndRestores()
    {
        var before = Gemm.Effective;
        using (Gemm.Use(GemmBackend.Naive))
        {
            Assert.Equal(GemmBackend.Naive, Gemm.Effective);
            // Parallel.For workers inherit the scope (ExecutionContext flows into them).
            var seen = new GemmBackend[4];
            Parallel.For(0, 4, i => seen[i] = Gemm.Effective);
            Assert.All(seen, s => Assert.Equal(GemmBackend.Naive, s));
            // A thread started outside the flow does not.
            GemmBackend other = GemmBackend.Naive;
            var t = new Thread(() => other = Gemm.Effective);
            using (ExecutionContext.SuppressFlow()) t.Start();
            t.Join();
            Assert.Equal(before, other);
        }
        Assert.Equal(before, Gemm.Effective);
    }

    /// <summary>Tensor.MatMul's three GEMM paths (tall folded Linear, per-item batch in parallel, transposed views)
    /// give the same result on every backend.</summary>
    [Fact]
    public void TensorMatMul_SameOnAllBackends()
    {
        var rng = new Rng(5);
        var cases = new (Tensor a, Tensor b, string what)[]
        {
            (Tensor.Randn([3, 37, 70], rng), Tensor.Randn([70, 45], rng), "folded linear"),
            (Tensor.Randn([3, 37, 70], rng), Tensor.Randn([45, 70], rng).T, "folded linear, Bᵀ view"),
            (Tensor.Randn([2, 4, 19, 16], rng), Tensor.Randn([2, 4, 19, 16], rng).Transpose(-2, -1), "attention scores"),
            (Tensor.Randn([2, 4, 19, 19], rng), Tensor.Randn([2, 4, 19, 16], rng), "attention values"),
            (Tensor.Randn([2, 70, 33], rng).Transpose(-2, -1), Tensor.Randn([2, 70, 21], rng), "Aᵀ batch"),
            (Tensor.Randn([300, 257], rng), Tensor.Randn([257, 130], rng), "large 2-D"),
            (Tensor.Randn([40], rng), Tensor.Randn([40, 9], rng), "vector-matrix"),
        };
        foreach (var (a, b, what) in cases)
        {
            Tensor expected;
            using (Gemm.Use(GemmBackend.Naive)) expected = a.MatMul(b);
            foreach (var be in FastBackends())
            {
                Tensor actual;
                using (Gemm.Use(be)) actual = a.MatMul(b);
                TensorAssert.Close(expected, actual, 2e-4f, 1e-5f, $"{what} on {be}");
            }
        }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(7, 13, 13)]
    [InlineData(8, 8, 8)]
    [InlineData(197, 197, 200)]
    [InlineData(1576, 768, 771)]   // ≥ 2^20 elements: the two-thread path, padded leading dimension
    [InlineData(37, 300, 300)]
    public void TransposeInto_MatchesNaive(int rows, int cols, int ld)
    {
        var rng = new Rng((ulong)(rows * 31 + cols));
        var src = Tensor.Randn([rows * ld], rng).ToArray();
        var fast = new float[rows * cols]; var slow = new float[rows * cols];
        Array.Fill(fast, float.NaN);
        GemmManaged.TransposeInto(src, ld, rows, cols, fast);
        GemmManaged.TransposeNaive(src, ld, rows, cols, slow);
        Assert.Equal(slow, fast);
        Array.Fill(fast, float.NaN);
        GemmManaged.TransposeInto(src, ld, rows, cols, fast, parallel: false);
        Assert.Equal(slow, fast);
        Assert.Equal(src[(rows - 1) * ld + cols - 1], slow[(cols - 1) * rows + rows - 1]);
    }
}
