using Vlm.Core;
using Vlm.Core.Autograd;

namespace Vlm.Nn.Internal;

/// <summary>
/// TEMPORARY scalar implementations of ops that are being added to Vlm.Core on other branches
/// (Tensor.Gelu/…/Embedding, F.Softmax/LayerNorm/Dropout/Conv2d). They exist only so the layers compile and
/// are testable before those land; each call site switches to the Core op on merge and this file is deleted.
/// Internal on purpose: nothing outside Vlm.Nn may depend on it.
/// </summary>
internal static class Fallback
{
    private static Tensor Unary(Tensor x, string name, Func<float, float> f, Func<float, float> df)
    {
        var xc = x.Contiguous();
        var r = Tensor.Empty(x.ShapeArray());
        var xs = xc.Span; var rs = r.Span;
        for (int i = 0; i < xs.Length; i++) rs[i] = f(xs[i]);
        return Recorder.Record(r, name, [x], g =>
        {
            var gc = g.Contiguous();
            var o = Tensor.Empty(g.ShapeArray());
            var gs = gc.Span; var os = o.Span; var xs2 = xc.Span;
            for (int i = 0; i < os.Length; i++) os[i] = gs[i] * df(xs2[i]);
            return [o];
        });
    }

    /// <summary>erf in double: Taylor series near 0, continued fraction for erfc in the tails.</summary>
    internal static double Erf(double x)
    {
        double z = Math.Abs(x);
        if (z < 3)
        {
            double sum = 0, term = z; // term = (-1)^n z^(2n+1) / n!
            for (int n = 0; n < 100; n++)
            {
                double c = term / (2 * n + 1);
                sum += c;
                if (Math.Abs(c) < 1e-17 * Math.Abs(sum)) break;
                term *= -z * z / (n + 1);
            }
            double e = 2 / Math.Sqrt(Math.PI) * sum;
            return x < 0 ? -e : e;
        }
        double k = z;
        for (int n = 60; n >= 1; n--) k = z + n / 2.0 / k;
        double erfc = Math.Exp(-z * z) / (Math.Sqrt(Math.PI) * k);
        return x < 0 ? erfc - 1 : 1 - erfc;
    }

