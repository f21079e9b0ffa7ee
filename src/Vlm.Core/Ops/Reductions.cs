using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>Reductions beyond sum/mean: max/min (with indices), argmax/argmin, var/std, logsumexp, cumsum.
/// NaN wins max and min (torch propagates it); ties pick the first index.</summary>
public sealed partial class Tensor
{
    /// <summary>Max over one dim with the index of the (first) maximum (torch.max(x, dim)).
    /// The gradient flows to that index only.</summary>
    public (Tensor Values, Tensor Indices) MaxWithIndices(int dim, bool keepDim = false) => ExtremeWithIndices(dim, keepDim, true);

    /// <summary>Min over one dim with the index of the (first) minimum (torch.min(x, dim)).</summary>
    public (Tensor Values, Tensor Indices) MinWithIndices(int dim, bool keepDim = false) => ExtremeWithIndices(dim, keepDim, false);

    /// <summary>Values of torch.max(x, dim) (gradient to the first maximum).</summary>
    public Tensor Max(int dim, bool keepDim = false) => ExtremeWithIndices(dim, keepDim, true).Values;

    public Tensor Min(int dim, bool keepDim = false) => ExtremeWithIndices(dim, keepDim, false).Values;

    /// <summary>Index (int64) of the first maximum along <paramref name="dim"/>.</summary>
    public Tensor ArgMax(int dim, bool keepDim = false) => NoGradIndices(dim, keepDim, true);

    public Tensor ArgMin(int dim, bool keepDim = false) => NoGradIndices(dim, keepDim, false);

    /// <summary>Flat index (int64 scalar) of the first maximum of all elements.</summary>
    public Tensor ArgMax() { using (GradMode.Disable()) return Reshape(-1).ArgMax(0); }

    public Tensor ArgMin() { using (GradMode.Disable()) return Reshape(-1).ArgMin(0); }

    /// <summary>Max of all elements (gradient shared evenly among ties, like torch.max(x)).</summary>
    public Tensor Max() => Amax(Enumerable.Range(0, Rank).ToArray(), false);

    public Tensor Min() => Amin(Enumerable.Range(0, Rank).ToArray(), false);

    /// <summary>torch.amax: max over several dims, gradient shared evenly among ties.</summary>
    public Tensor Amax(int[] dims, bool keepDim = false) => ExtremeOver(dims, keepDim, true);

    public Tensor Amin(int[] dims, bool keepDim = false) => ExtremeOver(dims, keepDim, false);

    private Tensor NoGradIndices(int dim, bool keepDim, bool isMax)
    {
        using (GradMode.Disable()) return ExtremeWithIndices(dim, keepDim, isMax).Indices;
    }

    private (Tensor Values, Tensor Indices) ExtremeWithIndices(int dim, bool keepDim, bool isMax)
    {
        RequireFloat();
        if (Rank == 0) return (Clone(), FromArray(new long[1], Array.Empty<int>()));
        int d = ShapeUtil.NormDim(dim, Rank);
        int n = _shape[d];
        if (n == 0) throw new ArgumentException($"{(isMax ? "max" : "min")}: cannot reduce over dim {d} of size 0 in {ShapeString}");
        var (outer, inner) = OuterInner(_shape, d);
        var src = ContiguousNoGrad();
        var sd = src.Data; int so = src.Offset;
        var outShape = ShapeArray();
        if (keepDim) outShape[d] = 1; else outShape = outShape.Where((_, i) => i != d).ToArray();
        var vals = NewResult(outShape);
        var idxT = NewResult(outShape, DType.Int64);
        var vd = vals.Data; var id = idxT.Storage.I64!;
        ParallelRows(outer, n * inner, o =>
        {
            var best = vd.AsSpan(o * inner, inner);
            var bi = id.AsSpan(o * inner, inner);
            new ReadOnlySpan<float>(sd, so + o * n * inner, inner).CopyTo(best);
            bi.Clear();
            for (int j = 1; j < n; j++)
            {
                var row = new ReadOnlySpan<float>(sd, so + (o * n + j) * inner, inner);
                for (int i = 0; i < inner; i++)
                {
                    float v = row[i], b = best[i];
                    // Strict comparison keeps the first extreme; a NaN, once taken, is never replaced.
                    bool take = !float.IsNaN(b) && (float.IsNaN(v) || (isMax ? v > b : v < b));
                    if (take) { best[i] = v; bi[i] = j; }
                }
            }
        });
        DropCopy(src, this);
        var inShape = ShapeArray();
        var r = Recorder.Record(vals, isMax ? "max_dim" : "min_dim", [this], g =>
        {
            var gc = g.ContiguousNoGrad();
            var gx = NewResult(inShape, zero: true);
            var gd = gc.Data; int go = gc.Offset; var xd = gx.Data;
            for (int o = 0; o < outer; o++)
                for (int i = 0; i < inner; i++)
                    xd[(o * n + (int)id[o * inner + i]) * inner + i] = gd[go + o * inner + i];
            DropCopy(gc, g);
            return [gx];
        });
        return (r, idxT);
    }

