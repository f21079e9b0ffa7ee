// TEMPORARY FALLBACKS — delete this file once `main` has the ops from branches opsa / opsb.
// Written against the names those branches publish (Tensor.Exp/Tanh/..., Tensor.Cat/Stack/Embedding,
// F.Softmax/LogSoftmax/LayerNorm/Dropout/CrossEntropy/BinaryCrossEntropyWithLogits/Normalize) so the model code
// compiles unchanged against the real ones: instance methods win over these extension members, and the
// namespace-local `F` below shadows Vlm.Core.F only while this file exists.
// Plain loops, float32 results, backward rules derived by hand; correctness only, no speed.
using Vlm.Core;
using Vlm.Core.Autograd;

namespace Vlm.Models.BridgeTower;

internal static class PendingTensorOps
{
    extension(Tensor x)
    {
        public Tensor Exp() => Unary(x, "exp", v => MathF.Exp(v), (_, y) => y);
        public Tensor Log() => Unary(x, "log", v => MathF.Log(v), (v, _) => 1f / v);
        public Tensor Sqrt() => Unary(x, "sqrt", v => MathF.Sqrt(v), (_, y) => 0.5f / y);
        public Tensor Tanh() => Unary(x, "tanh", v => MathF.Tanh(v), (_, y) => 1f - y * y);
        public Tensor Sigmoid() => Unary(x, "sigmoid", Sig, (_, y) => y * (1f - y));
        public Tensor Relu() => Unary(x, "relu", v => v > 0f ? v : 0f, (v, _) => v > 0f ? 1f : 0f);
        public Tensor Silu() => Unary(x, "silu", v => v * Sig(v), (v, _) => { float s = Sig(v); return s * (1f + v * (1f - s)); });
        public Tensor QuickGelu() => Unary(x, "quick_gelu", v => v * Sig(1.702f * v),
            (v, _) => { float s = Sig(1.702f * v); return s + 1.702f * v * s * (1f - s); });
        public Tensor Gelu() => Unary(x, "gelu", v => (float)(0.5 * v * (1.0 + Erf(v / Math.Sqrt(2.0)))),
            (v, _) => (float)(0.5 * (1.0 + Erf(v / Math.Sqrt(2.0))) + v * Math.Exp(-0.5 * v * v) / Math.Sqrt(2 * Math.PI)));
        public Tensor GeluTanh() => Unary(x, "gelu_tanh", v =>
            {
                double u = Math.Sqrt(2.0 / Math.PI) * (v + 0.044715 * v * v * v);
                return (float)(0.5 * v * (1.0 + Math.Tanh(u)));
            },
            (v, _) =>
            {
                double u = Math.Sqrt(2.0 / Math.PI) * (v + 0.044715 * v * v * v);
                double t = Math.Tanh(u);
                double du = Math.Sqrt(2.0 / Math.PI) * (1 + 3 * 0.044715 * v * v);
                return (float)(0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
            });
        public Tensor ClampMin(float min) => Unary(x, "clamp_min", v => v < min ? min : v, (v, _) => v < min ? 0f : 1f);
    }

    extension(Tensor)
    {
        /// <summary>torch.cat.</summary>
        public static Tensor Cat(Tensor[] tensors, int dim) => CatImpl(tensors, dim);

        /// <summary>torch.stack.</summary>
        public static Tensor Stack(Tensor[] tensors, int dim) =>
            CatImpl(tensors.Select(t => t.Unsqueeze(dim < 0 ? dim + t.Rank + 1 : dim)).ToArray(), dim);

        /// <summary>weight[ids]: rows of a (V, D) table for integer ids of any shape → ids.shape + (D).</summary>
        public static Tensor Embedding(Tensor weight, Tensor ids) => EmbeddingImpl(weight, ids);
    }

    private static float Sig(float v) => 1f / (1f + MathF.Exp(-v));

