using System.Numerics.Tensors;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>A float kernel over spans: d[i] = f(x[i]).</summary>
internal delegate void SpanKernel(ReadOnlySpan<float> x, Span<float> d);

/// <summary>A float kernel over two spans: d[i] = f(x[i], g[i]).</summary>
internal delegate void SpanKernel2(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> d);

internal struct PowOp : IBinaryOp
{
    public static float Apply(float a, float b) => MathF.Pow(a, b);
    public static void Spans(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> d) { for (int i = 0; i < d.Length; i++) d[i] = MathF.Pow(a[i], b[i]); }
    public static void SpanScalar(ReadOnlySpan<float> a, float b, Span<float> d) { for (int i = 0; i < d.Length; i++) d[i] = MathF.Pow(a[i], b); }
    public static void ScalarSpan(float a, ReadOnlySpan<float> b, Span<float> d) { for (int i = 0; i < d.Length; i++) d[i] = MathF.Pow(a, b[i]); }
}

/// <summary>Element-wise math (exp, log, sqrt, pow, activations). Forward kernels are span kernels (FastMath for
/// the transcendental ones, parallel over large tensors); backward rules follow torch's derivatives.yaml.</summary>
public sealed partial class Tensor
{
    /// <summary>Threshold (elements) above which arithmetic-bound element-wise kernels are split over cores.</summary>
    internal const int ParallelTranscendental = 1 << 14;

    /// <summary>A contiguous version of this tensor, copied without recording a graph node.</summary>
    internal Tensor ContiguousNoGrad()
    {
        if (IsContiguous) return this;
        using (GradMode.Disable()) return Clone();
    }

    /// <summary>Lets go of <paramref name="copy"/> unless it is <paramref name="of"/> itself: a private contiguous copy
    /// (what Contiguous() returns for a strided view) or an in-between view whose result may be the same object. Its
    /// buffer then goes back to the pool instead of waiting for the GC; a copy that a recorded node saved stays alive
    /// through the node's own hold until its backward has run.</summary>
    internal static void DropCopy(Tensor? copy, Tensor? of)
    {
        if (copy != null && !ReferenceEquals(copy, of)) copy.Dispose();
    }

    /// <summary>New contiguous float tensor d = kernel(x) over this tensor's elements (not recorded).</summary>
    internal Tensor MapKernel(SpanKernel kernel, int threshold = ParallelTranscendental)
    {
        RequireFloat();
        var src = ContiguousNoGrad();
        var r = NewResult(ShapeArray());
        var sd = src.Data; int so = src.Offset; var rd = r.Data;
        ParallelSpans(Numel, (s, e) => kernel(new ReadOnlySpan<float>(sd, so + s, e - s), rd.AsSpan(s, e - s)), threshold);
        DropCopy(src, this); // a temporary contiguous copy: back to the pool
        return r;
    }

    /// <summary>New contiguous float tensor d = kernel(x, g), x and g of the same shape (not recorded).</summary>
    internal static Tensor ZipKernel(Tensor x, Tensor g, SpanKernel2 kernel, int threshold = ParallelTranscendental)
    {
        var xc = x.ContiguousNoGrad(); var gc = g.ContiguousNoGrad();
        if (!ShapeUtil.SameShape(xc.Shape, gc.Shape)) throw new ArgumentException($"shapes {xc.ShapeString} and {gc.ShapeString} differ");
        var r = NewResult(x.ShapeArray());
        var xd = xc.Data; int xo = xc.Offset; var gd = gc.Data; int go = gc.Offset; var rd = r.Data;
        ParallelSpans(r.Numel, (s, e) => kernel(new ReadOnlySpan<float>(xd, xo + s, e - s), new ReadOnlySpan<float>(gd, go + s, e - s), rd.AsSpan(s, e - s)), threshold);
        DropCopy(xc, x);
        DropCopy(gc, g);
        return r;
    }

    private static Tensor MulNr(Tensor a, Tensor b) => BinaryKernel<MulOp>(a, b);

