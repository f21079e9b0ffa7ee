using Vlm.Core;

namespace Vlm.Vision;

/// <summary>Pixel layouts, named after Pillow's modes. Samples are interleaved, rows top to bottom.</summary>
public enum PixelMode
{
    /// <summary>Grayscale (1 channel).</summary>
    L,
    /// <summary>Grayscale + alpha (2 channels).</summary>
    LA,
    RGB,
    RGBA,
    /// <summary>Palette indices (1 channel) into <see cref="Image.Palette"/>.</summary>
    P,
    /// <summary>CMYK as stored by Adobe JPEGs after un-inverting (4 channels, 0 = no ink).</summary>
    CMYK,
}

/// <summary>
/// A decoded image: width × height pixels of <see cref="Mode"/>, 8 or 16 bits per sample.
/// 8-bit samples live in <see cref="Data"/>, 16-bit ones in <see cref="Data16"/> (the other is empty).
/// Sub-byte PNG grayscale (1/2/4 bits) is widened to 8-bit the way Pillow does (×255, ×85, ×17), so
/// <see cref="SourceBitDepth"/> keeps the original depth for reference.
/// </summary>
public sealed class Image
{
    public int Width { get; }
    public int Height { get; }
    public PixelMode Mode { get; }

    /// <summary>8 or 16.</summary>
    public int BitDepth { get; }

    /// <summary>Bits per sample in the source file (1, 2, 4, 8, 16).</summary>
    public int SourceBitDepth { get; init; }

    /// <summary>(H, W, C) samples when <see cref="BitDepth"/> is 8, else empty.</summary>
    public byte[] Data { get; }

    /// <summary>(H, W, C) samples when <see cref="BitDepth"/> is 16, else empty.</summary>
    public ushort[] Data16 { get; }

    /// <summary>Palette for <see cref="PixelMode.P"/>: 256 RGB triplets (entries the file did not define are
    /// Pillow's gray ramp, i → (i, i, i)).</summary>
    public byte[]? Palette { get; init; }

    /// <summary>Per-entry alpha of the palette from a PNG tRNS chunk (shorter than 256 when the file says so).</summary>
    public byte[]? PaletteAlpha { get; init; }

    /// <summary>EXIF orientation tag 0x0112 (1..8; 1 when absent). Not applied unless asked (Pillow and HF don't).</summary>
    public int Orientation { get; init; } = 1;

    /// <summary>Name of the source (file path) for error messages; may be null.</summary>
    public string? Source { get; init; }

    public int Channels => ChannelsOf(Mode);

    public static int ChannelsOf(PixelMode m) => m switch
    {
        PixelMode.L or PixelMode.P => 1,
        PixelMode.LA => 2,
        PixelMode.RGB => 3,
        _ => 4,
    };

    public Image(int width, int height, PixelMode mode, byte[] data)
    {
        CheckSize(width, height);
        if (data.LongLength != (long)width * height * ChannelsOf(mode))
            throw new ArgumentException($"{mode} image {width}x{height} needs {(long)width * height * ChannelsOf(mode)} bytes, got {data.LongLength}");
        Width = width; Height = height; Mode = mode; BitDepth = 8; SourceBitDepth = 8;
        Data = data; Data16 = [];
        if (mode == PixelMode.P) Palette = GrayRamp();
    }

    public Image(int width, int height, PixelMode mode, ushort[] data16)
    {
        CheckSize(width, height);
        if (mode is PixelMode.P or PixelMode.CMYK) throw new ArgumentException($"16-bit {mode} images are not supported");
        if (data16.LongLength != (long)width * height * ChannelsOf(mode))
            throw new ArgumentException($"16-bit {mode} image {width}x{height} needs {(long)width * height * ChannelsOf(mode)} samples, got {data16.LongLength}");
        Width = width; Height = height; Mode = mode; BitDepth = 16; SourceBitDepth = 16;
        Data = []; Data16 = data16;
    }

    private static void CheckSize(int w, int h)
    {
        if (w <= 0 || h <= 0) throw new ArgumentException($"image size must be positive, got {w}x{h}");
    }

    internal static byte[] GrayRamp()
    {
        var p = new byte[768];
        for (int i = 0; i < 256; i++) p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = (byte)i;
        return p;
    }