    /// <summary>erf with |error| &lt; 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), ample for float32.</summary>
    internal static double Erf(double x)
    {
        double z = Math.Abs(x);
        double t = 1.0 / (1.0 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? 1.0 - r : r - 1.0;
    }

    private static Tensor Unary(Tensor x, string name, Func<float, float> f, Func<float, float, float> df)
    {
        x.RequireFloat32(name);
        var c = x.Contiguous();
        var r = Tensor.Empty(x.ShapeArray());
        var xs = c.Span; var rs = r.Span;
        for (int i = 0; i < xs.Length; i++) rs[i] = f(xs[i]);
        if (!Recorder.ShouldRecord(x)) return r;
        Recorder.Save(c); Recorder.Save(r);
        return Recorder.Record(r, name, [x], g =>
        {
            var gc = g.Contiguous();
            var d = Tensor.Empty(gc.ShapeArray());
            var gs = gc.Span; var ds = d.Span; var xv = c.Span; var yv = r.Span;
            for (int i = 0; i < ds.Length; i++) ds[i] = gs[i] * df(xv[i], yv[i]);
            return [d];
        });
    }

    internal static void RequireFloat32(this Tensor t, string op)
    {
        if (t.DType != DType.Float32) throw new InvalidOperationException($"{op} needs a float32 tensor, got {t.DType}");
    }

    private static Tensor CatImpl(Tensor[] ts, int dim)
    {
        if (ts.Length == 0) throw new ArgumentException("cat of no tensors");
        int rank = ts[0].Rank;
        int d = dim < 0 ? dim + rank : dim;
        var shape = ts[0].ShapeArray();
        int total = 0;
        foreach (var t in ts)
        {
            if (t.Rank != rank) throw new ArgumentException("cat: tensors differ in rank");
            for (int i = 0; i < rank; i++)
                if (i != d && t.Size(i) != shape[i]) throw new ArgumentException($"cat: shapes {ts[0].ShapeString} and {t.ShapeString} differ outside dim {d}");
            total += t.Size(d);
        }
        shape[d] = total;
        var r = Tensor.Empty(shape, ts[0].DType);
        int off = 0;
        var offs = new int[ts.Length];
        using (Tensor.NoGrad())
            for (int k = 0; k < ts.Length; k++)
            {
                offs[k] = off;
                r.Narrow(d, off, ts[k].Size(d)).CopyFrom(ts[k]);
                off += ts[k].Size(d);
            }
        if (ts[0].DType != DType.Float32) return r;
        return Recorder.Record(r, "cat", ts, g =>
        {
            var res = new Tensor?[ts.Length];
            for (int k = 0; k < ts.Length; k++) if (ts[k].RequiresGrad) res[k] = g.Narrow(d, offs[k], ts[k].Size(d)).Contiguous();
            return res;
        });
    }

    private static Tensor EmbeddingImpl(Tensor weight, Tensor ids)
    {
        weight.RequireFloat32("embedding");
        if (weight.Rank != 2) throw new ArgumentException($"embedding table must be 2-D, got {weight.ShapeString}");
        int v = weight.Size(0), dm = weight.Size(1);
        var idArr = ids.ToInt64Array();
        foreach (var id in idArr)
            if (id < 0 || id >= v) throw new IndexOutOfRangeException($"embedding id {id} out of range for a table of {v} rows ({weight.Name ?? "weight"})");
        var w = weight.Contiguous();
        var shape = ids.ShapeArray().Append(dm).ToArray();
        var r = Tensor.Empty(shape);
        var ws = w.Span; var rs = r.Span;
        for (int i = 0; i < idArr.Length; i++) ws.Slice((int)idArr[i] * dm, dm).CopyTo(rs.Slice(i * dm, dm));
        return Recorder.Record(r, "embedding", [weight], g =>
        {
            var gc = g.Contiguous();
            var gw = Tensor.Zeros(v, dm);
            var gs = gc.Span; var gws = gw.Span;
            for (int i = 0; i < idArr.Length; i++)
            {
                var dst = gws.Slice((int)idArr[i] * dm, dm); var src = gs.Slice(i * dm, dm);
                for (int j = 0; j < dm; j++) dst[j] += src[j];
            }
            return [gw];
        });
    }
}

/// <summary>TEMPORARY stand-in for Vlm.Core.F (see the header of this file).</summary>
internal static class F
{
    /// <summary>Softmax over the last dim (the only dim the model uses).</summary>
    public static Tensor Softmax(Tensor x, int dim)
    {
        RequireLast(x, dim, "softmax");
        var c = x.Contiguous();
        int n = x.Size(-1), rows = x.Numel / Math.Max(n, 1);
        var r = Tensor.Empty(x.ShapeArray());
        var xs = c.Span; var rs = r.Span;
        for (int i = 0; i < rows; i++)
        {
            var row = xs.Slice(i * n, n); var o = rs.Slice(i * n, n);
            float m = float.NegativeInfinity;
            for (int j = 0; j < n; j++) if (row[j] > m) m = row[j];
            double s = 0;
            for (int j = 0; j < n; j++) { o[j] = MathF.Exp(row[j] - m); s += o[j]; }
            float inv = (float)(1.0 / s);
            for (int j = 0; j < n; j++) o[j] *= inv;
        }
        if (!Recorder.ShouldRecord(x)) return r;
        Recorder.Save(r);
        return Recorder.Record(r, "softmax", [x], g =>
        {
            var gc = g.Contiguous(); var d = Tensor.Empty(gc.ShapeArray());
            var gs = gc.Span; var ys = r.Span; var ds = d.Span;
            for (int i = 0; i < rows; i++)
            {
                double dot = 0;
                for (int j = 0; j < n; j++) dot += gs[i * n + j] * ys[i * n + j];
                for (int j = 0; j < n; j++) ds[i * n + j] = ys[i * n + j] * (gs[i * n + j] - (float)dot);
            }
            return [d];
        });
    }

