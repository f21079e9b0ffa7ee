using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Vlm.Core.Kernels;

/// <summary>Row kernels of layer normalisation (used by <see cref="F.LayerNorm"/>), on spans.</summary>
public static class NormKernels
{
    /// <summary>One row: y = (x − mean)·rstd·w + b, three fused passes (sum; centred squares; affine) with Vector256
    /// accumulators. Two passes for the variance keep it accurate when |mean| ≫ std.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LayerNormRow(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        float eps, out float mean, out float rstd)
    {
        int n = x.Length;
        if (!Vector256.IsHardwareAccelerated || n < 32)
        {
            LayerNormRowReference(x, y, w, b, eps, out mean, out rstd);
            return;
        }
        ref float xr = ref MemoryMarshal.GetReference(x);
        int nv = n & ~15;
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero;
        int i = 0;
        for (; i < nv; i += 16)
        {
            a0 += Vector256.LoadUnsafe(ref xr, (nuint)i);
            a1 += Vector256.LoadUnsafe(ref xr, (nuint)(i + 8));
        }
        float sum = Vector256.Sum(a0 + a1);
        for (; i < n; i++) sum += Unsafe.Add(ref xr, i);
        float m = sum / n;
        var vm = Vector256.Create(m);
        a0 = Vector256<float>.Zero; a1 = Vector256<float>.Zero;
        for (i = 0; i < nv; i += 16)
        {
            var d0 = Vector256.LoadUnsafe(ref xr, (nuint)i) - vm;
            var d1 = Vector256.LoadUnsafe(ref xr, (nuint)(i + 8)) - vm;
            a0 = Vector256.FusedMultiplyAdd(d0, d0, a0);
            a1 = Vector256.FusedMultiplyAdd(d1, d1, a1);
        }
        float ss = Vector256.Sum(a0 + a1);
        for (; i < n; i++) { float d = Unsafe.Add(ref xr, i) - m; ss += d * d; }
        float rs = 1f / MathF.Sqrt(ss / n + eps);
        // y = (x − m)·rs·w + b
        ref float yr = ref MemoryMarshal.GetReference(y);
        var vrs = Vector256.Create(rs);
        bool hasW = !w.IsEmpty, hasB = !b.IsEmpty;
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float br = ref MemoryMarshal.GetReference(b);
        int n8 = n & ~7;
        for (i = 0; i < n8; i += 8)
        {
            var v = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vm) * vrs;
            if (hasW) v *= Vector256.LoadUnsafe(ref wr, (nuint)i);
            if (hasB) v += Vector256.LoadUnsafe(ref br, (nuint)i);
            v.StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < n; i++)
        {
            float v = (Unsafe.Add(ref xr, i) - m) * rs;
            if (hasW) v *= Unsafe.Add(ref wr, i);
            if (hasB) v += Unsafe.Add(ref br, i);
            Unsafe.Add(ref yr, i) = v;
        }
        mean = m; rstd = rs;
    }

    /// <summary>Scalar reference for <see cref="LayerNormRow"/>, accumulating in double (so it is the more exact of
    /// the two); also the path for short rows.</summary>
    public static void LayerNormRowReference(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        float eps, out float mean, out float rstd)
    {
        int n = x.Length;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += x[i];
        double m = sum / n;
        double ss = 0;
        for (int i = 0; i < n; i++) { double d = x[i] - m; ss += d * d; }
        double rs = 1.0 / Math.Sqrt(ss / n + eps);
        for (int i = 0; i < n; i++)
        {
            double v = (x[i] - m) * rs;
            if (!w.IsEmpty) v *= w[i];
            if (!b.IsEmpty) v += b[i];
            y[i] = (float)v;
        }
        mean = (float)m; rstd = (float)rs;
    }

    /// <summary>dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·w and x̂ = (x − mean)·rstd; dw += g·x̂; db += g.
    /// Two fused passes: the sums (and dw, db), then dx; x̂ is recomputed rather than stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LayerNormBackwardRow(ReadOnlySpan<float> x, ReadOnlySpan<float> g, ReadOnlySpan<float> w,
        float mean, float rstd, Span<float> dx, float[]? dw, float[]? db, float[] scratch)
    {
        int n = x.Length;
        if (!Vector256.IsHardwareAccelerated || n < 32)
        {
            LayerNormBackwardRowReference(x, g, w, mean, rstd, dx, dw, db, scratch);
            return;
        }
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float wr = ref MemoryMarshal.GetReference(w);
        bool hasW = !w.IsEmpty;
        var vm = Vector256.Create(mean); var vrs = Vector256.Create(rstd);
        var sG = Vector256<float>.Zero; var sGX = Vector256<float>.Zero;
        int n8 = n & ~7, i = 0;
        for (; i < n8; i += 8)
        {
            var xh = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vm) * vrs;
            var gv = Vector256.LoadUnsafe(ref gr, (nuint)i);
            if (dw != null)
            {
                ref float d = ref dw[i];
                Vector256.FusedMultiplyAdd(gv, xh, Vector256.LoadUnsafe(ref d)).StoreUnsafe(ref d);
            }
            if (db != null)
            {
                ref float d = ref db[i];
                (Vector256.LoadUnsafe(ref d) + gv).StoreUnsafe(ref d);
            }
            var gh = hasW ? gv * Vector256.LoadUnsafe(ref wr, (nuint)i) : gv;
            sG += gh;
            sGX = Vector256.FusedMultiplyAdd(gh, xh, sGX);
        }
        float sumG = Vector256.Sum(sG), sumGX = Vector256.Sum(sGX);
        for (; i < n; i++)
        {
            float xh = (Unsafe.Add(ref xr, i) - mean) * rstd, gv = Unsafe.Add(ref gr, i);
            if (dw != null) dw[i] += gv * xh;
            if (db != null) db[i] += gv;
            float gh = hasW ? gv * Unsafe.Add(ref wr, i) : gv;
            sumG += gh; sumGX += gh * xh;
        }
        if (dx.IsEmpty) return;
        float meanG = sumG / n, meanGX = sumGX / n;
        var vmg = Vector256.Create(meanG); var vmgx = Vector256.Create(meanGX);
        ref float dr = ref MemoryMarshal.GetReference(dx);
        for (i = 0; i < n8; i += 8)
        {
            var xh = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vm) * vrs;
            var gv = Vector256.LoadUnsafe(ref gr, (nuint)i);
            var gh = hasW ? gv * Vector256.LoadUnsafe(ref wr, (nuint)i) : gv;
            ((gh - vmg - xh * vmgx) * vrs).StoreUnsafe(ref dr, (nuint)i);
        }
        for (; i < n; i++)
        {
            float xh = (Unsafe.Add(ref xr, i) - mean) * rstd, gv = Unsafe.Add(ref gr, i);
            float gh = hasW ? gv * Unsafe.Add(ref wr, i) : gv;
            Unsafe.Add(ref dr, i) = (gh - meanG - xh * meanGX) * rstd;
        }
    }

    /// <summary>Reference for <see cref="LayerNormBackwardRow"/> from TensorPrimitives calls (x̂ kept in scratch).</summary>
    public static void LayerNormBackwardRowReference(ReadOnlySpan<float> x, ReadOnlySpan<float> g, ReadOnlySpan<float> w,
        float mean, float rstd, Span<float> dx, float[]? dw, float[]? db, float[] scratch)
    {
        int n = x.Length;
        var xhat = scratch.AsSpan(0, n);
        TensorPrimitives.Subtract(x, mean, xhat);
        TensorPrimitives.Multiply(xhat, rstd, xhat);
        if (dw != null) TensorPrimitives.FusedMultiplyAdd(g, xhat, dw, dw);
        if (db != null) TensorPrimitives.Add(db, g, db);
        if (dx.IsEmpty) return;
        if (w.IsEmpty) g.CopyTo(dx); else TensorPrimitives.Multiply(g, w, dx);
        float meanG = TensorPrimitives.Sum(dx) / n;
        float meanGX = TensorPrimitives.Dot(dx, xhat) / n;
        // dx = (ĝ − meanG − x̂·meanGX)·rstd
        TensorPrimitives.MultiplyAdd(xhat, -meanGX, dx, dx);
        TensorPrimitives.Subtract(dx, meanG, dx);
        TensorPrimitives.Multiply(dx, rstd, dx);
    }
}