    public static Tensor Gelu(Tensor x) => Unary(x, "gelu",
        v => (float)(0.5 * v * (1 + Erf(v / Math.Sqrt(2)))),
        v => (float)(0.5 * (1 + Erf(v / Math.Sqrt(2))) + v * Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI)));

    public static Tensor GeluTanh(Tensor x) => Unary(x, "gelu_tanh",
        v => { double u = Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v); return (float)(0.5 * v * (1 + Math.Tanh(u))); },
        v =>
        {
            double u = Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v), th = Math.Tanh(u);
            return (float)(0.5 * (1 + th) + 0.5 * v * (1 - th * th) * Math.Sqrt(2 / Math.PI) * (1 + 3 * 0.044715 * v * v));
        });

    private static double Sig(double v) => 1 / (1 + Math.Exp(-v));

    public static Tensor QuickGelu(Tensor x) => Unary(x, "quick_gelu",
        v => (float)(v * Sig(1.702 * v)),
        v => { double s = Sig(1.702 * v); return (float)(s + v * 1.702 * s * (1 - s)); });

    public static Tensor Relu(Tensor x) => Unary(x, "relu", v => v > 0 ? v : 0, v => v > 0 ? 1 : 0);

    public static Tensor Silu(Tensor x) => Unary(x, "silu",
        v => (float)(v * Sig(v)), v => { double s = Sig(v); return (float)(s * (1 + v * (1 - s))); });

    public static Tensor Tanh(Tensor x) => Unary(x, "tanh", v => MathF.Tanh(v), v => { float t = MathF.Tanh(v); return 1 - t * t; });

    public static Tensor Sigmoid(Tensor x) => Unary(x, "sigmoid", v => (float)Sig(v), v => { double s = Sig(v); return (float)(s * (1 - s)); });

    /// <summary>Softmax over the last dim.</summary>
    public static Tensor Softmax(Tensor x)
    {
        var xc = x.Contiguous();
        int n = x.Size(-1), rows = x.Numel / Math.Max(n, 1);
        var y = Tensor.Empty(x.ShapeArray());
        var xs = xc.Span; var ys = y.Span;
        for (int r = 0; r < rows; r++)
        {
            var a = xs.Slice(r * n, n); var o = ys.Slice(r * n, n);
            float m = float.NegativeInfinity;
            foreach (var v in a) m = Math.Max(m, v);
            float s = 0;
            for (int i = 0; i < n; i++) { o[i] = MathF.Exp(a[i] - m); s += o[i]; }
            for (int i = 0; i < n; i++) o[i] /= s;
        }
        Recorder.Save(y);
        return Recorder.Record(y, "softmax", [x], g =>
        {
            var gc = g.Contiguous(); var gs = gc.Span; var ys2 = y.Span;
            var d = Tensor.Empty(x.ShapeArray()); var ds = d.Span;
            for (int r = 0; r < rows; r++)
            {
                float dot = 0;
                for (int i = 0; i < n; i++) dot += gs[r * n + i] * ys2[r * n + i];
                for (int i = 0; i < n; i++) ds[r * n + i] = ys2[r * n + i] * (gs[r * n + i] - dot);
            }
            return [d];
        });
    }

    /// <summary>Layer norm over the last dims, composed from Core ops (autograd for free).</summary>
    public static Tensor LayerNorm(Tensor x, int[] normalizedShape, Tensor? weight, Tensor? bias, float eps)
    {
        var dims = Enumerable.Range(x.Rank - normalizedShape.Length, normalizedShape.Length).ToArray();
        var mean = x.Mean(dims, true);
        var xm = x - mean;
        var variance = (xm * xm).Mean(dims, true);
        var y = xm / Sqrt(variance + eps);
        if (weight != null) y = y * weight;
        if (bias != null) y = y + bias;
        return y;
    }

    private static Tensor Sqrt(Tensor x) => Unary(x, "sqrt", MathF.Sqrt, v => 0.5f / MathF.Sqrt(v));

    public static Tensor Dropout(Tensor x, float p, bool training, Rng rng)
    {
        if (!training || p == 0f) return x;
        var mask = Tensor.Empty(x.ShapeArray());
        var ms = mask.Span; float scale = 1f / (1f - p);
        for (int i = 0; i < ms.Length; i++) ms[i] = rng.NextFloat() < p ? 0f : scale;
        return x * mask;
    }

    public static Tensor Embedding(Tensor weight, Tensor ids)
    {
        int dim = weight.Size(1), num = weight.Size(0);
        var idv = ids.ToInt64Array();
        var shape = ids.ShapeArray().Append(dim).ToArray();
        var r = Tensor.Empty(shape);
        var wc = weight.Contiguous(); var ws = wc.Span; var rs = r.Span;
        for (int i = 0; i < idv.Length; i++)
        {
            long id = idv[i];
            if (id < 0 || id >= num) throw new IndexOutOfRangeException($"embedding id {id} out of range [0, {num}) for {weight.Name ?? "weight"}");
            ws.Slice((int)id * dim, dim).CopyTo(rs.Slice(i * dim, dim));
        }
        return Recorder.Record(r, "embedding", [weight], g =>
        {
            var gc = g.Contiguous(); var gs = gc.Span;
            var dw = Tensor.Zeros(weight.ShapeArray()); var ds = dw.Span;
            for (int i = 0; i < idv.Length; i++)
                for (int j = 0; j < dim; j++) ds[(int)idv[i] * dim + j] += gs[i * dim + j];
            return [dw];
        });
    }

    /// <summary>conv2d via im2col + matmul. x (B, C, H, W), w (O, C, kh, kw).</summary>
    public static Tensor Conv2d(Tensor x, Tensor w, Tensor? b, (int h, int w) stride, (int h, int w) padding)
    {
        int B = x.Size(0), C = x.Size(1), H = x.Size(2), W = x.Size(3);
        int O = w.Size(0), kh = w.Size(2), kw = w.Size(3);
        int oh = (H + 2 * padding.h - kh) / stride.h + 1, ow = (W + 2 * padding.w - kw) / stride.w + 1;
        int K = C * kh * kw;
        // Map from (column row, patch element) to input flat index, or -1 for padding.
        var map = new int[oh * ow * K];
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++)
                        {
                            int iy = oy * stride.h - padding.h + ky, ix = ox * stride.w - padding.w + kx;
                            map[((oy * ow + ox) * K) + (c * kh + ky) * kw + kx] = iy < 0 || iy >= H || ix < 0 || ix >= W ? -1 : (c * H + iy) * W + ix;
                        }
        var xc = x.Contiguous();
        var cols = Tensor.Empty([B, oh * ow, K]);
        var xs = xc.Span; var cs = cols.Span; int img = C * H * W, per = oh * ow * K;
        for (int bi = 0; bi < B; bi++)
            for (int i = 0; i < per; i++) cs[bi * per + i] = map[i] < 0 ? 0f : xs[bi * img + map[i]];
        var colsT = Recorder.Record(cols, "im2col", [x], g =>
        {
            var gc = g.Contiguous(); var gs = gc.Span;
            var dx = Tensor.Zeros(x.ShapeArray()); var dxs = dx.Span;
            for (int bi = 0; bi < B; bi++)
                for (int i = 0; i < per; i++) if (map[i] >= 0) dxs[bi * img + map[i]] += gs[bi * per + i];
            return [dx];
        });
        var y = colsT.MatMul(w.Reshape(O, K).T); // (B, oh*ow, O)
        if (b != null) y = y + b;
        return y.Transpose(1, 2).Reshape(B, O, oh, ow);
    }

    /// <summary>log_softmax over the last dim.</summary>
    public static Tensor LogSoftmax(Tensor x)
    {
        var xc = x.Contiguous();
        int n = x.Size(-1), rows = x.Numel / Math.Max(n, 1);
        var y = Tensor.Empty(x.ShapeArray());
        var xs = xc.Span; var ys = y.Span;
        for (int r = 0; r < rows; r++)
        {
            var a = xs.Slice(r * n, n); var o = ys.Slice(r * n, n);
            float m = float.NegativeInfinity;
            foreach (var v in a) m = Math.Max(m, v);
            double s = 0;
            for (int i = 0; i < n; i++) s += Math.Exp(a[i] - m);
            float lse = m + (float)Math.Log(s);
            for (int i = 0; i < n; i++) o[i] = a[i] - lse;
        }
        Recorder.Save(y);
        return Recorder.Record(y, "log_softmax", [x], g =>
        {
            var gc = g.Contiguous(); var gs = gc.Span; var ys2 = y.Span;
            var d = Tensor.Empty(x.ShapeArray()); var ds = d.Span;
            for (int r = 0; r < rows; r++)
            {
                float sum = 0;
                for (int i = 0; i < n; i++) sum += gs[r * n + i];
                for (int i = 0; i < n; i++) ds[r * n + i] = gs[r * n + i] - MathF.Exp(ys2[r * n + i]) * sum;
            }
            return [d];
        });
    }
}