    public Tensor Exp()
    {
        var y = MapKernel(FastMath.Exp);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, "exp", [this], g => [MulNr(g, y)]);
    }

    /// <summary>Natural log (log of a negative number is NaN, of 0 is -inf, like torch).</summary>
    public Tensor Log()
    {
        var y = MapKernel((x, d) => TensorPrimitives.Log(x, d), 1 << 15);
        var x = this;
        return Recorder.Record(y, "log", [x], g => [BinaryKernel<DivOp>(g, x)]);
    }

    public Tensor Sqrt()
    {
        var y = MapKernel((x, d) => TensorPrimitives.Sqrt(x, d), 1 << 16);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        // torch: grad / (2 · result)
        return Recorder.Record(y, "sqrt", [this], g => [ZipKernel(y, g, (a, gs, d) =>
        {
            TensorPrimitives.Multiply(a, 2f, d);
            TensorPrimitives.Divide(gs, d, d);
        }, 1 << 16)]);
    }

    /// <summary>1 / sqrt(x), computed as a true division (torch's CPU rsqrt rounds the same way).</summary>
    public Tensor Rsqrt()
    {
        var y = MapKernel((x, d) => { TensorPrimitives.Sqrt(x, d); TensorPrimitives.Divide(1f, d, d); }, 1 << 16);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        // d/dx x^-1/2 = -0.5 · y³
        return Recorder.Record(y, "rsqrt", [this], g => [ZipKernel(y, g, (a, gs, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = gs[i] * (-0.5f * a[i] * a[i] * a[i]);
        }, 1 << 16)]);
    }

    public Tensor Square()
    {
        var y = MapKernel((x, d) => TensorPrimitives.Multiply(x, x, d), 1 << 16);
        var x = this;
        // torch: grad · (2x), in one pass (ZipKernel, as sqrt and rsqrt): no 2x temporary.
        return Recorder.Record(y, "square", [x], g => [ZipKernel(x, g, (a, gs, d) =>
        {
            TensorPrimitives.Multiply(a, 2f, d);
            TensorPrimitives.Multiply(gs, d, d);
        }, 1 << 16)]);
    }

    public Tensor Reciprocal()
    {
        var y = MapKernel((x, d) => TensorPrimitives.Divide(1f, x, d), 1 << 16);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, "reciprocal", [this], g => [ZipKernel(y, g, (a, gs, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = gs[i] * (-a[i] * a[i]);
        }, 1 << 16)]);
    }

    /// <summary>x^p with torch's special cases (p = 2, 3, 0.5, -1 … use exact formulas; others MathF.Pow).</summary>
    public Tensor Pow(float p)
    {
        SpanKernel k = p switch
        {
            1f => (x, d) => x.CopyTo(d),
            2f => (x, d) => TensorPrimitives.Multiply(x, x, d),
            3f => (x, d) => { for (int i = 0; i < d.Length; i++) d[i] = x[i] * x[i] * x[i]; },
            0.5f => (x, d) => TensorPrimitives.Sqrt(x, d),
            -0.5f => (x, d) => { TensorPrimitives.Sqrt(x, d); TensorPrimitives.Divide(1f, d, d); },
            -1f => (x, d) => TensorPrimitives.Divide(1f, x, d),
            -2f => (x, d) => { for (int i = 0; i < d.Length; i++) d[i] = 1f / (x[i] * x[i]); },
            0f => (x, d) => d.Fill(1f),
            _ => (x, d) => { for (int i = 0; i < d.Length; i++) d[i] = MathF.Pow(x[i], p); },
        };
        var y = MapKernel(k);
        var xin = this;
        return Recorder.Record(y, "pow", [xin], g =>
        {
            // torch: exponent == 0 → zeros, else grad · p · x^(p-1)
            if (p == 0f) return [Zeros(xin.ShapeArray(), DType.Float32)];
            var pm1 = xin.Pow(p - 1f);
            var dx = pm1.MapKernel((a, d) => TensorPrimitives.Multiply(a, p, d));
            pm1.Dispose();
            var gx = MulNr(g, dx);
            dx.Dispose();
            return [gx];
        });
    }

    /// <summary>Element-wise x^e with broadcasting.</summary>
    public Tensor Pow(Tensor exponent)
    {
        var y = BinaryKernel<PowOp>(this, exponent);
        Tensor x = this, e = exponent;
        if (Recorder.ShouldRecord(x, e)) Recorder.Save(y);
        return Recorder.Record(y, "pow_tensor", [x, e], g =>
        {
            Tensor? gx = null, ge = null;
            // Every temporary goes back to the pool once used.
            if (x.RequiresGrad)
            {
                var em1 = e.Sub(1f);
                var ge1 = MulNr(g, e);
                var pw = BinaryKernel<PowOp>(x, em1);
                em1.Dispose();
                var prod = MulNr(ge1, pw);
                ge1.Dispose(); pw.Dispose();
                gx = prod.SumToFree(x.Shape);
            }
            if (e.RequiresGrad)
            {
                // torch: grad · x^e · log(x), with 0 where x == 0 and e >= 0 (the limit, not NaN).
                var log = x.Log();
                var ylog = MulNr(y, log);
                log.Dispose();
                var t = MulNr(g, ylog);
                ylog.Dispose();
                using var x0 = x.Eq(0f);
                using var e0 = e.Ge(0f);
                using var zero = x0.LogicalAnd(e0);
                var filled = t.MaskedFill(zero, 0f);
                t.Dispose();
                ge = filled.SumToFree(e.Shape);
            }
            return [gx, ge];
        });
    }

    public Tensor Abs()
    {
        var y = MapKernel((x, d) => TensorPrimitives.Abs(x, d), 1 << 16);
        var x = this;
        return Recorder.Record(y, "abs", [x], g =>
        {
            using var sign = x.Sign();
            return [MulNr(g, sign)];
        });
    }

    /// <summary>-1, 0 or 1 (NaN stays NaN); not differentiable (gradient 0).</summary>
    public Tensor Sign()
    {
        var y = MapKernel((x, d) =>
        {
            for (int i = 0; i < d.Length; i++) { float v = x[i]; d[i] = v > 0 ? 1f : v < 0 ? -1f : v; }
        }, 1 << 16);
        var x = this;
        return Recorder.Record(y, "sign", [x], g => [Zeros(x.ShapeArray(), DType.Float32)]);
    }

    public Tensor Tanh()
    {
        var y = MapKernel(FastMath.Tanh);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, "tanh", [this], g => [ZipKernel(y, g, (t, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = gg[i] * (1f - t[i] * t[i]);
        })]);
    }

    public Tensor Sigmoid()
    {
        var y = MapKernel(FastMath.Sigmoid);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, "sigmoid", [this], g => [ZipKernel(y, g, (s, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = gg[i] * s[i] * (1f - s[i]);
        })]);
    }

    /// <summary>max(x, 0); NaN and -0 pass through (torch). Gradient 0 where the output is ≤ 0 (torch's threshold_backward).</summary>
    public Tensor Relu()
    {
        var y = MapKernel(FastMath.Relu, 1 << 16);
        if (!Recorder.ShouldRecord(this)) return y;
        Recorder.Save(y);
        return Recorder.Record(y, "relu", [this], g => [ZipKernel(y, g, (o, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = o[i] > 0f ? gg[i] : 0f;
        }, 1 << 16)]);
    }

    /// <summary>GELU, erf form: 0.5·x·(1 + erf(x/√2)) (torch's default, HF "gelu").</summary>
    public Tensor Gelu()
    {
        var y = MapKernel(FastMath.Gelu);
        var x = this;
        return Recorder.Record(y, "gelu", [x], g => [ZipKernel(x, g, FastMath.GeluBackward)]);
    }

    /// <summary>GELU, tanh approximation (torch approximate='tanh', HF "gelu_new" / "gelu_pytorch_tanh").</summary>
    public Tensor GeluTanh()
    {
        var y = MapKernel(FastMath.GeluTanh);
        var x = this;
        return Recorder.Record(y, "gelu_tanh", [x], g => [ZipKernel(x, g, FastMath.GeluTanhBackward)]);
    }

    /// <summary>x·sigmoid(1.702x) (CLIP's quick_gelu).</summary>
    public Tensor QuickGelu()
    {
        var y = MapKernel(FastMath.QuickGelu);
        var x = this;
        return Recorder.Record(y, "quick_gelu", [x], g => [ZipKernel(x, g, (xs, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++)
            {
                float s = FastMath.SigmoidScalar(1.702f * xs[i]);
                d[i] = gg[i] * (s + 1.702f * xs[i] * s * (1f - s));
            }
        })]);
    }

    /// <summary>x·sigmoid(x) (SiLU / swish).</summary>
    public Tensor Silu()
    {
        var y = MapKernel(FastMath.Silu);
        var x = this;
        return Recorder.Record(y, "silu", [x], g => [ZipKernel(x, g, (xs, gg, d) =>
        {
            FastMath.Sigmoid(xs, d);
            for (int i = 0; i < d.Length; i++) { float s = d[i]; d[i] = gg[i] * (s + xs[i] * s * (1f - s)); }
        })]);
    }

    /// <summary>Error function.</summary>
    public Tensor Erf()
    {
        var y = MapKernel(FastMath.Erf);
        var x = this;
        // d/dx erf = 2/√π · exp(-x²)
        return Recorder.Record(y, "erf", [x], g => [ZipKernel(x, g, (xs, gg, d) =>
        {
            for (int i = 0; i < d.Length; i++) d[i] = -xs[i] * xs[i];
            FastMath.Exp(d, d);
            for (int i = 0; i < d.Length; i++) d[i] *= gg[i] * 1.12837916709551257f;
        })]);
    }
}
