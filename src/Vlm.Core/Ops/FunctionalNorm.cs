using System.Numerics.Tensors;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>layer_norm and normalize (torch.nn.functional semantics, float32).</summary>
public static partial class F
{
    /// <summary>torch.nn.functional.layer_norm: normalises over the trailing <paramref name="normalizedShape"/> dims with the
    /// biased variance, then applies the optional element-wise affine. One fused pass per row; mean and 1/std are cached
    /// for backward (as in llm.c's layernorm_forward).</summary>
    public static Tensor LayerNorm(Tensor x, int[] normalizedShape, Tensor? weight = null, Tensor? bias = null, float eps = 1e-5f)
    {
        x.RequireFloat();
        int k = normalizedShape.Length;
        if (k == 0 || k > x.Rank || !x.Shape[(x.Rank - k)..].SequenceEqual(normalizedShape))
            throw new ArgumentException($"layer_norm: normalized shape {ShapeUtil.Format(normalizedShape)} must equal the last dims of input {x.Name ?? x.ShapeString}");
        int n = ShapeUtil.Numel(normalizedShape);
        foreach (var (p, what) in new[] { (weight, "weight"), (bias, "bias") })
        {
            if (p is null) continue;
            p.RequireFloat();
            if (!p.Shape.SequenceEqual(normalizedShape))
                throw new ArgumentException($"layer_norm: {what} {p.Name ?? ""} has shape {p.ShapeString}, expected {ShapeUtil.Format(normalizedShape)}");
        }
        int rows = n == 0 ? 0 : x.Numel / n;
        var xc = x.ContiguousNoGrad();
        var wc = weight?.ContiguousNoGrad(); var bc = bias?.ContiguousNoGrad();
        var y = Tensor.NewResult(x.ShapeArray());
        var mean = new float[rows]; var rstd = new float[rows];
        float[] xd = xc.Data; int xo = xc.Offset; float[] yd = y.Data;
        ForChunks(rows, (long)rows * n * 4, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
                NormKernels.LayerNormRow(xd.AsSpan(xo + r * n, n), yd.AsSpan(r * n, n),
                    wc is null ? default : wc.Data.AsSpan(wc.Offset, n), bc is null ? default : bc.Data.AsSpan(bc.Offset, n),
                    eps, out mean[r], out rstd[r]);
        });
        var inputs = new List<Tensor> { x };
        if (weight != null) inputs.Add(weight);
        if (bias != null) inputs.Add(bias);
        if (!Recorder.ShouldRecord(inputs.ToArray()))
        {
            Tensor.DropCopy(xc, x);
            return y;
        }
        Recorder.Save(xc);
        Tensor.DropCopy(xc, x);   // the node's hold keeps it until the backward has run
        return Recorder.Record(y, "layer_norm", inputs.ToArray(), g =>
        {
            var gc = g.Contiguous();
            bool needX = x.RequiresGrad, needW = weight?.RequiresGrad == true, needB = bias?.RequiresGrad == true;
            var dx = needX ? Tensor.NewResult(x.ShapeArray()) : null;
            var dw = new float[weight != null ? n : 0];
            var db = new float[bias != null ? n : 0];
            var gate = new object();
            float[] gd = gc.Data; int go = gc.Offset;
            ForChunks(rows, (long)rows * n * 6, (r0, r1) =>
            {
                var pw = needW ? new float[n] : null;
                var pb = needB ? new float[n] : null;
                var scratch = new float[n];
                for (int r = r0; r < r1; r++)
                    NormKernels.LayerNormBackwardRow(xd.AsSpan(xo + r * n, n), gd.AsSpan(go + r * n, n),
                        wc is null ? default : wc.Data.AsSpan(wc.Offset, n), mean[r], rstd[r],
                        dx is null ? default : dx.Data.AsSpan(r * n, n), pw, pb, scratch);
                lock (gate)
                {
                    if (pw != null) TensorPrimitives.Add(dw, pw, dw);
                    if (pb != null) TensorPrimitives.Add(db, pb, db);
                }
            });
            Tensor.DropCopy(gc, g);
            var grads = new List<Tensor?> { dx };
            if (weight != null) grads.Add(needW ? Tensor.FromArray(dw, normalizedShape) : null);
            if (bias != null) grads.Add(needB ? Tensor.FromArray(db, normalizedShape) : null);
            return grads.ToArray();
        });
    }

    /// <summary>layer_norm(x + residual) over the trailing <paramref name="normalizedShape"/> dims: the post-LN residual
    /// of BERT-style layers. Without recording it is one pass per row (the sum is formed in the output row, then
    /// normalised in place) instead of an add pass, a temporary and a LayerNorm pass; when a gradient is recorded it
    /// is exactly x.Add(residual) followed by <see cref="LayerNorm"/> (their backwards). x and residual must have
    /// the same shape (broadcasting goes through the composed ops).</summary>
    public static Tensor AddLayerNorm(Tensor x, Tensor residual, int[] normalizedShape, Tensor? weight = null, Tensor? bias = null,
        float eps = 1e-5f) => AddLayerNormCore(x, residual, normalizedShape, weight, bias, eps, wantSum: false).Normed;

    /// <summary>As <see cref="AddLayerNorm"/>, also returning the sum x + residual (pre-LN residual blocks such as
    /// CLIP's, which carry the sum on and normalise it for the next sublayer): both from one pass when not recording.</summary>
    public static (Tensor Sum, Tensor Normed) AddLayerNormWithSum(Tensor x, Tensor residual, int[] normalizedShape,
        Tensor? weight = null, Tensor? bias = null, float eps = 1e-5f)
    {
        var (sum, normed) = AddLayerNormCore(x, residual, normalizedShape, weight, bias, eps, wantSum: true);
        return (sum!, normed);
    }

    private static (Tensor? Sum, Tensor Normed) AddLayerNormCore(Tensor x, Tensor residual, int[] normalizedShape, Tensor? weight,
        Tensor? bias, float eps, bool wantSum)
    {
        x.RequireFloat(); residual.RequireFloat();
        var inputs = new List<Tensor> { x, residual };
        if (weight != null) inputs.Add(weight);
        if (bias != null) inputs.Add(bias);
        // VLM_FUSION_REF=1: the composed ops, for interleaved A/B timings of whole models.
        if (Recorder.ShouldRecord(inputs.ToArray()) || !x.Shape.SequenceEqual(residual.Shape)
            || Environment.GetEnvironmentVariable("VLM_FUSION_REF") == "1")
        {
            var s = x.Add(residual);
            var ln = LayerNorm(s, normalizedShape, weight, bias, eps);
            if (wantSum) return (s, ln);
            if (!GradMode.IsEnabled) s.Dispose();
            return (null, ln);
        }
        int k = normalizedShape.Length;
        if (k == 0 || k > x.Rank || !x.Shape[(x.Rank - k)..].SequenceEqual(normalizedShape))
            throw new ArgumentException($"add_layer_norm: normalized shape {ShapeUtil.Format(normalizedShape)} must equal the last dims of input {x.Name ?? x.ShapeString}");
        int n = ShapeUtil.Numel(normalizedShape);
        foreach (var (p, what) in new[] { (weight, "weight"), (bias, "bias") })
        {
            if (p is null) continue;
            p.RequireFloat();
            if (!p.Shape.SequenceEqual(normalizedShape))
                throw new ArgumentException($"add_layer_norm: {what} {p.Name ?? ""} has shape {p.ShapeString}, expected {ShapeUtil.Format(normalizedShape)}");
        }
        int rows = n == 0 ? 0 : x.Numel / n;
        var xc = x.ContiguousNoGrad(); var rc = residual.ContiguousNoGrad();
        var wc = weight?.ContiguousNoGrad(); var bc = bias?.ContiguousNoGrad();
        var y = Tensor.NewResult(x.ShapeArray());
        var sum = wantSum ? Tensor.NewResult(x.ShapeArray()) : null;
        float[] xd = xc.Data, rd = rc.Data, yd = y.Data; int xo = xc.Offset, ro = rc.Offset;
        float[]? sd = sum?.Data;
        ForChunks(rows, (long)rows * n * 5, (r0, r1) =>
        {
            var w = wc is null ? default : wc.Data.AsSpan(wc.Offset, n);
            var b = bc is null ? default : bc.Data.AsSpan(bc.Offset, n);
            for (int r = r0; r < r1; r++)
            {
                var yr = yd.AsSpan(r * n, n);
                // The sum goes where it is kept (the sum tensor, else the output row, normalised in place).
                var sr = sd != null ? sd.AsSpan(r * n, n) : yr;
                TensorPrimitives.Add(xd.AsSpan(xo + r * n, n), rd.AsSpan(ro + r * n, n), sr);
                NormKernels.LayerNormRow(sr, yr, w, b, eps, out _, out _);
            }
        });
        Tensor.DropCopy(xc, x);
        Tensor.DropCopy(rc, residual);
        return (sum, y);
    }

    /// <summary>torch.nn.functional.normalize: x / max(‖x‖_p, eps) along <paramref name="dim"/>.</summary>
    public static Tensor Normalize(Tensor x, float p = 2f, int dim = 1, float eps = 1e-12f)
    {
        x.RequireFloat();
        if (x.Rank == 0) throw new ArgumentException("normalize needs a tensor of rank ≥ 1");
        if (!(p > 0) || float.IsInfinity(p)) throw new ArgumentException($"normalize: p must be finite and positive, got {p}");
        int d = ShapeUtil.NormDim(dim, x.Rank);
        var (outer, n, inner) = RowGeometry(x.Shape, d);
        var xc = x.ContiguousNoGrad();
        var y = Tensor.NewResult(x.ShapeArray());
        int rows = outer * inner;
        var norms = new float[rows];
        RunRowsIndexed(xc.Data, xc.Offset, y.Data, outer, n, inner, (r, s, o) =>
        {
            float nm = p == 2f ? TensorPrimitives.Norm(s) : PNorm(s, p);
            norms[r] = nm;
            TensorPrimitives.Divide(s, MathF.Max(nm, eps), o);
        });
        if (!Recorder.ShouldRecord(x))
        {
            Tensor.DropCopy(xc, x);
            return y;
        }
        Recorder.Save(xc);
        Tensor.DropCopy(xc, x);   // the node's hold keeps it until the backward has run
        return Recorder.Record(y, "normalize", [x], g =>
        {
            var gc = g.Contiguous();
            var dx = Tensor.NewResult(x.ShapeArray());
            var gd = gc.Data; int go = gc.Offset;
            // Gather g's rows alongside x's by running over x and reading g with the same geometry.
            var gRows = new float[rows * n];
            RunRowsIndexed(gd, go, gRows, outer, n, inner, (r, s, o) => s.CopyTo(o), scatter: false);
            Tensor.DropCopy(gc, g);
            RunRowsIndexed(xc.Data, xc.Offset, dx.Data, outer, n, inner, (r, xs, o) =>
            {
                var gs = gRows.AsSpan(r * n, n);
                float nm = norms[r];
                if (nm <= eps || nm == 0f)
                {
                    // The clamp is active: the denominator is the constant eps.
                    TensorPrimitives.Divide(gs, eps, o);
                    return;
                }
                // y = x / ‖x‖_p: dx_j = g_j/‖x‖ − (Σ g·x) · x_j·|x_j|^{p−2} / ‖x‖^{p+1}
                float dot = TensorPrimitives.Dot(gs, xs);
                float c = dot / MathF.Pow(nm, p + 1);
                if (p == 2f) for (int j = 0; j < n; j++) o[j] = gs[j] / nm - xs[j] * c;
                else for (int j = 0; j < n; j++) o[j] = gs[j] / nm - xs[j] * MathF.Pow(MathF.Abs(xs[j]), p - 2) * c;
            });
            return [dx];
        });
    }

    private static float PNorm(ReadOnlySpan<float> s, float p)
    {
        double acc = 0;
        foreach (var v in s) acc += Math.Pow(Math.Abs(v), p);
        return (float)Math.Pow(acc, 1.0 / p);
    }

    internal delegate void IndexedRowKernel(int row, Span<float> src, Span<float> dst);

    /// <summary>Like RunRows, with the row index. With scatter false the dst is a dense (rows, n) buffer.</summary>
    private static void RunRowsIndexed(float[] src, int srcOff, float[] dst, int outer, int n, int inner, IndexedRowKernel kernel, bool scatter = true)
    {
        int rows = outer * inner;
        ForChunks(rows, (long)rows * n * 4, (r0, r1) =>
        {
            if (inner == 1)
            {
                for (int r = r0; r < r1; r++) kernel(r, src.AsSpan(srcOff + r * n, n), dst.AsSpan(r * n, n));
                return;
            }
            var a = new float[n]; var b = new float[n];
            for (int r = r0; r < r1; r++)
            {
                int o = r / inner, i = r % inner, baseIdx = o * n * inner + i;
                for (int j = 0; j < n; j++) a[j] = src[srcOff + baseIdx + j * inner];
                if (!scatter) { kernel(r, a, dst.AsSpan(r * n, n)); continue; }
                kernel(r, a, b);
                for (int j = 0; j < n; j++) dst[baseIdx + j * inner] = b[j];
            }
        });
    }
}
