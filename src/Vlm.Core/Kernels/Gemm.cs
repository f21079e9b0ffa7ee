namespace Vlm.Core.Kernels;

public enum GemmBackend
{
    /// <summary>Managed on AVX-512 CPUs; else OpenBLAS when libopenblas.so.0 loads; else managed (see Gemm.Resolve).</summary>
    Auto,
    Managed,
    OpenBlas,
    /// <summary>The triple loop; the reference the fast kernels are tested against.</summary>
    Naive,
}

/// <summary>
/// Row-major single-precision GEMM: C = alpha · op(A) · op(B) + beta · C, with op(X) = X or Xᵀ.
/// A is M×K after op (lda = row stride of A as stored), B is K×N after op, C is M×N.
/// Backend selection: <c>VLM_GEMM=managed|openblas|naive</c> forces one; otherwise <see cref="Resolve"/> picks
/// (managed on AVX-512 CPUs, else OpenBLAS when it loads). Calls with <c>parallel: false</c> always run the
/// managed single-threaded kernel unless the backend is Naive.
/// </summary>
public static class Gemm
{
    private static GemmBackend _backend = FromEnvironment();
    private static readonly AsyncLocal<GemmBackend?> _scoped = new();

    /// <summary>The process-wide backend (VLM_GEMM at start-up). <see cref="Use"/> overrides it for one flow.</summary>
    public static GemmBackend Backend
    {
        get => _backend;
        set => _backend = value;
    }

    /// <summary>The backend calls actually use after resolving Auto (and any <see cref="Use"/> scope).</summary>
    public static GemmBackend Effective => Resolve(_scoped.Value ?? _backend);

    /// <summary>
    /// Auto → the managed kernel on AVX-512 CPUs, else OpenBLAS when libopenblas loads, else managed.
    /// Measured side by side on the project machine (docs/performance.md, "GEMM"): the managed AVX-512 6×32 kernel
    /// matched OpenBLAS 0.3.21 within noise on the ViT shapes at 1 thread, and matched or beat it at 2 threads
    /// (far ahead on small parallel products, where OpenBLAS's spinning pool suffers on a loaded machine); it also
    /// has no process-global thread state. The AVX2 6×16 kernel stayed at ~0.85–0.95× OpenBLAS, so AVX2-only CPUs
    /// keep OpenBLAS. <c>VLM_GEMM=openblas|managed</c> overrides.
    /// </summary>
    public static GemmBackend Resolve(GemmBackend b) => b switch
    {
        GemmBackend.Auto when GemmManaged.IsAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported => GemmBackend.Managed,
        GemmBackend.Auto => OpenBlas.IsAvailable ? GemmBackend.OpenBlas : GemmBackend.Managed,
        _ => b,
    };

    /// <summary>Routes GEMM calls made by this thread and the tasks it starts (AsyncLocal, so Parallel.For
    /// workers inherit it) to <paramref name="backend"/> until disposed. Other threads are unaffected, so tests
    /// can compare backends without mutating global state.</summary>
    public static IDisposable Use(GemmBackend backend)
    {
        var previous = _scoped.Value;
        _scoped.Value = backend;
        return new Restore(previous);
    }

    private sealed class Restore(GemmBackend? previous) : IDisposable
    {
        public void Dispose() => _scoped.Value = previous;
    }

    private static GemmBackend FromEnvironment()
    {
        var v = Environment.GetEnvironmentVariable("VLM_GEMM")?.Trim().ToLowerInvariant();
        return v switch
        {
            null or "" or "auto" => GemmBackend.Auto,
            "managed" => GemmBackend.Managed,
            "openblas" => GemmBackend.OpenBlas,
            "naive" => GemmBackend.Naive,
            _ => throw new InvalidOperationException($"VLM_GEMM='{v}' is not one of auto, managed, openblas, naive"),
        };
    }

    /// <param name="parallel">false keeps the call on the calling thread (attention runs heads in parallel,
    /// each with a single-threaded product).</param>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        bool parallel = true)
        => Sgemm(Effective, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel);

    /// <summary>As above with an explicit backend (benchmarks and tests).
    /// OpenBLAS's thread pool is process-global and cannot be limited per call, so with
    /// <paramref name="parallel"/> false the OpenBlas backend runs the managed single-threaded kernel: those calls
    /// come from inside the caller's own Parallel.For (attention heads) where nested BLAS threads would
    /// oversubscribe the cores.</summary>
    public static void Sgemm(GemmBackend backend, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        bool parallel = true)
    {
        Check(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        switch (Resolve(backend))
        {
            case GemmBackend.OpenBlas when parallel:
                OpenBlas.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                break;
            case GemmBackend.OpenBlas:
            case GemmBackend.Managed:
                GemmManaged.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                    parallel ? Environment.ProcessorCount : 1);
                break;
            default:
                SgemmNaive(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                break;
        }
    }

    /// <summary>C = act(op(A)·op(B) + bias) (bias: empty or n values added to every row). The managed kernel applies
    /// bias and activation to each finished block while it is in cache; other backends do a pass afterwards.</summary>
    public static void SgemmBias(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc,
        ReadOnlySpan<float> bias, GemmEpilogue act, bool parallel = true)
    {
        Check(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (!bias.IsEmpty && bias.Length != n) throw new ArgumentException($"GEMM bias has {bias.Length} values for {n} columns");
        if (m == 0 || n == 0) return;
        var be = Resolve(Effective);
        if (be == GemmBackend.Managed || be == GemmBackend.OpenBlas && !parallel)
        {
            GemmManaged.SgemmBias(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, bias, act, parallel ? Environment.ProcessorCount : 1);
            return;
        }
        Sgemm(be, transA, transB, m, n, k, 1f, a, lda, b, ldb, 0f, c, ldc, parallel);
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (!bias.IsEmpty) System.Numerics.Tensors.TensorPrimitives.Add(row, bias, row);
            if (act == GemmEpilogue.Gelu) FastMath.Gelu(row, row);
            else if (act == GemmEpilogue.QuickGelu) FastMath.QuickGelu(row, row);
        }
    }

    internal static void Check(bool transA, bool transB, int m, int n, int k, int aLen, int lda, int bLen, int ldb, int cLen, int ldc)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"negative GEMM size {m}x{k}x{n}");
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        if (lda < Math.Max(1, aCols) || ldb < Math.Max(1, bCols) || ldc < Math.Max(1, n))
            throw new ArgumentException($"GEMM leading dimension too small (lda={lda}, ldb={ldb}, ldc={ldc}) for {m}x{k}x{n}");
        if (aRows > 0 && aCols > 0 && (long)(aRows - 1) * lda + aCols > aLen) throw new ArgumentException("GEMM A span too short");
        if (bRows > 0 && bCols > 0 && (long)(bRows - 1) * ldb + bCols > bLen) throw new ArgumentException("GEMM B span too short");
        if (m > 0 && n > 0 && (long)(m - 1) * ldc + n > cLen) throw new ArgumentException("GEMM C span too short");
    }

    /// <summary>Reference triple loop (double accumulation is deliberately NOT used: float32 like the fast paths).</summary>
    public static void SgemmNaive(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++)
                {
                    float av = transA ? a[p * lda + i] : a[i * lda + p];
                    float bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                    s += av * bv;
                }
                ref float cij = ref c[i * ldc + j];
                cij = beta == 0 ? alpha * s : alpha * s + beta * cij;
            }
        }
    }
}
