using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Vlm.Core.Kernels;

/// <summary>
/// Vectorised transcendental kernels (exp, tanh, sigmoid, SiLU, GELU) for softmax, activations and friends.
/// exp, tanh and GELU are bound by arithmetic, not memory, on this engine's target CPUs, so each activation is
/// one fused pass over AVX2 + FMA registers built on a Cephes-style exp; machines without AVX2/FMA use the scalar
/// versions (<c>*Scalar</c>), which follow the same formulas and double as the naive references in tests.
///
/// Accuracy (measured against double precision in FastMathTests): exp relative error ≤ ~1.5e-7 over the whole
/// float range with IEEE results for overflow (+inf), underflow (subnormals, then 0), NaN and ±inf; erf absolute
/// error ≤ ~1.5e-7 (torch's own AVX2 erf is Abramowitz–Stegun 7.1.26, abs. error 1.5e-7).
/// Spans may alias (x and d the same memory) but must otherwise not overlap.
/// </summary>
public static class FastMath
{
    /// <summary>True when the vector paths run (AVX2 + FMA).</summary>
    public static bool IsAccelerated => Avx2.IsSupported && Fma.IsSupported;

    // ---- exp constants (Cody–Waite split of ln 2; Cephes expf polynomial, which is fit on |r| ≤ ln2/2)
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f;      // exact in 9 bits, so n·Ln2Hi is exact
    private const float Ln2Lo = -2.12194440e-4f;
    private const float ExpP0 = 1.9875691500e-4f, ExpP1 = 1.3981999507e-3f, ExpP2 = 8.3334519073e-3f;
    private const float ExpP3 = 4.1665795894e-2f, ExpP4 = 1.6666665459e-1f, ExpP5 = 5.0000001201e-1f;
    // Outside [ExpLo, ExpHi] the result is certainly 0 or +inf; clamping keeps the integer exponent in range.
    private const float ExpHi = 89f, ExpLo = -104f;

    // ---- erf: erf(z)/z = P(z²) on [0, 1]; erfc(z)·exp(z²) = Q(u), u = 1/(1 + z/2) on [0.5, 9.5]
    // (own least-squares fits, relative error 4.5e-9 and 3.3e-9 in exact arithmetic;
    // the split at z = 0.5 keeps 0.5 − erf(z)/2 (Φ of negative x) clear of cancellation).
    private const float Ep0 = 1.128379167f, Ep1 = -0.376126347f, Ep2 = 0.1128369069f, Ep3 = -0.02685845945f;
    private const float Ep4 = 0.00519760728f, Ep5 = -0.0008095605964f, Ep6 = 8.148395157e-05f;
    private const float Eq0 = 3.8030767514e-06f, Eq1 = 0.28197796923f, Eq2 = 0.2836644041f, Eq3 = 0.23470458093f;
    private const float Eq4 = 0.23583751204f, Eq5 = -0.10911911424f, Eq6 = 0.40803154732f, Eq7 = -0.61274741994f;
    private const float Eq8 = 0.35234702562f, Eq9 = -0.074709113111f;
    // Below z = 1 the series form is the more accurate one, except for 0.5 − erf(z)/2 (Φ of negative x), which
    // cancels as z nears 1: that side switches to the erfc form at z = 0.5.
    private const float ErfSplit = 1f, ErfSplitNeg = 0.5f;
    // Beyond it exp(−z²) is exactly 0 in float; the clamp only keeps z² finite (inf·0 would give NaN).
    private const float ErfcZMax = 14.2f;

    // ---- tanh(x)/x = T(x²) on |x| < 0.6 (own fit, rel. error 1e-8), where (1 - e)/(1 + e) would cancel
    private const float Tc1 = -0.3333331425f, Tc2 = 0.1333240276f, Tc3 = -0.05382687644f, Tc4 = 0.02094728183f, Tc5 = -0.00607737901f;
    private const float TanhSmall = 0.6f;

    private const float InvSqrt2 = 0.70710678118654752f;
    private const float Sqrt2 = 1.41421356237309505f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float GeluTanhK = 0.79788456080286536f; // √(2/π)
    private const float GeluTanhC = 0.044715f;
    private const float QuickGeluA = 1.702f;

    // ================================================================ public span kernels

    /// <summary>d[i] = exp(x[i]).</summary>
    public static void Exp(ReadOnlySpan<float> x, Span<float> d) => Map512<ExpF>(x, d);

    /// <summary>d[i] = tanh(x[i]).</summary>
    public static void Tanh(ReadOnlySpan<float> x, Span<float> d) => Map<TanhF>(x, d);

