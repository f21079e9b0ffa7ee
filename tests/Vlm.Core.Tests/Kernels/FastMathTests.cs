using Vlm.Core.Kernels;

namespace Vlm.Core.Tests.Kernels;

/// <summary>FastMath's vector kernels against their scalar versions and against double-precision math.</summary>
public class FastMathTests
{
    /// <summary>Many values: a dense sweep, random magnitudes, and the edges (overflow, subnormals, ±inf, NaN, ±0).</summary>
    private static float[] Inputs(float lo, float hi, int n = 200_003)
    {
        var rng = new Rng(11);
        var list = new List<float>(n + 64);
        for (int i = 0; i < n / 2; i++) list.Add(lo + (hi - lo) * i / (n / 2 - 1));
        for (int i = 0; i < n / 2; i++) list.Add((float)(rng.NextNormal() * Math.Pow(10, rng.NextDouble() * 4 - 3)));
        list.AddRange([0f, -0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 88.72f, 88.7228f, 88.73f, 89f, 100f, -87.33f, -87.34f, -100f,
            -103.9f, -103.97f, -104f, -110f, float.MaxValue, float.MinValue, float.Epsilon,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, 0.6f, -0.6f, 0.59999f, 1f, -1f, 1.41421f, 5f, -5f, 9.5f, 13.4f, -13.4f]);
        return list.ToArray();
    }

    private static void CheckRel(float[] x, float[] got, Func<double, double> exact, double relTol, double absTol, string what)
    {
        double worst = 0; int wi = -1;
        for (int i = 0; i < x.Length; i++)
        {
            double e = exact(x[i]);
            float ef = (float)e;
            double a = got[i];
            if (double.IsNaN(e)) { if (!(float.IsNaN(got[i]))) Assert.Fail($"{what}({x[i]:R}) = {got[i]:R}, expected NaN"); continue; }
            if (float.IsInfinity(ef)) { if (!(got[i] == ef)) Assert.Fail($"{what}({x[i]:R}) = {got[i]:R}, expected {ef}"); continue; }
            double err = Math.Abs(a - e) - absTol;
            double rel = err <= 0 ? 0 : err / Math.Max(Math.Abs(e), float.Epsilon);
            if (rel > worst) { worst = rel; wi = i; }
        }
        if (!(worst <= relTol)) Assert.Fail($"{what}: worst relative error {worst:G3} at x = {(wi >= 0 ? x[wi] : 0):R}: got {(wi >= 0 ? got[wi] : 0):R}, exact {(wi >= 0 ? exact(x[wi]) : 0):R}");
    }

    private static float[] Run(Action<ReadOnlySpan<float>, Span<float>> k, float[] x)
    {
        var d = new float[x.Length];
        k(x, d);
        return d;
    }

    private static float[] RunScalar(Func<float, float> f, float[] x) => x.Select(f).ToArray();

    [Fact]
    public void ExpMatchesDoublePrecisionEverywhere()
    {
        var x = Inputs(-110f, 90f);
        var fast = Run(FastMath.Exp, x);
        // Normal results: relative 1.5e-7. Subnormal results carry an absolute error of half their spacing (2^-150).
        CheckRel(x, fast, Math.Exp, 1.5e-7, Math.Pow(2, -149), "exp");
        CheckRel(x, RunScalar(FastMath.ExpScalar, x), Math.Exp, 1.5e-7, Math.Pow(2, -149), "exp scalar");
        Assert.Equal(float.PositiveInfinity, fast[Array.IndexOf(x, float.PositiveInfinity)]);
        Assert.Equal(0f, fast[Array.IndexOf(x, float.NegativeInfinity)]);
        Assert.Equal(float.PositiveInfinity, fast[Array.IndexOf(x, 89f)]);
        Assert.True(fast[Array.IndexOf(x, -100f)] > 0f, "exp(-100) must be a subnormal, not 0");
        Assert.Equal(1f, fast[Array.IndexOf(x, 0f)]);
    }

    [Fact]
    public void VectorKernelsAgreeWithScalarVersions()
    {
        var x = Inputs(-20f, 20f, 20_001);
        void Same(Action<ReadOnlySpan<float>, Span<float>> vec, Func<float, float> sc, string what)
        {
            var a = Run(vec, x); var b = RunScalar(sc, x);
            for (int i = 0; i < x.Length; i++)
            {
                bool ok = a[i] == b[i] || (float.IsNaN(a[i]) && float.IsNaN(b[i])) || Math.Abs(a[i] - b[i]) <= 2e-7f * Math.Max(1f, Math.Abs(b[i]));
                if (!(ok)) Assert.Fail($"{what}({x[i]:R}): vector {a[i]:R}, scalar {b[i]:R}");
            }
        }
        Same(FastMath.Exp, FastMath.ExpScalar, "exp");
        Same(FastMath.Tanh, FastMath.TanhScalar, "tanh");
        Same(FastMath.Sigmoid, FastMath.SigmoidScalar, "sigmoid");
        Same(FastMath.Silu, FastMath.SiluScalar, "silu");
        Same(FastMath.QuickGelu, FastMath.QuickGeluScalar, "quick_gelu");
        Same(FastMath.Gelu, FastMath.GeluScalar, "gelu");
        Same(FastMath.GeluTanh, FastMath.GeluTanhScalar, "gelu_tanh");
    }

