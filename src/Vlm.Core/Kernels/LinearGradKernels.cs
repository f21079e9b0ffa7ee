using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Vlm.Core.Kernels;

/// <summary>
/// The one pass over the output gradient g (rows × n) that a Linear backward needs before its two products:
/// GELU'(pre)·g when the node applied GELU, its transpose (so dW = gᵀ·x runs as a plain GEMM over a row-major A,
/// cut into column pieces without repeating any packing), and its column sums (the bias gradient) — all from the
/// same 8-row slab while it is in L1/L2, instead of three passes (GELU' pass, transpose inside the GEMM, Sum(0)).
/// </summary>
internal static unsafe class LinearGradKernels
{
    /// <summary>
    /// For rows [r0, r1) of g (row stride n): src = GELU'(pre)·g written to <paramref name="gc"/> when
    /// <paramref name="pre"/> is not empty (else src = g); gT[j·ldt + r] = src[r, j] when <paramref name="gT"/> is not
    /// empty; colSum[j] += src[r, j] for r in order when <paramref name="colSum"/> is not empty.
    /// GELU' runs over whole 8-row spans starting at multiples of 8 elements, the same elements vector/scalar split
    /// as the element-wise GeluBackward op over the whole tensor, so values are bit-identical to it.
    /// </summary>
    public static void Prep(ReadOnlySpan<float> g, ReadOnlySpan<float> pre, Span<float> gc, int n, int r0, int r1,
        Span<float> gT, int ldt, Span<float> colSum)
    {
        if (r1 <= r0) return;
        bool gelu = !pre.IsEmpty;
        if ((long)r1 * n > g.Length || gelu && ((long)r1 * n > pre.Length || (long)r1 * n > gc.Length))
            throw new ArgumentException("linear gradient prep: span too short");
        if (!gT.IsEmpty && (ldt < r1 || (long)(n - 1) * ldt + r1 > gT.Length)) throw new ArgumentException("linear gradient prep: transpose target too short");
        if (!colSum.IsEmpty && colSum.Length < n) throw new ArgumentException("linear gradient prep: column sums too short");
        for (int rb = r0; rb < r1; rb += 8)
        {
            int nr = Math.Min(8, r1 - rb);
            int s = rb * n, len = nr * n;
            ReadOnlySpan<float> src = g.Slice(s, len);
            if (gelu)
            {
                FastMath.GeluBackward(pre.Slice(s, len), src, gc.Slice(s, len));
                src = gc.Slice(s, len);
            }
            if (!colSum.IsEmpty)
                for (int i = 0; i < nr; i++) TensorPrimitives.Add(colSum[..n], src.Slice(i * n, n), colSum[..n]);
            if (!gT.IsEmpty) TransposeSlab(src, n, nr, rb, gT, ldt);
        }
    }

    /// <summary>gT[j·ldt + rb + i] = src[i·n + j] for i &lt; nr (≤ 8), j &lt; n.</summary>
    private static void TransposeSlab(ReadOnlySpan<float> src, int n, int nr, int rb, Span<float> gT, int ldt)
    {
        int j = 0;
        fixed (float* ps = src)
        fixed (float* pt = gT)
        {
            if (nr == 8 && Avx.IsSupported)
                for (; j + 8 <= n; j += 8) GemmManaged.Transpose8x8(ps + j, n, pt + (nint)j * ldt + rb, ldt);
            for (; j < n; j++)
            {
                float* d = pt + (nint)j * ldt + rb;
                for (int i = 0; i < nr; i++) d[i] = ps[(nint)i * n + j];
            }
        }
    }

    /// <summary>Reference for <see cref="Prep"/>: scalar loops (GELU' through the span kernel on each whole row
    /// range, as the element-wise op does).</summary>
    public static void PrepNaive(ReadOnlySpan<float> g, ReadOnlySpan<float> pre, Span<float> gc, int n, int r0, int r1,
        Span<float> gT, int ldt, Span<float> colSum)
    {
        bool gelu = !pre.IsEmpty;
        if (gelu) FastMath.GeluBackward(pre.Slice(r0 * n, (r1 - r0) * n), g.Slice(r0 * n, (r1 - r0) * n), gc.Slice(r0 * n, (r1 - r0) * n));
        ReadOnlySpan<float> src = gelu ? gc : g;
        for (int r = r0; r < r1; r++)
            for (int j = 0; j < n; j++)
            {
                float v = src[r * n + j];
                if (!gT.IsEmpty) gT[j * ldt + r] = v;
                if (!colSum.IsEmpty) colSum[j] += v;
            }
    }
}
