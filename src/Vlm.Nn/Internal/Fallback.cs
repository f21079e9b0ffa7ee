using Vlm.Core;
using Vlm.Core.Autograd;

namespace Vlm.Nn.Internal;

/// <summary>
/// TEMPORARY scalar implementations of ops that are being added to Vlm.Core on other branches
/// (Tensor.Gelu/…/Embedding on branch opsa). They exist only so the layers compile and
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
}