    [Fact]
    public void SixteenLaneKernelsGiveTheEightLaneBits()
    {
        // A whole span runs 16 lanes at a time on AVX-512 machines; 8-element chunks take the 8-lane kernel. The two
        // must agree bit for bit (NaN, ±inf, the erf branch split and the far tails included).
        var x = Inputs(-20f, 20f, 20_000);
        x[3] = float.NaN; x[100] = float.PositiveInfinity; x[101] = float.NegativeInfinity; x[102] = -0f;
        var g = Inputs(-3f, 3f, 20_000);
        Array.Reverse(g);
        foreach (var (k, what) in new (Action<ReadOnlySpan<float>, Span<float>>, string)[]
            { (FastMath.Exp, "exp"), (FastMath.Sigmoid, "sigmoid"), (FastMath.Silu, "silu"), (FastMath.QuickGelu, "quick_gelu") })
        {
            var all = new float[x.Length]; var part = new float[8];
            k(x, all);
            for (int i = 0; i + 8 <= x.Length; i += 8)
            {
                k(x.AsSpan(i, 8), part);
                for (int j = 0; j < 8; j++)
                    if (BitConverter.SingleToInt32Bits(part[j]) != BitConverter.SingleToInt32Bits(all[i + j]) && !(float.IsNaN(part[j]) && float.IsNaN(all[i + j])))
                        Assert.Fail($"{what}({x[i + j]:R}): 16 lanes {all[i + j]:R}, 8 lanes {part[j]:R}");
            }
        }
        var whole = new float[x.Length]; var wholeGrad = new float[x.Length];
        FastMath.Gelu(x, whole);
        FastMath.GeluBackward(x, g, wholeGrad);
        var chunk = new float[8]; var chunkGrad = new float[8];
        for (int i = 0; i + 8 <= x.Length; i += 8)
        {
            FastMath.Gelu(x.AsSpan(i, 8), chunk);
            FastMath.GeluBackward(x.AsSpan(i, 8), g.AsSpan(i, 8), chunkGrad);
            for (int j = 0; j < 8; j++)
            {
                if (BitConverter.SingleToInt32Bits(chunk[j]) != BitConverter.SingleToInt32Bits(whole[i + j]) && !(float.IsNaN(chunk[j]) && float.IsNaN(whole[i + j])))
                    Assert.Fail($"gelu({x[i + j]:R}): 16 lanes {whole[i + j]:R}, 8 lanes {chunk[j]:R}");
                if (BitConverter.SingleToInt32Bits(chunkGrad[j]) != BitConverter.SingleToInt32Bits(wholeGrad[i + j]) && !(float.IsNaN(chunkGrad[j]) && float.IsNaN(wholeGrad[i + j])))
                    Assert.Fail($"gelu'({x[i + j]:R})·{g[i + j]:R}: 16 lanes {wholeGrad[i + j]:R}, 8 lanes {chunkGrad[j]:R}");
            }
        }
    }

    [Fact]
    public void TanhSigmoidErfMatchDoublePrecision()
    {
        var x = Inputs(-30f, 30f);
        CheckRel(x, Run(FastMath.Tanh, x), Math.Tanh, 3e-7, 0, "tanh");
        // 1/(1 + exp(-x)) flushes results below ~1e-38 to 0 (exp(-x) overflows first), as torch's kernel does.
        CheckRel(x, Run(FastMath.Sigmoid, x), v => 1 / (1 + Math.Exp(-v)), 3e-7, 1.2e-38, "sigmoid");
        CheckRel(x, Run(FastMath.Silu, x), v => v / (1 + Math.Exp(-v)), 3e-7, 1.2e-37, "silu");
        var e = Run(FastMath.Erf, x);
        for (int i = 0; i < x.Length; i++)
            if (float.IsFinite(x[i])) if (!(Math.Abs(e[i] - RefMath.Erf(x[i])) <= 2e-7 * Math.Max(1e-3, Math.Abs(RefMath.Erf(x[i]))) + 1e-45)) Assert.Fail($"erf({x[i]:R}) = {e[i]:R}, exact {RefMath.Erf(x[i]):R}");
    }

