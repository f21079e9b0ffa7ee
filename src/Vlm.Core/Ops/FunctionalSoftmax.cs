using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>softmax / log_softmax over any dim (torch.nn.functional semantics, float32).
/// Both subtract the row max before exponentiating; backward reads only the saved output:
/// softmax: dx = y·(g − Σ g·y); log_softmax: dx = g − exp(y)·Σ g.</summary>
public static partial class F
{
    public static Tensor Softmax(Tensor x, int dim) => SoftmaxImpl(x, dim, log: false);

    public static Tensor LogSoftmax(Tensor x, int dim) => SoftmaxImpl(x, dim, log: true);

    private static Tensor SoftmaxImpl(Tensor x, int dim, bool log)
    {
        x.RequireFloat();
        if (x.Rank == 0)
        {
            // torch treats a 0-d tensor as one row of one element.
            return SoftmaxImpl(x.Reshape(1), 0, log).Reshape();
        }
        int d = ShapeUtil.NormDim(dim, x.Rank);
        var src = x.ContiguousNoGrad();
        var (outer, n, inner) = RowGeometry(x.Shape, d);
        var y = Tensor.NewResult(x.ShapeArray());
        RunRows(src.Data, src.Offset, y.Data, 0, outer, n, inner,
            log ? (s, o) => LogSoftmaxRow(s, o) : (s, o) => SoftmaxRow(s, o));
        Tensor.DropCopy(src, x);
        if (!Recorder.ShouldRecord(x)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, log ? "log_softmax" : "softmax", [x], g =>
        {
            var gc = g.Contiguous();
            var dx = Tensor.NewResult(y.ShapeArray());
            RunRowsBackward(y.Data, gc.Data, gc.Offset, dx.Data, outer, n, inner, log);
            Tensor.DropCopy(gc, g);
            return [dx];
        });
    }

    /// <summary>(product of dims before d, size of d, product of dims after d).</summary>
    internal static (int outer, int n, int inner) RowGeometry(ReadOnlySpan<int> shape, int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= shape[i];
        for (int i = d + 1; i < shape.Length; i++) inner *= shape[i];
        return (outer, shape[d], inner);
    }

    internal delegate void RowKernel(Span<float> src, Span<float> dst);

    /// <summary>Applies a row kernel to every length-n line along the middle dim of a contiguous (outer, n, inner)
    /// block. inner == 1 works in place on the spans; otherwise each line is gathered into scratch and scattered back.</summary>
    private static void RunRows(float[] src, int srcOff, float[] dst, int dstOff, int outer, int n, int inner, RowKernel kernel)
    {
        int rows = outer * inner;
        ForChunks(rows, (long)rows * n * 8, (r0, r1) =>
        {
            if (inner == 1)
            {
                for (int r = r0; r < r1; r++)
                    kernel(src.AsSpan(srcOff + r * n, n), dst.AsSpan(dstOff + r * n, n));
                return;
            }
            var a = new float[n]; var b = new float[n];
            for (int r = r0; r < r1; r++)
            {
                int o = r / inner, i = r % inner, baseIdx = o * n * inner + i;
                for (int j = 0; j < n; j++) a[j] = src[srcOff + baseIdx + j * inner];
                kernel(a, b);
                for (int j = 0; j < n; j++) dst[dstOff + baseIdx + j * inner] = b[j];
            }
        });
    }

    private static void RunRowsBackward(float[] y, float[] g, int gOff, float[] dx, int outer, int n, int inner, bool log)
    {
        int rows = outer * inner;
        ForChunks(rows, (long)rows * n * 4, (r0, r1) =>
        {
            float[]? ya = null, ga = null, da = null;
            if (inner != 1) { ya = new float[n]; ga = new float[n]; da = new float[n]; }
            for (int r = r0; r < r1; r++)
            {
                Span<float> ys, gs, ds;
                int baseIdx = 0;
                if (inner == 1) { ys = y.AsSpan(r * n, n); gs = g.AsSpan(gOff + r * n, n); ds = dx.AsSpan(r * n, n); }
                else
                {
                    int o = r / inner, i = r % inner; baseIdx = o * n * inner + i;
                    for (int j = 0; j < n; j++) { ya![j] = y[baseIdx + j * inner]; ga![j] = g[gOff + baseIdx + j * inner]; }
                    ys = ya; gs = ga; ds = da;
                }
                if (log) LogSoftmaxBackwardRow(ys, gs, ds); else SoftmaxBackwardRow(ys, gs, ds);
                if (inner != 1) for (int j = 0; j < n; j++) dx[baseIdx + j * inner] = da![j];
            }
        });
    }

    /// <summary>dst = softmax(src) for one row; dst may alias src.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void SoftmaxRow(ReadOnlySpan<float> src, Span<float> dst)
    {
        if (src.Length == 0) return;
        float max = TensorPrimitives.Max(src);
        if (float.IsNegativeInfinity(max))
        {
            // Every logit is -inf: torch yields NaN (exp(-inf - -inf)); keep that rather than invent a distribution.
            dst.Fill(float.NaN);
            return;
        }
        TensorPrimitives.Subtract(src, max, dst);
        FastMath.Exp(dst, dst);
        float sum = TensorPrimitives.Sum(dst);
        TensorPrimitives.Multiply(dst, 1f / sum, dst);
    }

    /// <summary>dst = log_softmax(src) = src − max − log Σ exp(src − max); dst may alias src.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void LogSoftmaxRow(ReadOnlySpan<float> src, Span<float> dst)
    {
        if (src.Length == 0) return;
        float max = TensorPrimitives.Max(src);
        if (float.IsNegativeInfinity(max)) { dst.Fill(float.NaN); return; }
        TensorPrimitives.Subtract(src, max, dst);
        // exp into a scratch row so dst keeps x − max.
        float[]? rented = null;
        Span<float> tmp = src.Length <= 1024 ? stackalloc float[src.Length] : (rented = System.Buffers.ArrayPool<float>.Shared.Rent(src.Length)).AsSpan(0, src.Length);
        FastMath.Exp(dst, tmp);
        float lse = MathF.Log(TensorPrimitives.Sum(tmp));
        TensorPrimitives.Subtract(dst, lse, dst);
        if (rented != null) System.Buffers.ArrayPool<float>.Shared.Return(rented);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void SoftmaxBackwardRow(ReadOnlySpan<float> y, ReadOnlySpan<float> g, Span<float> dx)
    {
        float dot = TensorPrimitives.Dot(g, y);
        // (g + (−dot))·y in one pass: the same bits as subtracting, then multiplying.
        TensorPrimitives.AddMultiply(g, -dot, y, dx);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void LogSoftmaxBackwardRow(ReadOnlySpan<float> y, ReadOnlySpan<float> g, Span<float> dx)
    {
        float sum = TensorPrimitives.Sum(g);
        FastMath.Exp(y, dx);
        // dx = g − exp(y)·Σg
        TensorPrimitives.MultiplyAdd(dx, -sum, g, dx);
    }

    /// <summary>Splits [0, rows) into one contiguous chunk per core when the work (≈ flops) pays for the fork.</summary>
    internal static void ForChunks(int rows, long work, Action<int, int> body, long threshold = 1 << 16)
    {
        int workers = work >= threshold ? Math.Min(Environment.ProcessorCount, rows) : 1;
        if (workers <= 1) { if (rows > 0) body(0, rows); return; }
        Parallel.For(0, workers, w =>
        {
            int s = (int)((long)rows * w / workers), e = (int)((long)rows * (w + 1) / workers);
            if (e > s) body(s, e);
        });
    }
}
