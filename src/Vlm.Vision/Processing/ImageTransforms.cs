using Vlm.Core;

namespace Vlm.Vision.Processing;

/// <summary>
/// The numpy steps of HF's image_transforms on HWC uint8 RGB images, with HF's dtypes: <c>rescale</c> multiplies in
/// float64 then casts to float32; <c>normalize</c> subtracts and divides in float32 with float32 mean/std.
/// </summary>
public static class ImageTransforms
{
    /// <summary>HF <c>center_crop</c> to (h, w): a centred window, zero-padded (symmetrically, extra pixel at the
    /// start — ceil) where the image is smaller than the crop.</summary>
    public static Image CenterCrop(Image image, int cropH, int cropW)
    {
        if (image.BitDepth != 8) throw new NotSupportedException("center crop needs an 8-bit image");
        if (cropH <= 0 || cropW <= 0) throw new ArgumentException($"crop size must be positive, got {cropH}x{cropW}");
        int h = image.Height, w = image.Width, c = image.Channels;
        int top = FloorDiv(h - cropH, 2), left = FloorDiv(w - cropW, 2);
        int newH = Math.Max(cropH, h), newW = Math.Max(cropW, w);
        int topPad = (newH - h + 1) / 2, leftPad = (newW - w + 1) / 2; // ceil((new - orig) / 2), both ≥ 0
        // In the padded canvas the image sits at (topPad, leftPad); the window starts at (top + topPad, left + leftPad).
        int y0 = Math.Max(0, top + topPad), x0 = Math.Max(0, left + leftPad);
        int y1 = Math.Min(newH, top + topPad + cropH), x1 = Math.Min(newW, left + leftPad + cropW);
        int oh = y1 - y0, ow = x1 - x0;
        var o = new byte[oh * ow * c];
        for (int y = 0; y < oh; y++)
        {
            int sy = y0 + y - topPad;
            if (sy < 0 || sy >= h) continue;
            for (int x = 0; x < ow; x++)
            {
                int sx = x0 + x - leftPad;
                if (sx < 0 || sx >= w) continue;
                Array.Copy(image.Data, (sy * w + sx) * c, o, (y * ow + x) * c, c);
            }
        }
        return new Image(ow, oh, image.Mode, o) { Source = image.Source };
    }

    private static int FloorDiv(int a, int b) => (int)Math.Floor((double)a / b);

    /// <summary>
    /// Rescale (float64 multiply, cast to float32) then normalise (float32) an 8-bit RGB image into
    /// <paramref name="dst"/> laid out (3, dstH, dstW) at the top-left; the rest of dst is untouched.
    /// </summary>
    public static void RescaleNormalizeInto(Image rgb, bool doRescale, double scale, bool doNormalize,
        float[] mean, float[] std, Span<float> dst, int dstH, int dstW)
    {
        if (rgb.Mode != PixelMode.RGB || rgb.BitDepth != 8) throw new ArgumentException($"expected an 8-bit RGB image, got {rgb}");
        int h = rgb.Height, w = rgb.Width;
        var src = rgb.Data;
        // 256-entry lookup per channel: every step is a pure function of the byte value, so this is exact.
        Span<float> lut = stackalloc float[256 * 3];
        for (int ch = 0; ch < 3; ch++)
            for (int v = 0; v < 256; v++)
            {
                float x = doRescale ? (float)(v * scale) : v;
                if (doNormalize) x = (x - mean[ch]) / std[ch];
                lut[ch * 256 + v] = x;
            }
        for (int ch = 0; ch < 3; ch++)
        {
            var l = lut.Slice(ch * 256, 256);
            for (int y = 0; y < h; y++)
            {
                var drow = dst.Slice((ch * dstH + y) * dstW, w);
                int s = y * w * 3 + ch;
                for (int x = 0; x < w; x++, s += 3) drow[x] = l[src[s]];
            }
        }
    }

    /// <summary>Stacks per-image (3, h, w) results, padding bottom/right with 0 to the largest h and w (HF pad),
    /// and the matching pixel mask (B, H, W) as int64 with 1 on real pixels.</summary>
    internal static (Tensor PixelValues, Tensor? PixelMask) Batch(IReadOnlyList<Image> images, bool pad,
        bool doRescale, double scale, bool doNormalize, float[] mean, float[] std)
    {
        int maxH = images.Max(i => i.Height), maxW = images.Max(i => i.Width);
        if (!pad && images.Any(i => i.Height != maxH || i.Width != maxW))
            throw new InvalidOperationException($"images have different sizes after preprocessing ({string.Join(", ", images.Select(i => $"{i.Width}x{i.Height}"))}) and padding is off: they cannot be stacked into one tensor");
        int b = images.Count;
        var pv = new float[(long)b * 3 * maxH * maxW];
        long[]? mask = pad ? new long[(long)b * maxH * maxW] : null;
        for (int i = 0; i < b; i++)
        {
            RescaleNormalizeInto(images[i], doRescale, scale, doNormalize, mean, std, pv.AsSpan(i * 3 * maxH * maxW, 3 * maxH * maxW), maxH, maxW);
            if (mask is not null)
                for (int y = 0; y < images[i].Height; y++) mask.AsSpan((i * maxH + y) * maxW, images[i].Width).Fill(1);
        }
        return (Tensor.FromArray(pv, b, 3, maxH, maxW), mask is null ? null : Tensor.FromArray(mask, b, maxH, maxW));
    }
}
