using Vlm.Core.Autograd;

namespace Vlm.Core;

public enum InterpolateMode
{
    Bilinear,
    /// <summary>Keys' cubic convolution with A = −0.75 and clamped borders, as torch (and OpenCV).</summary>
    Bicubic,
}

/// <summary>torch.nn.functional.interpolate for 4-D input in bilinear / bicubic mode (antialias = False), float32.
/// Each output pixel is Σ_j wy_j · Σ_i wx_i · x[y_j, x_i], the order torch's CPU kernel sums in; the weights and
/// source indices follow ATen's area_pixel_compute_source_index and get_cubic_upsample_coefficients.
/// Used to resize position-embedding grids.</summary>
public static partial class F
{
    public static Tensor InterpolateBicubic(Tensor x, int outH, int outW, bool alignCorners = false)
        => Interpolate(x, outH, outW, InterpolateMode.Bicubic, alignCorners);

    public static Tensor InterpolateBilinear(Tensor x, int outH, int outW, bool alignCorners = false)
        => Interpolate(x, outH, outW, InterpolateMode.Bilinear, alignCorners);

    /// <param name="x">(N, C, H, W)</param>
    /// <param name="scaleH">only to reproduce a torch call made with scale_factor (and recompute_scale_factor unset): torch
    /// then maps coordinates with 1/scale_factor instead of H/outH. outH must be floor(H · scale_factor).</param>
    public static Tensor Interpolate(Tensor x, int outH, int outW, InterpolateMode mode, bool alignCorners = false,
        double? scaleH = null, double? scaleW = null)
    {
        x.RequireFloat();
        if (x.Rank != 4) throw new ArgumentException($"interpolate ({mode}) expects (N, C, H, W), got {x.Name ?? ""} {x.ShapeString}");
        if (outH <= 0 || outW <= 0) throw new ArgumentException($"interpolate output size ({outH}, {outW}) must be positive");
        int N = x.Size(0), C = x.Size(1), H = x.Size(2), W = x.Size(3);
        if (H <= 0 || W <= 0) throw new ArgumentException($"interpolate input {x.ShapeString} is empty");
        int taps = mode == InterpolateMode.Bicubic ? 4 : 2;
        var (iy, wy) = InterpWeights(H, outH, alignCorners, scaleH, mode);
        var (ix, wx) = InterpWeights(W, outW, alignCorners, scaleW, mode);
        var xc = x.ContiguousNoGrad();
        float[] xd = xc.Data; int xo = xc.Offset;
        var y = Tensor.NewResult([N, C, outH, outW]);
        float[] yd = y.Data;
        int planes = N * C, inPlane = H * W, outPlane = outH * outW;
        ForChunks(planes, (long)planes * outPlane * taps * taps * 2, (p0, p1) =>
        {
            for (int p = p0; p < p1; p++)
            {
                int src = xo + p * inPlane, dst = p * outPlane;
                for (int oy = 0; oy < outH; oy++)
                    for (int ox = 0; ox < outW; ox++)
                    {
                        float acc = 0f;
                        for (int j = 0; j < taps; j++)
                        {
                            int rowBase = src + iy[oy * taps + j] * W;
                            float t = xd[rowBase + ix[ox * taps]] * wx[ox * taps];
                            for (int i = 1; i < taps; i++) t += xd[rowBase + ix[ox * taps + i]] * wx[ox * taps + i];
                            acc = j == 0 ? t * wy[oy * taps] : acc + t * wy[oy * taps + j];
                        }
                        yd[dst + oy * outW + ox] = acc;
                    }
            }
        });
        Tensor.DropCopy(xc, x);
        return Recorder.Record(y, mode == InterpolateMode.Bicubic ? "upsample_bicubic2d" : "upsample_bilinear2d", [x], g =>
        {
            var gc = g.Contiguous();
            float[] gd = gc.Data; int go = gc.Offset;
            var dx = Tensor.NewResult([N, C, H, W], zero: true);
            float[] dd = dx.Data;
            ForChunks(planes, (long)planes * outPlane * taps * taps * 2, (p0, p1) =>
            {
                for (int p = p0; p < p1; p++)
                {
                    int src = go + p * outPlane, dst = p * inPlane;
                    for (int oy = 0; oy < outH; oy++)
                        for (int ox = 0; ox < outW; ox++)
                        {
                            float gv = gd[src + oy * outW + ox];
                            for (int j = 0; j < taps; j++)
                            {
                                int rowBase = dst + iy[oy * taps + j] * W;
                                float gy = gv * wy[oy * taps + j];
                                for (int i = 0; i < taps; i++) dd[rowBase + ix[ox * taps + i]] += gy * wx[ox * taps + i];
                            }
                        }
                }
            });
            Tensor.DropCopy(gc, g);
            return [dx];
        });
    }

    /// <summary>Per output coordinate: the clamped source indices and weights of its taps along one axis.</summary>
    private static (int[] idx, float[] w) InterpWeights(int inSize, int outSize, bool alignCorners, double? scaleFactor, InterpolateMode mode)
    {
        bool cubic = mode == InterpolateMode.Bicubic;
        int taps = cubic ? 4 : 2;
        // area_pixel_compute_scale, in float like ATen's opmath for float32.
        float scale = alignCorners
            ? (outSize > 1 ? (float)(inSize - 1) / (outSize - 1) : 0f)
            : scaleFactor is double s && s > 0 ? (float)(1.0 / s) : (float)inSize / outSize;
        var idx = new int[outSize * taps];
        var w = new float[outSize * taps];
        for (int o = 0; o < outSize; o++)
        {
            // area_pixel_compute_source_index: cubic does not clamp negative positions to 0.
            float real = alignCorners ? scale * o : scale * (o + 0.5f) - 0.5f;
            if (!cubic && !alignCorners && real < 0) real = 0;
            if (cubic)
            {
                // guard_index_and_lambda
                int i0 = Math.Min((int)MathF.Floor(real), inSize - 1);
                float t = Math.Clamp(real - i0, 0f, 1f);
                const float A = -0.75f;
                float x1 = t, x2 = 1f - t;
                w[o * 4 + 0] = CubicConv2(x1 + 1f, A);
                w[o * 4 + 1] = CubicConv1(x1, A);
                w[o * 4 + 2] = CubicConv1(x2, A);
                w[o * 4 + 3] = CubicConv2(x2 + 1f, A);
                for (int k = 0; k < 4; k++) idx[o * 4 + k] = Math.Clamp(i0 - 1 + k, 0, inSize - 1);
            }
            else
            {
                int i0 = (int)real; // real ≥ 0 here, so truncation is floor
                int off = i0 < inSize - 1 ? 1 : 0;
                float l1 = Math.Clamp(real - i0, 0f, 1f);
                w[o * 2] = 1f - l1; w[o * 2 + 1] = l1;
                idx[o * 2] = i0; idx[o * 2 + 1] = i0 + off;
            }
        }
        return (idx, w);
    }

    private static float CubicConv1(float x, float a) => ((a + 2f) * x - (a + 3f)) * x * x + 1f;

    private static float CubicConv2(float x, float a) => ((a * x - 5f * a) * x + 8f * a) * x - 4f * a;
}