    private Tensor ExtremeOver(int[] dims, bool keepDim, bool isMax)
    {
        RequireFloat();
        var layout = ReduceLayout.Of(this, dims);
        if (layout.Inner == 0) throw new ArgumentException($"{(isMax ? "amax" : "amin")}: cannot reduce over an empty dim of {ShapeString}");
        var r = NewResult(layout.OutShape(keepDim));
        var src = layout.Rows();
        var sd = src.Data; int so = src.Offset, inner = layout.Inner; var rd = r.Data;
        ParallelRows(layout.Kept, inner, k =>
        {
            var row = new ReadOnlySpan<float>(sd, so + k * inner, inner);
            float b = row[0];
            for (int i = 1; i < row.Length && !float.IsNaN(b); i++)
            {
                float v = row[i];
                if (float.IsNaN(v) || (isMax ? v > b : v < b)) b = v;
            }
            rd[k] = b;
        });
        layout.ReleaseRows(src);
        if (!Recorder.ShouldRecord(this)) return r;
        Recorder.Save(r);
        var x = this;
        var keptShape = layout.OutShape(true);
        return Recorder.Record(r, isMax ? "amax" : "amin", [x], g =>
        {
            // torch: grad shared evenly between all elements equal to the result.
            using var rk = r.Reshape(keptShape);
            using var eq = x.Eq(rk);
            using var mask = eq.To(DType.Float32);
            using var count = mask.Sum(dims, true);
            using var gk = g.Reshape(keptShape);
            using var share = BinaryKernel<DivOp>(gk, count);
            return [MulNr(mask, share)];
        });
    }

    /// <summary>Variance over dims with torch's <paramref name="correction"/> (1 = unbiased, the default; 0 = population).</summary>
    public Tensor Var(int[] dims, int correction = 1, bool keepDim = false)
    {
        RequireFloat();
        var layout = ReduceLayout.Of(this, dims);
        var src = layout.Rows();
        var sd = src.Data; int so = src.Offset, inner = layout.Inner;
        var r = NewResult(layout.OutShape(keepDim));
        var mean = NewResult(layout.OutShape(true));
        var rd = r.Data; var md = mean.Data;
        double denom = Math.Max(inner - correction, 0);
        ParallelRows(layout.Kept, inner, k =>
        {
            // Two passes in double: exact enough that float inputs round like torch's (Welford, double acc).
            var row = new ReadOnlySpan<float>(sd, so + k * inner, inner);
            double s = 0;
            foreach (var v in row) s += v;
            double m = s / inner;
            double q = 0;
            foreach (var v in row) { double t = v - m; q += t * t; }
            md[k] = (float)m;
            rd[k] = (float)(q / denom);
        });
        layout.ReleaseRows(src);
        var x = this;
        var keptShape = layout.OutShape(true);
        if (Recorder.ShouldRecord(x)) Recorder.Save(mean);
        mean.Dispose();   // kept by the node's hold when recording, else done with
        return Recorder.Record(r, "var", [x], g =>
        {
            // d var / dx = 2 (x − mean) / (N − correction)
            using var diff = BinaryKernel<SubOp>(x, mean);
            using var gView = g.Reshape(keptShape);
            using var gk = gView.Mul((float)(2.0 / denom));
            return [MulNr(diff, gk)];
        });
    }

