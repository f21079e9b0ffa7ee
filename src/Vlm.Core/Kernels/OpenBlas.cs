using System.Runtime.InteropServices;

namespace Vlm.Core.Kernels;

/// <summary>
/// OpenBLAS's <c>cblas_sgemm</c>, bound at run time with <see cref="NativeLibrary.TryLoad(string, out nint)"/> so a
/// machine without OpenBLAS still runs (managed GEMM instead). Debian: <c>apt-get install libopenblas0-pthread</c>.
/// <c>VLM_OPENBLAS=/path/libopenblas.so.0</c> picks a specific build.
/// OpenBLAS's thread count is process-global, so this class never changes it per call; callers that want a
/// single-threaded product from inside their own parallel loop use the managed kernel (see <see cref="Gemm"/>).
/// </summary>
public static unsafe class OpenBlas
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly Lazy<Api?> _api = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    private sealed class Api
    {
        public required nint Handle;
        public required string Path;
        public required delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemm;
        public delegate* unmanaged<int, void> SetThreads;
        public delegate* unmanaged<int> GetThreads;
    }

    /// <summary>True when libopenblas loaded and exports cblas_sgemm.</summary>
    public static bool IsAvailable => _api.Value is not null;

    /// <summary>The file that was loaded, or null.</summary>
    public static string? LibraryPath => _api.Value?.Path;

    private static Api? Load()
    {
        var env = Environment.GetEnvironmentVariable("VLM_OPENBLAS");
        string[] candidates = string.IsNullOrWhiteSpace(env)
            ? ["libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "libopenblas.dylib", "libopenblas.dll"]
            : [env];
        foreach (var name in candidates)
        {
            if (!NativeLibrary.TryLoad(name, out var h)) continue;
            if (!NativeLibrary.TryGetExport(h, "cblas_sgemm", out var sg)) continue;
            NativeLibrary.TryGetExport(h, "openblas_set_num_threads", out var st);
            NativeLibrary.TryGetExport(h, "openblas_get_num_threads", out var gt);
            return new Api
            {
                Handle = h,
                Path = name,
                Sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)sg,
                SetThreads = (delegate* unmanaged<int, void>)st,
                GetThreads = (delegate* unmanaged<int>)gt,
            };
        }
        return null;
    }

    private static Api Required => _api.Value ?? throw new InvalidOperationException(
        "OpenBLAS is not available (libopenblas.so.0 did not load; install libopenblas0-pthread or set VLM_OPENBLAS)");

    /// <summary>Sets OpenBLAS's global thread count (affects every later OpenBLAS call in the process).</summary>
    public static void SetThreads(int n)
    {
        var api = Required;
        if (api.SetThreads != null) api.SetThreads(Math.Max(1, n));
    }

    public static int GetThreads()
    {
        var api = Required;
        return api.GetThreads != null ? api.GetThreads() : 1;
    }

    /// <summary>C = alpha·op(A)·op(B) + beta·C, row-major, with OpenBLAS's current thread count.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        var api = Required;
        Gemm.Check(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0)
        {
            // Not every OpenBLAS version honours beta == 0 as "overwrite" on these degenerate paths.
            GemmManaged.ScaleC(m, n, beta, c, ldc);
            return;
        }
        fixed (float* pa = a)
        fixed (float* pb = b)
        fixed (float* pc = c)
        {
            api.Sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k,
                alpha, pa, lda, pb, ldb, beta, pc, ldc);
        }
    }
}