    /// <summary>
    /// Pillow's <c>convert('RGB')</c>: L replicated, LA/RGBA alpha dropped (no compositing), P expanded through the
    /// palette (transparency ignored), 16-bit gray clipped to 0..255 (Pillow opens it as mode I), other 16-bit
    /// modes keep the high byte (Pillow's ;16B raw modes), CMYK as Pillow's cmyk2rgb.
    /// </summary>
    public Image ToRgb()
    {
        if (Mode == PixelMode.RGB && BitDepth == 8) return this;
        int n = Width * Height;
        var o = new byte[n * 3];
        int c = Channels;
        if (BitDepth == 16)
        {
            var s = Data16;
            if (Mode == PixelMode.L)
                for (int i = 0; i < n; i++) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = (byte)Math.Min(s[i], (ushort)255);
            else if (Mode == PixelMode.LA)
                for (int i = 0; i < n; i++) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = (byte)(s[2 * i] >> 8);
            else
                for (int i = 0; i < n; i++)
                {
                    o[3 * i] = (byte)(s[c * i] >> 8); o[3 * i + 1] = (byte)(s[c * i + 1] >> 8); o[3 * i + 2] = (byte)(s[c * i + 2] >> 8);
                }
        }
        else
        {
            var s = Data;
            switch (Mode)
            {
                case PixelMode.L:
                case PixelMode.LA:
                    for (int i = 0; i < n; i++) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[c * i];
                    break;
                case PixelMode.RGBA:
                    for (int i = 0; i < n; i++) { o[3 * i] = s[4 * i]; o[3 * i + 1] = s[4 * i + 1]; o[3 * i + 2] = s[4 * i + 2]; }
                    break;
                case PixelMode.P:
                    {
                        var pal = Palette ?? GrayRamp();
                        for (int i = 0; i < n; i++) { int k = 3 * s[i]; o[3 * i] = pal[k]; o[3 * i + 1] = pal[k + 1]; o[3 * i + 2] = pal[k + 2]; }
                        break;
                    }
                case PixelMode.CMYK:
                    for (int i = 0; i < n; i++)
                    {
                        int nk = 255 - s[4 * i + 3];
                        for (int j = 0; j < 3; j++) o[3 * i + j] = (byte)Math.Clamp(nk - MulDiv255(s[4 * i + j], nk), 0, 255);
                    }
                    break;
                default:
                    throw new InvalidOperationException($"unexpected mode {Mode}");
            }
        }
        return new Image(Width, Height, PixelMode.RGB, o) { Orientation = Orientation, Source = Source };
    }

    /// <summary>Pillow's MULDIV255: a·b/255 rounded, in integers.</summary>
    internal static int MulDiv255(int a, int b)
    {
        int t = a * b + 128;
        return ((t >> 8) + t) >> 8;
    }

    /// <summary>The samples as a uint8 tensor (H, W, C) — (H, W) for one channel, like <c>np.array(img)</c>.</summary>
    public Tensor ToTensor()
    {
        if (BitDepth != 8) throw new InvalidOperationException("ToTensor needs an 8-bit image; call ToRgb() first");
        int[] shape = Channels == 1 ? [Height, Width] : [Height, Width, Channels];
        return Tensor.FromBytes((byte[])Data.Clone(), DType.UInt8, shape);
    }

    /// <summary>An 8-bit image from a uint8 tensor (H, W, C) with C in 1..4, or (H, W).</summary>
    public static Image FromTensor(Tensor t)
    {
        if (t.DType != DType.UInt8) throw new ArgumentException($"expected a uint8 tensor, got {t.DType}");
        if (t.Rank is not (2 or 3)) throw new ArgumentException($"expected (H, W) or (H, W, C), got {t.ShapeString}");
        int c = t.Rank == 2 ? 1 : t.Size(2);
        var mode = c switch { 1 => PixelMode.L, 2 => PixelMode.LA, 3 => PixelMode.RGB, 4 => PixelMode.RGBA, _ => throw new ArgumentException($"{c} channels") };
        return new Image(t.Size(1), t.Size(0), mode, t.Contiguous().SpanU8.ToArray());
    }

    /// <summary>
    /// Applies <see cref="Orientation"/> like Pillow's ImageOps.exif_transpose (the result has orientation 1).
    /// </summary>
    public Image ApplyOrientation()
    {
        int o = Orientation;
        if (o is < 2 or > 8) return this;
        bool swap = o >= 5;
        int nw = swap ? Height : Width, nh = swap ? Width : Height;
        int c = Channels;
        bool is16 = BitDepth == 16;
        var d8 = is16 ? [] : new byte[Data.Length];
        var d16 = is16 ? new ushort[Data16.Length] : [];
        for (int y = 0; y < nh; y++)
            for (int x = 0; x < nw; x++)
            {
                // (sx, sy): where the displayed pixel (x, y) sits in the stored image.
                (int sx, int sy) = o switch
                {
                    2 => (Width - 1 - x, y),
                    3 => (Width - 1 - x, Height - 1 - y),
                    4 => (x, Height - 1 - y),
                    5 => (y, x),
                    6 => (y, Height - 1 - x),
                    7 => (Width - 1 - y, Height - 1 - x),
                    _ => (Width - 1 - y, x), // 8
                };
                int si = (sy * Width + sx) * c, di = (y * nw + x) * c;
                if (is16) Array.Copy(Data16, si, d16, di, c); else Array.Copy(Data, si, d8, di, c);
            }
        return is16
            ? new Image(nw, nh, Mode, d16) { Source = Source, SourceBitDepth = SourceBitDepth }
            : new Image(nw, nh, Mode, d8) { Palette = Palette, PaletteAlpha = PaletteAlpha, Source = Source, SourceBitDepth = SourceBitDepth };
    }

    public override string ToString() => $"{Mode}{(BitDepth == 16 ? "16" : "")} {Width}x{Height}{(Source is null ? "" : " from " + Source)}";
}
