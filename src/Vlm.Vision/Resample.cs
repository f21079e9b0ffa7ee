using System.Numerics;
using System.Runtime.InteropServices;

namespace Vlm.Vision;

/// <summary>Pillow's resampling filters (Image.Resampling values).</summary>
public enum ResampleFilter
{
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

/// <summary>
/// Pillow 9.4 <c>Image.resize(size, filter)</c> for 8-bit images, bit for bit (libImaging/Resample.c semantics):
/// a separable convolution, horizontal pass first, whose kernel support is widened by the downscale factor
/// (antialiasing); per-output weights normalised in double, then rounded to fixed point with 22 fraction bits;
/// each pass rounds (+2^21) and clips to uint8. NEAREST is Pillow's affine scaling (source = floor((x + 0.5)·scale),
/// accumulated the way Geometry.c does). P images always use NEAREST; LA/RGBA are resampled premultiplied
/// (Pillow converts to La/RGBa and back).
/// </summary>
public static class Resampler
{
    internal const int PrecisionBits = 32 - 8 - 2;

    public static Image Resize(Image image, int width, int height, ResampleFilter filter = ResampleFilter.Bicubic)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"resize target must be positive, got {width}x{height}");
        if (image.BitDepth != 8) throw new NotSupportedException($"resize of 16-bit images is not supported ({image}); convert with ToRgb() first");
        if (width == image.Width && height == image.Height) return image; // Pillow returns a copy; images are not mutated here
        // Pillow resizes P and bilevel ("1", our L decoded from 1-bit files) images with NEAREST whatever is asked.
        if (image.Mode == PixelMode.P || (image.Mode == PixelMode.L && image.SourceBitDepth == 1)) filter = ResampleFilter.Nearest;
        int c = image.Channels;
        byte[] outData;
        if (filter == ResampleFilter.Nearest)
            outData = Nearest(image.Data, image.Width, image.Height, c, width, height);
        else if (image.Mode is PixelMode.RGBA or PixelMode.LA)
        {
            var pre = Premultiply(image.Data, c);
            var r = Convolve(pre, image.Width, image.Height, c, width, height, filter);
            Unpremultiply(r, c);
            outData = r;
        }
        else
            outData = Convolve(image.Data, image.Width, image.Height, c, width, height, filter);
        return new Image(width, height, image.Mode, outData) { Palette = image.Palette, PaletteAlpha = image.PaletteAlpha, Source = image.Source };
    }

    // ------------------------------------------------------------------ filters

    public static double Support(ResampleFilter f) => f switch
    {
        ResampleFilter.Box => 0.5,
        ResampleFilter.Bilinear => 1.0,
        ResampleFilter.Hamming => 1.0,
        ResampleFilter.Bicubic => 2.0,
        ResampleFilter.Lanczos => 3.0,
        _ => throw new ArgumentException($"{f} is not a convolution filter"),
    };

    public static double Kernel(ResampleFilter f, double x)
    {
        switch (f)
        {
            case ResampleFilter.Box:
                return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
            case ResampleFilter.Bilinear:
                if (x < 0) x = -x;
                return x < 1.0 ? 1.0 - x : 0.0;
            case ResampleFilter.Hamming:
                if (x < 0) x = -x;
                if (x == 0) return 1.0;
                if (x >= 1.0) return 0.0;
                x *= Math.PI;
                return Math.Sin(x) / x * (0.54 + 0.46 * Math.Cos(x));
            case ResampleFilter.Bicubic:
                {
                    const double a = -0.5; // Keys' cubic with a = -0.5 (Pillow; PyTorch's bicubic uses -0.75)
                    if (x < 0) x = -x;
                    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
                    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
                    return 0.0;
                }
            case ResampleFilter.Lanczos:
                return x >= -3.0 && x < 3.0 ? Sinc(x) * Sinc(x / 3.0) : 0.0;
            default:
                throw new ArgumentException($"{f} is not a convolution filter");
        }
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    /// <summary>Per output index: first input index, tap count, and ksize fixed-point weights (zero-padded).</summary>
    internal sealed record Coeffs(int KSize, int[] Start, int[] Count, int[] Weights);

    internal static Coeffs Precompute(int inSize, int outSize, ResampleFilter filter)
    {
        double scale = (double)inSize / outSize;
        double filterscale = Math.Max(scale, 1.0);
        double support = Support(filter) * filterscale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[outSize];
        var count = new int[outSize];
        var w = new int[(long)outSize * ksize];
        var k = new double[ksize];
        double ss = 1.0 / filterscale;
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            int xmin = (int)(center - support + 0.5); // C cast truncates toward zero, then clamps
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            if (xmax > ksize) xmax = ksize; // cannot happen for valid sizes; keeps indexing safe
            double ww = 0.0;
            for (int x = 0; x < xmax; x++)
            {
                double v = Kernel(filter, (x + xmin - center + 0.5) * ss);
                k[x] = v;
                ww += v;
            }
            for (int x = 0; x < xmax; x++)
            {
                double v = ww != 0.0 ? k[x] / ww : k[x];
                // Round half away from zero into 22 fraction bits, as normalize_coeffs_8bpc does.
                w[(long)xx * ksize + x] = v < 0 ? (int)(-0.5 + v * (1 << PrecisionBits)) : (int)(0.5 + v * (1 << PrecisionBits));
            }
            start[xx] = xmin;
            count[xx] = Math.Max(xmax, 0);
        }
        return new Coeffs(ksize, start, count, w);
    }

    private static byte Clip8(int v)
    {
        if (v >= 1 << PrecisionBits << 8) return 255;
        if (v <= 0) return 0;
        return (byte)(v >> PrecisionBits);
    }

    // ------------------------------------------------------------------ reference (direct, per pixel)

    /// <summary>Straightforward two-pass convolution, kept as the reference for the fast path.</summary>
    internal static byte[] ConvolveReference(byte[] src, int w, int h, int c, int ow, int oh, ResampleFilter filter)
    {
        byte[] tmp = src;
        int tw = w;
        if (ow != w)
        {
            var cf = Precompute(w, ow, filter);
            tmp = new byte[(long)ow * h * c];
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < ow; xx++)
                    for (int ch = 0; ch < c; ch++)
                    {
                        int ss = 1 << (PrecisionBits - 1);
                        for (int x = 0; x < cf.Count[xx]; x++)
                            ss += src[((long)y * w + cf.Start[xx] + x) * c + ch] * cf.Weights[xx * cf.KSize + x];
                        tmp[((long)y * ow + xx) * c + ch] = Clip8(ss);
                    }
            tw = ow;
        }
        if (oh == h) return tmp == src ? (byte[])src.Clone() : tmp;
        var cv = Precompute(h, oh, filter);
        var o = new byte[(long)ow * oh * c];
        for (int yy = 0; yy < oh; yy++)
            for (int x = 0; x < tw * c; x++)
            {
                int ss = 1 << (PrecisionBits - 1);
                for (int y = 0; y < cv.Count[yy]; y++)
                    ss += tmp[((long)(cv.Start[yy] + y) * tw) * c + x] * cv.Weights[yy * cv.KSize + y];
                o[(long)yy * tw * c + x] = Clip8(ss);
            }
        return o;
    }

    // ------------------------------------------------------------------ fast path

    /// <summary>
    /// Same arithmetic as <see cref="ConvolveReference"/>, restructured so both passes are "weighted sums of whole
    /// rows" (the horizontal pass runs on the transposed image), which vectorises over contiguous bytes.
    /// Integer math, so results are identical, not merely close.
    /// </summary>
    internal static byte[] Convolve(byte[] src, int w, int h, int c, int ow, int oh, ResampleFilter filter)
    {
        byte[] tmp = src;
        if (ow != w)
        {
            var cf = Precompute(w, ow, filter);
            var t = Transpose(src, h, w, c);        // (w, h, c)
            var tr = new byte[(long)ow * h * c];    // (ow, h, c)
            CombineRows(t, h * c, cf, tr, ow);
            tmp = Transpose(tr, ow, h, c);          // (h, ow, c)
        }
        if (oh == h) return tmp == src ? (byte[])src.Clone() : tmp;
        var cv = Precompute(h, oh, filter);
        var o = new byte[(long)ow * oh * c];
        CombineRows(tmp, ow * c, cv, o, oh);
        return o;
    }

    /// <summary>dst row r = clip8(Σ_k weight[r,k] · src row (start[r] + k)), rows of <paramref name="rowLen"/> bytes.</summary>
    private static void CombineRows(byte[] src, int rowLen, Coeffs cf, byte[] dst, int outRows)
    {
        if ((long)outRows * rowLen >= 1 << 22 && Environment.ProcessorCount > 1) // below this, thread hand-off costs more than it saves
            Parallel.For(0, Environment.ProcessorCount, part =>
            {
                int n = Environment.ProcessorCount;
                int r0 = (int)((long)outRows * part / n), r1 = (int)((long)outRows * (part + 1) / n);
                var acc = new int[rowLen];
                for (int r = r0; r < r1; r++) CombineRow(src, rowLen, cf, r, dst, acc);
            });
        else
        {
            var acc = new int[rowLen];
            for (int r = 0; r < outRows; r++) CombineRow(src, rowLen, cf, r, dst, acc);
        }
    }

    private static void CombineRow(byte[] src, int rowLen, Coeffs cf, int r, byte[] dst, int[] acc)
    {
        acc.AsSpan().Fill(1 << (PrecisionBits - 1));
        int n = cf.Count[r];
        for (int k = 0; k < n; k++)
        {
            int wgt = cf.Weights[r * cf.KSize + k];
            if (wgt == 0) continue;
            var row = src.AsSpan((int)((long)(cf.Start[r] + k) * rowLen), rowLen);
            AddScaled(row, wgt, acc);
        }
        ClipRow(acc, dst.AsSpan((int)((long)r * rowLen), rowLen));
    }

    private static void AddScaled(ReadOnlySpan<byte> row, int wgt, Span<int> acc)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && row.Length >= Vector<byte>.Count)
        {
            var wv = new Vector<int>(wgt);
            var accV = MemoryMarshal.Cast<int, Vector<int>>(acc);
            int vb = Vector<byte>.Count, vi = Vector<int>.Count;
            for (; i + vb <= row.Length; i += vb)
            {
                var b = new Vector<byte>(row[i..]);
                Vector.Widen(b, out Vector<ushort> lo, out Vector<ushort> hi);
                Vector.Widen(lo, out Vector<uint> a0, out Vector<uint> a1);
                Vector.Widen(hi, out Vector<uint> a2, out Vector<uint> a3);
                int q = i / vi;
                accV[q] += Vector.AsVectorInt32(a0) * wv;
                accV[q + 1] += Vector.AsVectorInt32(a1) * wv;
                accV[q + 2] += Vector.AsVectorInt32(a2) * wv;
                accV[q + 3] += Vector.AsVectorInt32(a3) * wv;
            }
        }
        for (; i < row.Length; i++) acc[i] += row[i] * wgt;
    }

    /// <summary>(rows, cols, c) → (cols, rows, c), in cache-friendly tiles.</summary>
    internal static unsafe byte[] Transpose(byte[] src, int rows, int cols, int c)
    {
        var dst = new byte[src.Length];
        const int T = 32;
        fixed (byte* s0 = src)
        fixed (byte* d0 = dst)
        {
            for (int r0 = 0; r0 < rows; r0 += T)
                for (int c0 = 0; c0 < cols; c0 += T)
                {
                    int r1 = Math.Min(r0 + T, rows), c1 = Math.Min(c0 + T, cols);
                    for (int r = r0; r < r1; r++)
                    {
                        byte* s = s0 + ((long)r * cols + c0) * c;
                        byte* d = d0 + ((long)c0 * rows + r) * c;
                        long dstep = (long)rows * c;
                        switch (c)
                        {
                            case 3:
                                for (int q = c0; q < c1; q++, s += 3, d += dstep) { d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; }
                                break;
                            case 1:
                                for (int q = c0; q < c1; q++, s++, d += dstep) d[0] = s[0];
                                break;
                            case 4:
                                for (int q = c0; q < c1; q++, s += 4, d += dstep) *(uint*)d = *(uint*)s;
                                break;
                            default:
                                for (int q = c0; q < c1; q++, s += c, d += dstep)
                                    for (int ch = 0; ch < c; ch++) d[ch] = s[ch];
                                break;
                        }
                    }
                }
        }
        return dst;
    }

    /// <summary>clip8 over a row: clamp(acc >> 22, 0, 255) equals Pillow's clip8 for every int.</summary>
    private static void ClipRow(ReadOnlySpan<int> acc, Span<byte> o)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int vi = Vector<int>.Count;
            var zero = Vector<int>.Zero; var max = new Vector<int>(255);
            for (; i + 4 * vi <= acc.Length; i += 4 * vi)
            {
                var a0 = Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(new Vector<int>(acc[i..]), PrecisionBits), zero), max);
                var a1 = Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(new Vector<int>(acc[(i + vi)..]), PrecisionBits), zero), max);
                var a2 = Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(new Vector<int>(acc[(i + 2 * vi)..]), PrecisionBits), zero), max);
                var a3 = Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(new Vector<int>(acc[(i + 3 * vi)..]), PrecisionBits), zero), max);
                var lo = Vector.Narrow(Vector.AsVectorUInt32(a0), Vector.AsVectorUInt32(a1));
                var hi = Vector.Narrow(Vector.AsVectorUInt32(a2), Vector.AsVectorUInt32(a3));
                Vector.Narrow(lo, hi).CopyTo(o[i..]);
            }
        }
        for (; i < acc.Length; i++) o[i] = Clip8(acc[i]);
    }

    // ------------------------------------------------------------------ nearest, premultiplied alpha

    private static byte[] Nearest(byte[] src, int w, int h, int c, int ow, int oh)
    {
        // Geometry.c ImagingScaleAffine: source coordinate starts at scale/2 and is advanced by adding scale.
        var xin = new int[ow];
        double sx = (double)w / ow, xo = sx * 0.5;
        for (int x = 0; x < ow; x++) { xin[x] = Math.Min((int)xo, w - 1); xo += sx; }
        var o = new byte[(long)ow * oh * c];
        double sy = (double)h / oh, yo = sy * 0.5;
        for (int y = 0; y < oh; y++)
        {
            int yi = Math.Min((int)yo, h - 1);
            yo += sy;
            for (int x = 0; x < ow; x++)
                for (int ch = 0; ch < c; ch++)
                    o[((long)y * ow + x) * c + ch] = src[((long)yi * w + xin[x]) * c + ch];
        }
        return o;
    }

    private static byte[] Premultiply(byte[] src, int c)
    {
        var d = (byte[])src.Clone();
        for (int i = 0; i < d.Length; i += c)
        {
            int a = d[i + c - 1];
            for (int j = 0; j < c - 1; j++) d[i + j] = (byte)Image.MulDiv255(d[i + j], a);
        }
        return d;
    }

    private static void Unpremultiply(byte[] d, int c)
    {
        for (int i = 0; i < d.Length; i += c)
        {
            int a = d[i + c - 1];
            if (a == 0 || a == 255) continue;
            for (int j = 0; j < c - 1; j++) d[i + j] = (byte)Math.Min(255, 255 * d[i + j] / a);
        }
    }
}