    public Tensor Var(int dim, bool unbiased = true, bool keepDim = false) => Var([dim], unbiased ? 1 : 0, keepDim);

    /// <summary>Variance of all elements.</summary>
    public Tensor Var(bool unbiased = true) => Var(Enumerable.Range(0, Rank).ToArray(), unbiased ? 1 : 0, false);

    public Tensor Std(int[] dims, int correction = 1, bool keepDim = false) => Var(dims, correction, keepDim).Sqrt();

    public Tensor Std(int dim, bool unbiased = true, bool keepDim = false) => Var([dim], unbiased ? 1 : 0, keepDim).Sqrt();

    /// <summary>log Σ exp(x) over dims, computed stably (max subtracted); all −inf gives −inf.</summary>
    public Tensor LogSumExp(int[] dims, bool keepDim = false)
    {
        RequireFloat();
        var layout = ReduceLayout.Of(this, dims);
        var src = layout.Rows();
        var sd = src.Data; int so = src.Offset, inner = layout.Inner;
        var r = NewResult(layout.OutShape(keepDim));
        var rd = r.Data;
        ParallelRows(layout.Kept, inner, k =>
        {
            var row = new ReadOnlySpan<float>(sd, so + k * inner, inner);
            float m = float.NegativeInfinity;
            bool nan = false;
            foreach (var v in row) { if (float.IsNaN(v)) nan = true; else if (v > m) m = v; }
            if (nan) { rd[k] = float.NaN; return; }
            if (float.IsInfinity(m)) { rd[k] = m; return; }
            Span<float> tmp = inner <= 1024 ? stackalloc float[inner] : new float[inner];
            for (int i = 0; i < inner; i++) tmp[i] = row[i] - m;
            FastMath.Exp(tmp, tmp);
            double s = 0;
            foreach (var e in tmp) s += e;
            rd[k] = m + (float)Math.Log(s);
        });
        layout.ReleaseRows(src);
        var keptShape = layout.OutShape(true);
        if (!Recorder.ShouldRecord(this)) return r;
        Recorder.Save(r);
        var x = this;
        return Recorder.Record(r, "logsumexp", [x], g =>
        {
            // d/dx = exp(x − y)
            using var rk = r.Reshape(keptShape);
            using var shifted = BinaryKernel<SubOp>(x, rk);
            using var p = shifted.Exp();
            using var gk = g.Reshape(keptShape);
            return [MulNr(p, gk)];
        });
    }

    public Tensor LogSumExp(int dim, bool keepDim = false) => LogSumExp([dim], keepDim);

    /// <summary>Cumulative sum along <paramref name="dim"/> (accumulated in double, as torch does on CPU).</summary>
    public Tensor Cumsum(int dim)
    {
        RequireFloat();
        if (Rank == 0) return Clone();
        int d = ShapeUtil.NormDim(dim, Rank);
        var r = CumsumKernel(this, d, reverse: false);
        return Recorder.Record(r, "cumsum", [this], g => [CumsumKernel(g, d, reverse: true)]);
    }

    private static Tensor CumsumKernel(Tensor x, int d, bool reverse)
    {
        var src = x.ContiguousNoGrad();
        int n = x.Shape[d];
        var (outer, inner) = OuterInner(x.Shape, d);
        var r = NewResult(x.ShapeArray());
        var sd = src.Data; int so = src.Offset; var rd = r.Data;
        ParallelRows(outer, n * inner, o =>
        {
            var acc = new double[inner];
            for (int jj = 0; jj < n; jj++)
            {
                int j = reverse ? n - 1 - jj : jj;
                int b = (o * n + j) * inner;
                for (int i = 0; i < inner; i++) { acc[i] += sd[so + b + i]; rd[b + i] = (float)acc[i]; }
            }
        });
        DropCopy(src, x);
        return r;
    }
}