    public static Tensor LogSoftmax(Tensor x, int dim)
    {
        RequireLast(x, dim, "log_softmax");
        var c = x.Contiguous();
        int n = x.Size(-1), rows = x.Numel / Math.Max(n, 1);
        var r = Tensor.Empty(x.ShapeArray());
        var xs = c.Span; var rs = r.Span;
        for (int i = 0; i < rows; i++)
        {
            var row = xs.Slice(i * n, n); var o = rs.Slice(i * n, n);
            float m = float.NegativeInfinity;
            for (int j = 0; j < n; j++) if (row[j] > m) m = row[j];
            double s = 0;
            for (int j = 0; j < n; j++) s += Math.Exp(row[j] - m);
            float lse = m + (float)Math.Log(s);
            for (int j = 0; j < n; j++) o[j] = row[j] - lse;
        }
        if (!Recorder.ShouldRecord(x)) return r;
        Recorder.Save(r);
        return Recorder.Record(r, "log_softmax", [x], g =>
        {
            var gc = g.Contiguous(); var d = Tensor.Empty(gc.ShapeArray());
            var gs = gc.Span; var ys = r.Span; var ds = d.Span;
            for (int i = 0; i < rows; i++)
            {
                double sum = 0;
                for (int j = 0; j < n; j++) sum += gs[i * n + j];
                for (int j = 0; j < n; j++) ds[i * n + j] = gs[i * n + j] - MathF.Exp(ys[i * n + j]) * (float)sum;
            }
            return [d];
        });
    }

    /// <summary>LayerNorm over the last dim (normalizedShape must be that one dim).</summary>
    public static Tensor LayerNorm(Tensor x, int[] normalizedShape, Tensor? weight, Tensor? bias, float eps)
    {
        if (normalizedShape.Length != 1 || normalizedShape[0] != x.Size(-1))
            throw new ArgumentException($"layer_norm over {ShapeUtil.Format(normalizedShape)} of a tensor {x.ShapeString}");
        var c = x.Contiguous();
        int n = x.Size(-1), rows = x.Numel / Math.Max(n, 1);
        var r = Tensor.Empty(x.ShapeArray());
        var xhat = new float[x.Numel]; var rstd = new float[rows];
        var xs = c.Span; var rs = r.Span;
        var w = weight?.Contiguous().ToArray(); var b = bias?.Contiguous().ToArray();
        for (int i = 0; i < rows; i++)
        {
            double mean = 0;
            for (int j = 0; j < n; j++) mean += xs[i * n + j];
            mean /= n;
            double var = 0;
            for (int j = 0; j < n; j++) { double dd = xs[i * n + j] - mean; var += dd * dd; }
            var /= n;
            float rs1 = (float)(1.0 / Math.Sqrt(var + eps));
            rstd[i] = rs1;
            for (int j = 0; j < n; j++)
            {
                float h = (float)((xs[i * n + j] - mean) * rs1);
                xhat[i * n + j] = h;
                rs[i * n + j] = h * (w?[j] ?? 1f) + (b?[j] ?? 0f);
            }
        }
        var inputs = new List<Tensor> { x };
        if (weight != null) inputs.Add(weight);
        if (bias != null) inputs.Add(bias);
        return Recorder.Record(r, "layer_norm", inputs.ToArray(), g =>
        {
            var gs = g.Contiguous().Span.ToArray();
            var res = new Tensor?[inputs.Count];
            if (x.RequiresGrad)
            {
                var dx = Tensor.Empty(x.ShapeArray()); var ds = dx.Span;
                for (int i = 0; i < rows; i++)
                {
                    double m1 = 0, m2 = 0;
                    for (int j = 0; j < n; j++)
                    {
                        double dh = gs[i * n + j] * (w?[j] ?? 1f);
                        m1 += dh; m2 += dh * xhat[i * n + j];
                    }
                    m1 /= n; m2 /= n;
                    for (int j = 0; j < n; j++)
                    {
                        double dh = gs[i * n + j] * (w?[j] ?? 1f);
                        ds[i * n + j] = (float)(rstd[i] * (dh - m1 - xhat[i * n + j] * m2));
                    }
                }
                res[0] = dx;
            }
            int k = 1;
            if (weight != null)
            {
                if (weight.RequiresGrad)
                {
                    var dw = new float[n];
                    for (int i = 0; i < rows; i++) for (int j = 0; j < n; j++) dw[j] += gs[i * n + j] * xhat[i * n + j];
                    res[k] = Tensor.FromArray(dw, weight.ShapeArray());
                }
                k++;
            }
            if (bias != null && bias.RequiresGrad)
            {
                var db = new float[n];
                for (int i = 0; i < rows; i++) for (int j = 0; j < n; j++) db[j] += gs[i * n + j];
                res[k] = Tensor.FromArray(db, bias.ShapeArray());
            }
            return res;
        });
    }

