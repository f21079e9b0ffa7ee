using System.Numerics.Tensors;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;

namespace Vlm.Core;

/// <summary>conv2d (torch.nn.functional.conv2d semantics, groups = 1, dilation = 1) as im2col + GEMM.
/// Patches are laid out as rows of colᵀ (P = Ho·Wo rows of C·kh·kw), so each patch row is a few contiguous copies
/// of input rows, and out (O, P) = W (O, C·kh·kw) · colᵀᵀ is one GEMM per image. Images run in parallel, each with a
/// single-threaded GEMM. ViT's patch embedding (kernel = stride, no padding) is the same code with no clipping.</summary>
public static partial class F
{
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0)
        => Conv2d(x, weight, bias, (stride, stride), (padding, padding));

    /// <param name="x">(N, C, H, W)</param>
    /// <param name="weight">(O, C, kh, kw)</param>
    /// <param name="bias">(O) or null</param>
    /// <param name="stride">(sh, sw)</param>
    /// <param name="padding">(ph, pw) zeros on each side</param>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, (int H, int W) stride, (int H, int W) padding)
    {
        x.RequireFloat(); weight.RequireFloat();
        if (x.Rank != 4) throw new ArgumentException($"conv2d input must be (N, C, H, W), got {x.Name ?? ""} {x.ShapeString}");
        if (weight.Rank != 4) throw new ArgumentException($"conv2d weight must be (O, C, kh, kw), got {weight.Name ?? ""} {weight.ShapeString}");
        int N = x.Size(0), C = x.Size(1), H = x.Size(2), W = x.Size(3);
        int O = weight.Size(0), kh = weight.Size(2), kw = weight.Size(3);
        if (weight.Size(1) != C)
            throw new ArgumentException($"conv2d weight {weight.Name ?? ""} {weight.ShapeString} expects {weight.Size(1)} input channels, input {x.ShapeString} has {C} (groups > 1 is not supported)");
        if (bias != null && (bias.Rank != 1 || bias.Size(0) != O))
            throw new ArgumentException($"conv2d bias {bias.Name ?? ""} {bias.ShapeString} must be ({O})");
        var (sh, sw) = stride; var (ph, pw) = padding;
        if (sh < 1 || sw < 1 || ph < 0 || pw < 0) throw new ArgumentException($"conv2d stride ({sh}, {sw}) must be ≥ 1 and padding ({ph}, {pw}) ≥ 0");
        int Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
        if (H + 2 * ph < kh || W + 2 * pw < kw || Ho <= 0 || Wo <= 0)
            throw new ArgumentException($"conv2d kernel ({kh}, {kw}) is larger than the padded input {x.ShapeString}");
        var g = new ConvGeometry(C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo);
        int P = Ho * Wo, K = C * kh * kw;
        // colᵀ is built for a block of output positions at a time, so its memory stays bounded (≤ 4 MiB or one row)
        // on large images; the ViT patch embedding fits in one block.
        int PB = Math.Clamp((1 << 20) / Math.Max(K, 1), 1, P);

        var xc = x.ContiguousNoGrad(); var wc = weight.ContiguousNoGrad(); var bc = bias?.ContiguousNoGrad();
        float[] xd = xc.Data, wd = wc.Data; int xo = xc.Offset, wo = wc.Offset;
        var y = Tensor.NewResult([N, O, Ho, Wo]);
        float[] yd = y.Data;
        bool inner = N == 1;
        Parallel.For(0, N, new ParallelOptions { MaxDegreeOfParallelism = inner ? 1 : -1 }, () => new float[PB * K], (n, _, col) =>
        {
            var yn = yd.AsSpan(n * O * P, O * P);
            for (int p0 = 0; p0 < P; p0 += PB)
            {
                int pb = Math.Min(PB, P - p0);
                g.Im2Col(xd.AsSpan(xo + n * C * H * W, C * H * W), col, p0, pb);
                // out[:, p0 : p0+pb] = W (O, K) · colᵀᵀ
                Gemm.Sgemm(false, true, O, pb, K, 1f, wd.AsSpan(wo), K, col, K, 0f, yn[p0..], P, parallel: inner);
            }
            if (bc != null)
                for (int o = 0; o < O; o++) TensorPrimitives.Add(yn.Slice(o * P, P), bc.Data[bc.Offset + o], yn.Slice(o * P, P));
            return col;
        }, _ => { });

        var inputs = bias is null ? new[] { x, weight } : new[] { x, weight, bias };
        if (!Recorder.ShouldRecord(inputs))
        {
            Tensor.DropCopy(xc, x); Tensor.DropCopy(wc, weight); Tensor.DropCopy(bc, bias);
            return y;
        }
        Recorder.Save(xc); Recorder.Save(wc);
        // The node's holds keep the saved copies until the backward has run (the bias copy is read only above).
        Tensor.DropCopy(xc, x); Tensor.DropCopy(wc, weight); Tensor.DropCopy(bc, bias);
        return Recorder.Record(y, "conv2d", inputs, gOut =>
        {
            var gc = gOut.Contiguous();
            float[] gd = gc.Data; int go = gc.Offset;
            bool nx = x.RequiresGrad, nw = weight.RequiresGrad, nb = bias?.RequiresGrad == true;
            var dx = nx ? Tensor.NewResult([N, C, H, W], zero: true) : null;
            var dw = nw ? new float[O * K] : null;
            var db = nb ? new float[O] : null;
            // Samples are split into a fixed number of contiguous chunks, each accumulated by one worker into its own
            // buffers, and the chunks summed in order: the weight/bias gradients do not depend on thread scheduling
            // (thread-local accumulators merged as workers finish made seeded training runs differ bit-wise).
            int chunks = inner ? 1 : Math.Min(N, Environment.ProcessorCount);
            var dwc = new float[chunks][]; var dbc = new float[chunks][];
            Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = inner ? 1 : -1 }, ci =>
            {
                var col = new float[PB * K];
                var dwl = nw ? new float[O * K] : null;
                var dbl = nb ? new float[O] : null;
                int n0 = (int)((long)N * ci / chunks), n1 = (int)((long)N * (ci + 1) / chunks);
                for (int n = n0; n < n1; n++)
                {
                    var gn = gd.AsSpan(go + n * O * P, O * P);
                    if (dbl != null) for (int o = 0; o < O; o++) dbl[o] += TensorPrimitives.Sum(gn.Slice(o * P, P));
                    for (int p0 = 0; p0 < P; p0 += PB)
                    {
                        int pb = Math.Min(PB, P - p0);
                        if (dwl != null)
                        {
                            // dW += g_n[:, block] (O, pb) · colᵀ (pb, K)
                            g.Im2Col(xd.AsSpan(xo + n * C * H * W, C * H * W), col, p0, pb);
                            Gemm.Sgemm(false, false, O, K, pb, 1f, gn[p0..], P, col, K, 1f, dwl, K, parallel: inner);
                        }
                        if (dx != null)
                        {
                            // dcolᵀ (pb, K) = g_n[:, block]ᵀ · W (O, K), then scattered back onto the image.
                            Gemm.Sgemm(true, false, pb, K, O, 1f, gn[p0..], P, wd.AsSpan(wo), K, 0f, col, K, parallel: inner);
                            g.Col2Im(col, dx.Data.AsSpan(n * C * H * W, C * H * W), p0, pb);
                        }
                    }
                }
                dwc[ci] = dwl!; dbc[ci] = dbl!;
            });
            for (int ci = 0; ci < chunks; ci++)
            {
                if (dw != null) TensorPrimitives.Add(dw, dwc[ci], dw);
                if (db != null) TensorPrimitives.Add(db, dbc[ci], db);
            }
            Tensor.DropCopy(gc, gOut);
            var grads = new List<Tensor?> { dx, dw is null ? null : Tensor.FromArray(dw, weight.ShapeArray()) };
            if (bias != null) grads.Add(db is null ? null : Tensor.FromArray(db, O));
            return grads.ToArray();
        });
    }

    private readonly record struct ConvGeometry(int C, int H, int W, int Kh, int Kw, int Sh, int Sw, int Ph, int Pw, int Ho, int Wo)
    {
        private int K => C * Kh * Kw;

        /// <summary>Rows p0 … p0+count−1 of colᵀ[p = oy·Wo + ox, (c, ki, kj)] = x[c, oy·sh − ph + ki, ox·sw − pw + kj] (0 outside the image).
        /// The kj run of each (p, c, ki) is one contiguous piece of an input row, clipped at the borders.</summary>
        public void Im2Col(ReadOnlySpan<float> x, Span<float> col, int p0, int count)
        {
            int K = this.K;
            for (int p = p0; p < p0 + count; p++)
            {
                int oy = p / Wo, ox = p % Wo;
                var row = col.Slice((p - p0) * K, K);
                int ix0 = ox * Sw - Pw;
                int j0 = Math.Max(0, -ix0), j1 = Math.Min(Kw, W - ix0);
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < Kh; ki++)
                    {
                        var seg = row.Slice((c * Kh + ki) * Kw, Kw);
                        int iy = oy * Sh - Ph + ki;
                        if (iy < 0 || iy >= H || j1 <= j0) { seg.Clear(); continue; }
                        if (j0 > 0) seg[..j0].Clear();
                        x.Slice(c * H * W + iy * W + ix0 + j0, j1 - j0).CopyTo(seg[j0..j1]);
                        if (j1 < Kw) seg[j1..].Clear();
                    }
            }
        }

        /// <summary>The adjoint of Im2Col: dx[c, iy, ix] += dcolᵀ[p, (c, ki, kj)].</summary>
        public void Col2Im(ReadOnlySpan<float> col, Span<float> dx, int p0, int count)
        {
            int K = this.K;
            for (int p = p0; p < p0 + count; p++)
            {
                int oy = p / Wo, ox = p % Wo;
                var row = col.Slice((p - p0) * K, K);
                int ix0 = ox * Sw - Pw;
                int j0 = Math.Max(0, -ix0), j1 = Math.Min(Kw, W - ix0);
                if (j1 <= j0) continue;
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < Kh; ki++)
                    {
                        int iy = oy * Sh - Ph + ki;
                        if (iy < 0 || iy >= H) continue;
                        var d = dx.Slice(c * H * W + iy * W + ix0 + j0, j1 - j0);
                        TensorPrimitives.Add(d, row.Slice((c * Kh + ki) * Kw + j0, j1 - j0), d);
                    }
            }
        }
    }
}