    [Fact]
    public void GeluFormsMatchDoublePrecision()
    {
        var x = Inputs(-12f, 12f);
        // Relative to max(|x|, tiny) rather than to the result: for very negative x the result is a tiny
        // number whose relative error torch itself does not control (it computes 1 + erf with cancellation).
        double Gelu(double v) => 0.5 * v * RefMath.Erfc(-v / Math.Sqrt(2));
        // 0.5·v·(1 + tanh y) written as v·sigmoid(2y), which does not cancel in the negative tail.
        double GeluTanh(double v) => v / (1 + Math.Exp(-2 * Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
        void Check(Action<ReadOnlySpan<float>, Span<float>> k, Func<double, double> f, string what, Func<double, double>? cond = null)
        {
            var got = Run(k, x);
            for (int i = 0; i < x.Length; i++)
            {
                double v = x[i];
                if (float.IsNaN(x[i])) { Assert.True(float.IsNaN(got[i])); continue; }
                if (double.IsInfinity(v)) continue;
                double e = f(v);
                // ≤ 4e-7 relative (a few ulp); torch's own float kernel is far looser in the negative tail, where
                // 1 + erf(x/√2) cancels (absolute error ~1e-7·|x|).
                // cond: how much float rounding of the argument is amplified (exp of a large argument).
                double tol = (4e-7 + 2.5e-7 * (cond?.Invoke(v) ?? 0)) * Math.Abs(e) + 1e-37; // results below ~1e-37 may flush to 0
                if (!(Math.Abs(got[i] - e) <= tol)) Assert.Fail($"{what}({x[i]:R}) = {got[i]:R}, exact {e:R}");
            }
        }
        Check(FastMath.Gelu, Gelu, "gelu");
        Check(FastMath.GeluTanh, GeluTanh, "gelu_tanh", v => v < 0 ? 2 * Math.Sqrt(2 / Math.PI) * Math.Abs(v + 0.044715 * v * v * v) : 0);
        Assert.Equal(float.PositiveInfinity, Run(FastMath.Gelu, [float.PositiveInfinity])[0]);
    }

    [Fact]
    public void GeluBackwardKernelsMatchFiniteDifferencesInDouble()
    {
        var x = Inputs(-8f, 8f, 4001).Where(v => float.IsFinite(v) && Math.Abs(v) < 50).ToArray();
        var g = Enumerable.Repeat(1f, x.Length).ToArray();
        var d = new float[x.Length];
        FastMath.GeluBackward(x, g, d);
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            double e = 0.5 * RefMath.Erfc(-v / Math.Sqrt(2)) + v * Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI);
            if (!(Math.Abs(d[i] - e) <= 3e-7 * Math.Max(1, Math.Abs(e)))) Assert.Fail($"gelu'({v:R}) = {d[i]:R}, exact {e:R}");
        }
        FastMath.GeluTanhBackward(x, g, d);
        const double k = 0.7978845608028654, c = 0.044715;
        for (int i = 0; i < x.Length; i++)
        {
            double v = x[i];
            double t = Math.Tanh(k * (v + c * v * v * v));
            double e = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * c * v * v);
            if (!(Math.Abs(d[i] - e) <= 5e-7 * Math.Max(1, Math.Abs(e)))) Assert.Fail($"gelu_tanh'({v:R}) = {d[i]:R}, exact {e:R}");
        }
    }

    [Fact]
    public void InPlaceAndOddLengthsWork()
    {
        for (int n = 0; n < 40; n++)
        {
            var x = Enumerable.Range(0, n).Select(i => (float)(i - 20) * 0.37f).ToArray();
            var expect = x.Select(FastMath.ExpScalar).ToArray();
            var d = new float[n];
            FastMath.Exp(x, d);
            Assert.Equal(expect, d);
            FastMath.Exp(x, x); // aliasing source and destination
            Assert.Equal(expect, x);
        }
        Assert.Throws<ArgumentException>(() => FastMath.Exp(new float[9], new float[8]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(21)]
    [InlineData(33)]
    [InlineData(197)]
    [InlineData(325)]
    public void ExpShiftSumMatchesScalarExpAndItsSum(int n)
    {
        var rng = new Rng((ulong)n + 5);
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextNormal() * 30);
        if (n > 3) { x[1] = float.NegativeInfinity; x[2] = -200f; x[3] = 40f; }
        float shift = n == 0 ? 0f : x.Max();
        var expect = x.Select(v => FastMath.ExpScalar(v - shift)).ToArray();
        double expectSum = expect.Sum(v => (double)v);
        var got = (float[])x.Clone();
        float sum = FastMath.ExpShiftSum(got, shift);
        for (int i = 0; i < n; i++)
            if (!(Math.Abs(got[i] - expect[i]) <= 2e-7f * Math.Max(1e-30f, expect[i]))) Assert.Fail($"exp({x[i]:R} - {shift:R}) = {got[i]:R}, scalar {expect[i]:R}");
        Assert.Equal(expectSum, sum, Math.Max(1e-6, expectSum * 1e-6));
        // NaN propagates (a NaN score gives a NaN row, as torch's softmax does).
        var withNaN = new float[20]; withNaN[17] = float.NaN;
        Assert.True(float.IsNaN(FastMath.ExpShiftSum(withNaN, 0f)));
        Assert.True(float.IsNaN(withNaN[17]));
        Assert.Equal(1f, withNaN[16]);
    }
}