    public static Tensor Dropout(Tensor x, float p, bool training, Rng? rng)
    {
        if (!training || p == 0f) return x;
        if (rng is null) throw new ArgumentNullException(nameof(rng), "dropout in training mode needs a random stream");
        var mask = Tensor.Empty(x.ShapeArray());
        var ms = mask.Span;
        float keep = 1f / (1f - p);
        for (int i = 0; i < ms.Length; i++) ms[i] = rng.NextDouble() < p ? 0f : keep;
        return x.Mul(mask);
    }

    /// <summary>Mean cross entropy over rows whose label is not <paramref name="ignoreIndex"/>.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels, int ignoreIndex = -100)
    {
        int c = logits.Size(-1), rows = logits.Numel / c;
        var lab = labels.ToInt64Array();
        if (lab.Length != rows) throw new ArgumentException($"cross_entropy: {lab.Length} labels for {rows} rows");
        var onehot = Tensor.Zeros(rows, c);
        var os = onehot.Span; int count = 0;
        for (int i = 0; i < rows; i++)
        {
            if (lab[i] == ignoreIndex) continue;
            if (lab[i] < 0 || lab[i] >= c) throw new IndexOutOfRangeException($"cross_entropy: label {lab[i]} out of range for {c} classes");
            os[i * c + (int)lab[i]] = 1f; count++;
        }
        var logp = LogSoftmax(logits.Reshape(rows, c), -1);
        // count == 0 gives 0/0 = NaN, as PyTorch does.
        return logp.Mul(onehot).Sum().Neg().Div(count);
    }

    /// <summary>mean(max(x,0) - x·y + log(1 + exp(-|x|))).</summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor targets)
    {
        var relu = logits.Relu();
        var soft = Unary(logits, v => MathF.Log(1f + MathF.Exp(-MathF.Abs(v))),
            v => { float s = 1f / (1f + MathF.Exp(-MathF.Abs(v))); return v >= 0 ? s - 1f : 1f - s; });
        return relu.Sub(logits.Mul(targets)).Add(soft).Mean();
    }

    private static Tensor Unary(Tensor x, Func<float, float> f, Func<float, float> df)
    {
        var c = x.Contiguous(); var r = Tensor.Empty(x.ShapeArray());
        var xs = c.Span; var rs = r.Span;
        for (int i = 0; i < xs.Length; i++) rs[i] = f(xs[i]);
        return Recorder.Record(r, "unary", [x], g =>
        {
            var gc = g.Contiguous(); var d = Tensor.Empty(gc.ShapeArray()); var ds = d.Span; var gs = gc.Span; var xv = c.Span;
            for (int i = 0; i < ds.Length; i++) ds[i] = gs[i] * df(xv[i]);
            return [d];
        });
    }

    /// <summary>x / max(‖x‖_p, eps) along <paramref name="dim"/> (p = 2 only).</summary>
    public static Tensor Normalize(Tensor x, float p = 2f, int dim = -1, float eps = 1e-12f)
    {
        if (p != 2f) throw new NotSupportedException("normalize: only p = 2");
        var norm = x.Mul(x).Sum(dim, keepDim: true).Sqrt().ClampMin(eps);
        return x.Div(norm);
    }

    private static void RequireLast(Tensor x, int dim, string op)
    {
        if (dim != -1 && dim != x.Rank - 1) throw new NotSupportedException($"{op}: only the last dim in the fallback");
    }
}