    /// <summary>d[i] = 1 / (1 + exp(-x[i])).</summary>
    public static void Sigmoid(ReadOnlySpan<float> x, Span<float> d) => Map512<SigmoidF>(x, d);

    /// <summary>d[i] = x[i]·sigmoid(x[i]) (SiLU / swish).</summary>
    public static void Silu(ReadOnlySpan<float> x, Span<float> d) => Map512<SiluF>(x, d);

    /// <summary>d[i] = x[i]·sigmoid(1.702·x[i]) (CLIP's quick_gelu).</summary>
    public static void QuickGelu(ReadOnlySpan<float> x, Span<float> d) => Map512<QuickGeluF>(x, d);

    /// <summary>d[i] = 0.5·x·(1 + erf(x/√2)), torch's default GELU.</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> d) => Map512<GeluF>(x, d);

    /// <summary>d[i] = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), torch's approximate='tanh' (HF gelu_new).</summary>
    public static void GeluTanh(ReadOnlySpan<float> x, Span<float> d) => Map<GeluTanhF>(x, d);

    /// <summary>d[i] = erf(x[i]).</summary>
    public static void Erf(ReadOnlySpan<float> x, Span<float> d) => Map<ErfF>(x, d);

    /// <summary>d[i] = g[i]·GELU'(x[i]) (erf form): Φ(x) + x·φ(x).</summary>
    public static void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> d) => Map2512<GeluGradF>(x, g, d);

    /// <summary>d[i] = g[i]·GELU_tanh'(x[i]) (torch's formula).</summary>
    public static void GeluTanhBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> d) => Map2<GeluTanhGradF>(x, g, d);

    /// <summary>d[i] = x[i] &lt; 0 ? 0 : x[i] (torch's relu: NaN and -0 pass through).</summary>
    public static void Relu(ReadOnlySpan<float> x, Span<float> d) => Clamp(x, 0f, float.PositiveInfinity, d);

    /// <summary>d[i] = min(max(x, lo), hi) with torch's order (lo &gt; hi gives hi; NaN passes through).</summary>
    public static void Clamp(ReadOnlySpan<float> x, float lo, float hi, Span<float> d)
    {
        if (d.Length < x.Length) throw new ArgumentException($"destination has {d.Length} elements, source {x.Length}");
        int n = x.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vlo = Vector256.Create(lo); var vhi = Vector256.Create(hi);
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(d);
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref xs, (nuint)i);
                v = Vector256.ConditionalSelect(Vector256.LessThan(v, vlo), vlo, v);
                v = Vector256.ConditionalSelect(Vector256.GreaterThan(v, vhi), vhi, v);
                v.StoreUnsafe(ref ds, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float v = x[i];
            if (v < lo) v = lo;
            if (v > hi) v = hi;
            d[i] = v;
        }
    }

    // ================================================================ scalar versions (fallback and reference)

    public static float ExpScalar(float x)
    {
        if (float.IsNaN(x)) return x;
        x = Math.Clamp(x, ExpLo, ExpHi);
        float n = MathF.Round(x * Log2E);
        float r = MathF.FusedMultiplyAdd(n, -Ln2Hi, x);
        r = MathF.FusedMultiplyAdd(n, -Ln2Lo, r);
        float p = ExpP0;
        p = MathF.FusedMultiplyAdd(p, r, ExpP1); p = MathF.FusedMultiplyAdd(p, r, ExpP2);
        p = MathF.FusedMultiplyAdd(p, r, ExpP3); p = MathF.FusedMultiplyAdd(p, r, ExpP4);
        p = MathF.FusedMultiplyAdd(p, r, ExpP5);
        float y = MathF.FusedMultiplyAdd(p * r, r, r) + 1f;
        // 2^n in two halves so subnormal results (n < -126) and n = 128 stay representable.
        int ni = (int)n, n1 = ni >> 1, n2 = ni - n1;
        return y * BitConverter.Int32BitsToSingle((n1 + 127) << 23) * BitConverter.Int32BitsToSingle((n2 + 127) << 23);
    }

    public static float ErfScalar(float x)
    {
        float z = MathF.Abs(x);
        float e;
        if (z < ErfSplit)
        {
            float t = z * z;
            e = z * PolyP(t);
        }
        else
        {
            float zc = MathF.Min(z, ErfcZMax);
            e = 1f - ExpScalar(-zc * zc) * PolyQ(1f / (1f + 0.5f * zc));
        }
        return float.IsNaN(x) ? x : MathF.CopySign(e, x);
    }

    /// <summary>Φ(x), the standard normal CDF, without cancellation for negative x.</summary>
    public static float PhiScalar(float x)
    {
        if (float.IsNaN(x)) return x;
        float z = MathF.Abs(x) * InvSqrt2;
        float pos, neg;
        if (z < (x >= 0 ? ErfSplit : ErfSplitNeg))
        {
            float h = 0.5f * z * PolyP(z * z);
            pos = 0.5f + h; neg = 0.5f - h;
        }
        else
        {
            float zc = MathF.Min(z, ErfcZMax);
            float c = 0.5f * ExpNegHalfSquare(MathF.Min(MathF.Abs(x), ErfcZMax * Sqrt2)) * PolyQ(1f / (1f + 0.5f * zc));
            pos = 1f - c; neg = c;
        }
        return x >= 0 ? pos : neg;
    }

    public static float GeluScalar(float x) => x * PhiScalar(x);

    /// <summary>exp(-x²/2) with x² carried in two floats: rounding x² (or x/√2) first would cost up to
    /// x²·6e-8 of relative accuracy, 1e-6 at x = 4.</summary>
    private static float ExpNegHalfSquare(float x)
    {
        float s = x * x;
        float e = MathF.FusedMultiplyAdd(x, x, -s);
        return ExpScalar(-0.5f * s) * (1f - 0.5f * e);
    }

    public static float SigmoidScalar(float x) => 1f / (1f + ExpScalar(-x));

    public static float SiluScalar(float x) => x / (1f + ExpScalar(-x));

    public static float QuickGeluScalar(float x) => x / (1f + ExpScalar(-QuickGeluA * x));

    /// <summary>0.5x(1 + tanh(y)) = x·sigmoid(2y): one exp, no cancellation.</summary>
    public static float GeluTanhScalar(float x)
    {
        float y = GeluTanhK * MathF.FusedMultiplyAdd(GeluTanhC * x, x * x, x);
        return x / (1f + ExpScalar(-2f * y));
    }

    public static float TanhScalar(float x)
    {
        float a = MathF.Abs(x);
        if (a < TanhSmall)
        {
            float t = x * x;
            return MathF.CopySign(MathF.FusedMultiplyAdd(x * t, PolyT(t), x), x); // keeps tanh(-0) = -0
        }
        float e = ExpScalar(-2f * a);
        float r = (1f - e) / (1f + e);
        return float.IsNaN(x) ? x : MathF.CopySign(r, x);
    }

    public static float GeluGradScalar(float x) =>
        float.IsNaN(x) ? x : PhiScalar(x) + x * InvSqrt2Pi * ExpScalar(-0.5f * x * x);

    /// <summary>torch's gelu tanh backward: 0.5(1 + t) + 0.5x(1 − t²)·k(1 + 3c·x²).</summary>
    public static float GeluTanhGradScalar(float x)
    {
        // With s = sigmoid(2y): 0.5(1 + tanh y) = s and 1 − tanh² y = 4 s (1 − s), where 1 − s = e·s, e = exp(−2y),
        // is computed without the cancellation of 1 + t and 1 − t² at large |y|.
        float x2 = x * x;
        float y = GeluTanhK * MathF.FusedMultiplyAdd(GeluTanhC * x, x2, x);
        float e = MathF.Min(ExpScalar(-2f * y), float.MaxValue);
        float sg = 1f / (1f + e), sm = e * sg;
        return sg + 2f * x * sg * sm * GeluTanhK * MathF.FusedMultiplyAdd(3f * GeluTanhC, x2, 1f);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float PolyP(float t)
    {
        float p = Ep6;
        p = MathF.FusedMultiplyAdd(p, t, Ep5); p = MathF.FusedMultiplyAdd(p, t, Ep4); p = MathF.FusedMultiplyAdd(p, t, Ep3);
        p = MathF.FusedMultiplyAdd(p, t, Ep2); p = MathF.FusedMultiplyAdd(p, t, Ep1); return MathF.FusedMultiplyAdd(p, t, Ep0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float PolyQ(float u)
    {
        float p = Eq9;
        p = MathF.FusedMultiplyAdd(p, u, Eq8); p = MathF.FusedMultiplyAdd(p, u, Eq7); p = MathF.FusedMultiplyAdd(p, u, Eq6);
        p = MathF.FusedMultiplyAdd(p, u, Eq5); p = MathF.FusedMultiplyAdd(p, u, Eq4); p = MathF.FusedMultiplyAdd(p, u, Eq3);
        p = MathF.FusedMultiplyAdd(p, u, Eq2); p = MathF.FusedMultiplyAdd(p, u, Eq1); return MathF.FusedMultiplyAdd(p, u, Eq0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float PolyT(float t)
    {
        float p = Tc5;
        p = MathF.FusedMultiplyAdd(p, t, Tc4); p = MathF.FusedMultiplyAdd(p, t, Tc3);
        p = MathF.FusedMultiplyAdd(p, t, Tc2); return MathF.FusedMultiplyAdd(p, t, Tc1);
    }

    // ================================================================ vector building blocks

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Fma.MultiplyAdd(a, b, c);

    /// <summary>exp of 8 lanes; same algorithm as <see cref="ExpScalar"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ExpV(Vector256<float> x)
    {
        var xc = Avx.Min(Avx.Max(x, Vector256.Create(ExpLo)), Vector256.Create(ExpHi));
        var n = Avx.RoundToNearestInteger(Avx.Multiply(xc, Vector256.Create(Log2E)));
        var r = Fmadd(n, Vector256.Create(-Ln2Hi), xc);
        r = Fmadd(n, Vector256.Create(-Ln2Lo), r);
        var p = Vector256.Create(ExpP0);
        p = Fmadd(p, r, Vector256.Create(ExpP1)); p = Fmadd(p, r, Vector256.Create(ExpP2));
        p = Fmadd(p, r, Vector256.Create(ExpP3)); p = Fmadd(p, r, Vector256.Create(ExpP4));
        p = Fmadd(p, r, Vector256.Create(ExpP5));
        var y = Avx.Add(Fmadd(Avx.Multiply(p, r), r, r), Vector256.Create(1f));
        var ni = Avx.ConvertToVector256Int32(n);
        var n1 = Avx2.ShiftRightArithmetic(ni, 1);
        var n2 = Avx2.Subtract(ni, n1);
        var bias = Vector256.Create(127);
        var s1 = Avx2.ShiftLeftLogical(Avx2.Add(n1, bias), 23).AsSingle();
        var s2 = Avx2.ShiftLeftLogical(Avx2.Add(n2, bias), 23).AsSingle();
        var res = Avx.Multiply(Avx.Multiply(y, s1), s2);
        // min/max turned NaN into a bound: put NaN back.
        var isNan = Avx.CompareUnordered(x, x);
        return Avx.BlendVariable(res, x, isNan);
    }

    /// <summary>exp of 16 lanes (AVX-512F); same algorithm and results as <see cref="ExpV"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ExpV512(Vector512<float> x)
    {
        var xc = Avx512F.Min(Avx512F.Max(x, Vector512.Create(ExpLo)), Vector512.Create(ExpHi));
        var n = Avx512F.RoundScale(Avx512F.Multiply(xc, Vector512.Create(Log2E)), 0); // round to nearest even
        var r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), xc);
        r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.Create(ExpP0);
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(ExpP1)); p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(ExpP2));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(ExpP3)); p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(ExpP4));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(ExpP5));
        var y = Avx512F.Add(Avx512F.FusedMultiplyAdd(Avx512F.Multiply(p, r), r, r), Vector512.Create(1f));
        var ni = Avx512F.ConvertToVector512Int32(n);
        var n1 = Avx512F.ShiftRightArithmetic(ni, 1);
        var n2 = Avx512F.Subtract(ni, n1);
        var bias = Vector512.Create(127);
        var s1 = Avx512F.ShiftLeftLogical(Avx512F.Add(n1, bias), 23).AsSingle();
        var s2 = Avx512F.ShiftLeftLogical(Avx512F.Add(n2, bias), 23).AsSingle();
        var res = Avx512F.Multiply(Avx512F.Multiply(y, s1), s2);
        // min/max turned NaN into a bound: put NaN back.
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), res, x);
    }

    /// <summary>Φ(x) of 8 lanes (see <see cref="PhiScalar"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PhiV(Vector256<float> x) => PhiV(x, out _);

    /// <summary>Φ(x) of 8 lanes, and exp(−x²/2) (for |x| ≤ 20; 0 beyond), which GELU's backward reuses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PhiV(Vector256<float> x, out Vector256<float> expHalfSq)
    {
        var signMask = Vector256.Create(-0f);
        var z = Avx.Multiply(Avx.AndNot(signMask, x), Vector256.Create(InvSqrt2));
        var half = Vector256.Create(0.5f);
        // small branch
        var t = Avx.Multiply(z, z);
        var p = Vector256.Create(Ep6);
        p = Fmadd(p, t, Vector256.Create(Ep5)); p = Fmadd(p, t, Vector256.Create(Ep4)); p = Fmadd(p, t, Vector256.Create(Ep3));
        p = Fmadd(p, t, Vector256.Create(Ep2)); p = Fmadd(p, t, Vector256.Create(Ep1)); p = Fmadd(p, t, Vector256.Create(Ep0));
        var h = Avx.Multiply(Avx.Multiply(half, z), p);
        var posS = Avx.Add(half, h); var negS = Avx.Subtract(half, h);
        // large branch
        var zc = Avx.Min(Avx.Max(z, Vector256.Create(ErfSplitNeg)), Vector256.Create(ErfcZMax));
        var u = Avx.Divide(Vector256.Create(1f), Fmadd(half, zc, Vector256.Create(1f)));
        var q = Vector256.Create(Eq9);
        q = Fmadd(q, u, Vector256.Create(Eq8)); q = Fmadd(q, u, Vector256.Create(Eq7)); q = Fmadd(q, u, Vector256.Create(Eq6));
        q = Fmadd(q, u, Vector256.Create(Eq5)); q = Fmadd(q, u, Vector256.Create(Eq4)); q = Fmadd(q, u, Vector256.Create(Eq3));
        q = Fmadd(q, u, Vector256.Create(Eq2)); q = Fmadd(q, u, Vector256.Create(Eq1)); q = Fmadd(q, u, Vector256.Create(Eq0));
        var ax = Avx.Min(Avx.AndNot(signMask, x), Vector256.Create(ErfcZMax * Sqrt2));
        var sq = Avx.Multiply(ax, ax);
        var sqErr = Fma.MultiplySubtract(ax, ax, sq);
        var ez = Avx.Multiply(ExpV(Avx.Multiply(sq, Vector256.Create(-0.5f))), Fma.MultiplyAddNegated(half, sqErr, Vector256.Create(1f)));
        expHalfSq = ez;
        var c = Avx.Multiply(Avx.Multiply(half, ez), q);
        var posL = Avx.Subtract(Vector256.Create(1f), c);
        var pos = Avx.BlendVariable(posL, posS, Avx.CompareLessThan(z, Vector256.Create(ErfSplit)));
        var neg = Avx.BlendVariable(c, negS, Avx.CompareLessThan(z, Vector256.Create(ErfSplitNeg)));
        var isNeg = Avx.CompareLessThan(x, Vector256<float>.Zero);
        var res = Avx.BlendVariable(pos, neg, isNeg);
        return Avx.BlendVariable(res, x, Avx.CompareUnordered(x, x));
    }

    /// <summary>Φ(x) of 16 lanes and exp(−x²/2): <see cref="PhiV(Vector256{float}, out Vector256{float})"/> lane for lane
    /// (the same operations in the same order, so the same bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PhiV512(Vector512<float> x, out Vector512<float> expHalfSq)
    {
        var signMask = Vector512.Create(-0f);
        var ax0 = Avx512F.AndNot(signMask.AsUInt32(), x.AsUInt32()).AsSingle();
        var z = Avx512F.Multiply(ax0, Vector512.Create(InvSqrt2));
        var half = Vector512.Create(0.5f);
        var t = Avx512F.Multiply(z, z);
        var p = Vector512.Create(Ep6);
        p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep5)); p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep4));
        p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep3)); p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep2));
        p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep1)); p = Avx512F.FusedMultiplyAdd(p, t, Vector512.Create(Ep0));
        var h = Avx512F.Multiply(Avx512F.Multiply(half, z), p);
        var posS = Avx512F.Add(half, h); var negS = Avx512F.Subtract(half, h);
        var zc = Avx512F.Min(Avx512F.Max(z, Vector512.Create(ErfSplitNeg)), Vector512.Create(ErfcZMax));
        var u = Avx512F.Divide(Vector512.Create(1f), Avx512F.FusedMultiplyAdd(half, zc, Vector512.Create(1f)));
        var q = Vector512.Create(Eq9);
        q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq8)); q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq7));
        q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq6)); q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq5));
        q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq4)); q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq3));
        q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq2)); q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq1));
        q = Avx512F.FusedMultiplyAdd(q, u, Vector512.Create(Eq0));
        var ax = Avx512F.Min(ax0, Vector512.Create(ErfcZMax * Sqrt2));
        var sq = Avx512F.Multiply(ax, ax);
        var sqErr = Avx512F.FusedMultiplySubtract(ax, ax, sq);
        var ez = Avx512F.Multiply(ExpV512(Avx512F.Multiply(sq, Vector512.Create(-0.5f))),
            Avx512F.FusedMultiplyAddNegated(half, sqErr, Vector512.Create(1f)));
        expHalfSq = ez;
        var c = Avx512F.Multiply(Avx512F.Multiply(half, ez), q);
        var posL = Avx512F.Subtract(Vector512.Create(1f), c);
        var pos = Vector512.ConditionalSelect(Vector512.LessThan(z, Vector512.Create(ErfSplit)), posS, posL);
        var neg = Vector512.ConditionalSelect(Vector512.LessThan(z, Vector512.Create(ErfSplitNeg)), negS, c);
        var res = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), neg, pos);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), res, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TanhV(Vector256<float> x)
    {
        var signMask = Vector256.Create(-0f);
        var a = Avx.AndNot(signMask, x);
        var t = Avx.Multiply(x, x);
        var p = Vector256.Create(Tc5);
        p = Fmadd(p, t, Vector256.Create(Tc4)); p = Fmadd(p, t, Vector256.Create(Tc3));
        p = Fmadd(p, t, Vector256.Create(Tc2)); p = Fmadd(p, t, Vector256.Create(Tc1));
        var small = Fmadd(Avx.Multiply(x, t), p, x);
        var e = ExpV(Avx.Multiply(a, Vector256.Create(-2f)));
        var one = Vector256.Create(1f);
        var r = Avx.Divide(Avx.Subtract(one, e), Avx.Add(one, e));
        var mag = Avx.BlendVariable(r, Avx.AndNot(signMask, small), Avx.CompareLessThan(a, Vector256.Create(TanhSmall)));
        var res = Avx.Or(mag, Avx.And(x, signMask)); // the sign of x, also for -0
        return Avx.BlendVariable(res, x, Avx.CompareUnordered(x, x));
    }

    /// <summary>x / (1 + exp(-k·x)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> XSigmoidV(Vector256<float> x, float k) =>
        Avx.Divide(x, Avx.Add(Vector256.Create(1f), ExpV(Avx.Multiply(x, Vector256.Create(-k)))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> XSigmoidV512(Vector512<float> x, float k) =>
        Avx512F.Divide(x, Avx512F.Add(Vector512.Create(1f), ExpV512(Avx512F.Multiply(x, Vector512.Create(-k)))));

    // ================================================================ op structs and drivers

    private interface IMap
    {
        static abstract float Scalar(float x);
        static abstract Vector256<float> Vec(Vector256<float> x);
    }

    private interface IMap2
    {
        static abstract float Scalar(float x, float g);
        static abstract Vector256<float> Vec(Vector256<float> x, Vector256<float> g);
    }

    /// <summary>An op with a 16-lane form that computes each lane exactly as <see cref="IMap.Vec"/> does.</summary>
    private interface IMap512 : IMap
    {
        static abstract Vector512<float> Vec512(Vector512<float> x);
    }

    private interface IMap2512 : IMap2
    {
        static abstract Vector512<float> Vec512(Vector512<float> x, Vector512<float> g);
    }

    private struct ExpF : IMap512
    {
        public static float Scalar(float x) => ExpScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) => ExpV(x);
        public static Vector512<float> Vec512(Vector512<float> x) => ExpV512(x);
    }

    private struct TanhF : IMap
    {
        public static float Scalar(float x) => TanhScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) => TanhV(x);
    }

    private struct SigmoidF : IMap512
    {
        public static float Scalar(float x) => SigmoidScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) =>
            Avx.Divide(Vector256.Create(1f), Avx.Add(Vector256.Create(1f), ExpV(Avx.Xor(x, Vector256.Create(-0f)))));
        public static Vector512<float> Vec512(Vector512<float> x) =>
            Avx512F.Divide(Vector512.Create(1f), Avx512F.Add(Vector512.Create(1f), ExpV512(Vector512.Xor(x, Vector512.Create(-0f)))));
    }

    private struct SiluF : IMap512
    {
        public static float Scalar(float x) => SiluScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) => XSigmoidV(x, 1f);
        public static Vector512<float> Vec512(Vector512<float> x) => XSigmoidV512(x, 1f);
    }

    private struct QuickGeluF : IMap512
    {
        public static float Scalar(float x) => QuickGeluScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) => XSigmoidV(x, QuickGeluA);
        public static Vector512<float> Vec512(Vector512<float> x) => XSigmoidV512(x, QuickGeluA);
    }

    private struct GeluF : IMap512
    {
        public static float Scalar(float x) => GeluScalar(x);
        public static Vector256<float> Vec(Vector256<float> x) => Avx.Multiply(x, PhiV(x));
        public static Vector512<float> Vec512(Vector512<float> x) => Avx512F.Multiply(x, PhiV512(x, out _));
    }

    private struct ErfF : IMap
    {
        public static float Scalar(float x) => ErfScalar(x);
        // erf(x) = 2Φ(x√2) − 1 loses accuracy near 0, so this lane-wise version is for tests and rare use.
        public static Vector256<float> Vec(Vector256<float> x)
        {
            Span<float> t = stackalloc float[8];
            x.CopyTo(t);
            for (int i = 0; i < 8; i++) t[i] = ErfScalar(t[i]);
            return Vector256.Create<float>(t);
        }
    }

    private struct GeluTanhF : IMap
    {
        public static float Scalar(float x) => GeluTanhScalar(x);
        public static Vector256<float> Vec(Vector256<float> x)
        {
            var x2 = Avx.Multiply(x, x);
            var y = Avx.Multiply(Vector256.Create(GeluTanhK), Fmadd(Avx.Multiply(Vector256.Create(GeluTanhC), x), x2, x));
            return Avx.Divide(x, Avx.Add(Vector256.Create(1f), ExpV(Avx.Multiply(y, Vector256.Create(-2f)))));
        }
    }

    private struct GeluGradF : IMap2512
    {
        public static float Scalar(float x, float g) => g * GeluGradScalar(x);
        public static Vector256<float> Vec(Vector256<float> x, Vector256<float> g)
        {
            var phi = PhiV(x, out var e);
            var pdf = Avx.Multiply(Vector256.Create(InvSqrt2Pi), e);
            return Avx.Multiply(g, Fmadd(x, pdf, phi));
        }
        public static Vector512<float> Vec512(Vector512<float> x, Vector512<float> g)
        {
            var phi = PhiV512(x, out var e);
            var pdf = Avx512F.Multiply(Vector512.Create(InvSqrt2Pi), e);
            return Avx512F.Multiply(g, Avx512F.FusedMultiplyAdd(x, pdf, phi));
        }
    }

    private struct GeluTanhGradF : IMap2
    {
        public static float Scalar(float x, float g) => g * GeluTanhGradScalar(x);
        public static Vector256<float> Vec(Vector256<float> x, Vector256<float> g)
        {
            var x2 = Avx.Multiply(x, x);
            var y = Avx.Multiply(Vector256.Create(GeluTanhK), Fmadd(Avx.Multiply(Vector256.Create(GeluTanhC), x), x2, x));
            var one = Vector256.Create(1f);
            var e = Avx.Min(ExpV(Avx.Multiply(y, Vector256.Create(-2f))), Vector256.Create(float.MaxValue));
            var sg = Avx.Divide(one, Avx.Add(one, e));
            var sm = Avx.Multiply(e, sg);
            var inner = Fmadd(Vector256.Create(3f * GeluTanhC), x2, one);
            var right = Avx.Multiply(Avx.Multiply(Avx.Multiply(Avx.Multiply(Vector256.Create(2f), x), sg), sm), Avx.Multiply(Vector256.Create(GeluTanhK), inner));
            var res = Avx.Multiply(g, Avx.Add(sg, right));
            return res;
        }
    }

    /// <summary>x[i] = exp(x[i] − shift) in place; returns Σ x[i] (softmax's numerator and denominator in one pass).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShiftSum(Span<float> x, float shift)
    {
        int n = x.Length, i = 0;
        float sum = 0f;
        if (Avx512F.IsSupported && n >= 16)
        {
            // 16 lanes: half the instructions per element of the AVX2 loop (the exp is the softmax's whole cost).
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            var sh = Vector512.Create(shift);
            var acc = Vector512<float>.Zero;
            var last = Vector512.LoadUnsafe(ref xs, (nuint)(n - 16));
            for (; i <= n - 16; i += 16)
            {
                var e = ExpV512(Avx512F.Subtract(Vector512.LoadUnsafe(ref xs, (nuint)i), sh));
                e.StoreUnsafe(ref xs, (nuint)i);
                acc = Avx512F.Add(acc, e);
            }
            sum = Vector512.Sum(acc);
            if (i < n)
            {
                // The tail (a row of 197 scores leaves 5) as one vector over the last 16 inputs, read before the loop
                // overwrote them: rewriting the overlap stores the values already there. Five scalar exps cost as
                // much as the twelve vectors before them. Lane values equal ExpScalar's and the tail is summed one
                // by one after the vector sum, as before, so the result keeps its bits.
                var e = ExpV512(Avx512F.Subtract(last, sh));
                e.StoreUnsafe(ref xs, (nuint)(n - 16));
                for (int j = 16 - (n - i); j < 16; j++) sum += e.GetElement(j);
                return sum;
            }
        }
        else if (IsAccelerated && n >= 8)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            var sh = Vector256.Create(shift);
            var acc = Vector256<float>.Zero;
            var last = Vector256.LoadUnsafe(ref xs, (nuint)(n - 8));
            for (; i <= n - 8; i += 8)
            {
                var e = ExpV(Avx.Subtract(Vector256.LoadUnsafe(ref xs, (nuint)i), sh));
                e.StoreUnsafe(ref xs, (nuint)i);
                acc = Avx.Add(acc, e);
            }
            sum = Vector256.Sum(acc);
            if (i < n)
            {
                var e = ExpV(Avx.Subtract(last, sh));
                e.StoreUnsafe(ref xs, (nuint)(n - 8));
                for (int j = 8 - (n - i); j < 8; j++) sum += e.GetElement(j);
                return sum;
            }
        }
        for (; i < n; i++) { float e = ExpScalar(x[i] - shift); x[i] = e; sum += e; }
        return sum;
    }

    /// <summary>16 lanes at a time, then what is left through <see cref="Map{T}"/>, so every element takes the same
    /// path (vector or scalar) as under the 8-lane driver and gets the same bits. Arithmetic-bound kernels (GELU's
    /// erf) run with half the instructions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Map512<T>(ReadOnlySpan<float> x, Span<float> d) where T : struct, IMap512
    {
        if (d.Length < x.Length) throw new ArgumentException($"destination has {d.Length} elements, source {x.Length}");
        int n = x.Length, i = 0;
        if (Avx512F.IsSupported && Vector512Enabled && n >= 16)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(d);
            for (; i <= n - 16; i += 16)
                T.Vec512(Vector512.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
            if (i < n && !x.Overlaps(d))
            {
                // Overlapping last vector from the intact source (as Map does with 8 lanes).
                T.Vec512(Vector512.LoadUnsafe(ref xs, (nuint)(n - 16))).StoreUnsafe(ref ds, (nuint)(n - 16));
                return;
            }
        }
        if (i < n) Map<T>(x[i..], d[i..]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Map2512<T>(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> d) where T : struct, IMap2512
    {
        if (d.Length < x.Length || g.Length < x.Length) throw new ArgumentException("span lengths differ");
        int n = x.Length, i = 0;
        if (Avx512F.IsSupported && Vector512Enabled)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float gs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(g);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(d);
            for (; i <= n - 16; i += 16)
                T.Vec512(Vector512.LoadUnsafe(ref xs, (nuint)i), Vector512.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        }
        if (i < n) Map2<T>(x[i..], g[i..], d[i..]);
    }

    /// <summary>VLM_FASTMATH_AVX512=0 keeps the 8-lane kernels on AVX-512 machines (comparisons).</summary>
    private static readonly bool Vector512Enabled = Environment.GetEnvironmentVariable("VLM_FASTMATH_AVX512") != "0";

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Map<T>(ReadOnlySpan<float> x, Span<float> d) where T : struct, IMap
    {
        if (d.Length < x.Length) throw new ArgumentException($"destination has {d.Length} elements, source {x.Length}");
        int n = x.Length, i = 0;
        if (IsAccelerated && n >= 8)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(d);
            for (; i <= n - 8; i += 8)
                T.Vec(Vector256.LoadUnsafe(ref xs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
            if (i < n)
            {
                // Overlapping last vector: recompute from the source, which is still intact unless x and d alias;
                // when they alias, fall back to scalar for the tail.
                if (!x.Overlaps(d))
                {
                    T.Vec(Vector256.LoadUnsafe(ref xs, (nuint)(n - 8))).StoreUnsafe(ref ds, (nuint)(n - 8));
                    return;
                }
            }
        }
        for (; i < n; i++) d[i] = T.Scalar(x[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Map2<T>(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> d) where T : struct, IMap2
    {
        if (d.Length < x.Length || g.Length < x.Length) throw new ArgumentException("span lengths differ");
        int n = x.Length, i = 0;
        if (IsAccelerated)
        {
            ref float xs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
            ref float gs = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(g);
            ref float ds = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(d);
            for (; i <= n - 8; i += 8)
                T.Vec(Vector256.LoadUnsafe(ref xs, (nuint)i), Vector256.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        }
        for (; i < n; i++) d[i] = T.Scalar(x[i], g[i]);
    }
}
