using System.Buffers.Binary;
using System.IO.Compression;

namespace Vlm.Vision.Codecs;

/// <summary>
/// Managed PNG decoder (PNG spec, ISO/IEC 15948): every colour type and bit depth, PLTE + tRNS, Adam7, the five
/// row filters, CRC-checked chunks, any number of IDAT chunks. Samples come out as Pillow's Image.open shows them:
/// sub-byte gray widened to 8 bits, palette images as indices (mode P), 16-bit samples kept in full.
/// </summary>
public static class PngDecoder
{
    internal static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    // deflate cannot expand by more than ~1032:1, so a header promising more raw bytes than that from the
    // IDAT bytes present is certainly truncated: refuse it before allocating the image.
    private const long MaxDeflateRatio = 1100;

    private static readonly (int X0, int Y0, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    public static Image Decode(ReadOnlySpan<byte> png, string origin = "<png>", DecodeOptions? options = null)
    {
        options ??= DecodeOptions.Default;
        if (png.Length < 8 || !png[..8].SequenceEqual(Signature)) throw Bad(origin, "missing PNG signature");
        int pos = 8;
        int width = 0, height = 0, depth = 0, colorType = -1, interlace = 0;
        bool haveHeader = false, seenIdat = false, idatDone = false, seenEnd = false;
        byte[]? palette = null; byte[]? palAlpha = null;
        int orientation = 1;
        var idat = new MemoryStream();
        while (!seenEnd)
        {
            if (pos + 12 > png.Length) throw Bad(origin, pos == png.Length ? "file ends before the IEND chunk (truncated)" : "truncated chunk header");
            uint len = BinaryPrimitives.ReadUInt32BigEndian(png[pos..]);
            var type = png.Slice(pos + 4, 4);
            string name = ChunkName(type);
            if (len > int.MaxValue || pos + 12L + len > png.Length) throw Bad(origin, $"chunk {name} of {len} bytes runs past the end of the file (truncated)");
            var data = png.Slice(pos + 8, (int)len);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png[(pos + 8 + (int)len)..]);
            uint actual = Crc32(png.Slice(pos + 4, 4 + (int)len));
            if (crc != actual) throw Bad(origin, $"CRC mismatch in chunk {name} (stored {crc:x8}, computed {actual:x8})");
            pos += 12 + (int)len;
            if (!haveHeader && name != "IHDR") throw Bad(origin, $"first chunk is {name}, expected IHDR");
            if (seenIdat && name != "IDAT") idatDone = true;
            switch (name)
            {
                case "IHDR":
                    if (haveHeader) throw Bad(origin, "second IHDR chunk");
                    if (len != 13) throw Bad(origin, $"IHDR has {len} bytes, expected 13");
                    uint w = BinaryPrimitives.ReadUInt32BigEndian(data), h = BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
                    if (w == 0 || h == 0 || w > int.MaxValue || h > int.MaxValue) throw Bad(origin, $"invalid image size {w}x{h}");
                    depth = data[8]; colorType = data[9]; interlace = data[12];
                    bool okDepth = colorType switch
                    {
                        0 => depth is 1 or 2 or 4 or 8 or 16,
                        3 => depth is 1 or 2 or 4 or 8,
                        2 or 4 or 6 => depth is 8 or 16,
                        _ => false,
                    };
                    if (!okDepth) throw Bad(origin, $"invalid colour type {colorType} with bit depth {depth}");
                    if (data[10] != 0) throw Bad(origin, $"unknown compression method {data[10]}");
                    if (data[11] != 0) throw Bad(origin, $"unknown filter method {data[11]}");
                    if (interlace > 1) throw Bad(origin, $"unknown interlace method {interlace}");
                    options.CheckPixels(w, h, origin, "PNG");
                    width = (int)w; height = (int)h; haveHeader = true;
                    break;
                case "PLTE":
                    if (len % 3 != 0 || len == 0 || len > 768) throw Bad(origin, $"PLTE chunk has {len} bytes (must be a multiple of 3, at most 768)");
                    palette = Image.GrayRamp();
                    data.CopyTo(palette);
                    break;
                case "tRNS":
                    if (colorType == 3) palAlpha = data.ToArray();
                    else if ((colorType == 0 && len != 2) || (colorType == 2 && len != 6))
                        throw Bad(origin, $"tRNS chunk has {len} bytes for colour type {colorType}");
                    break;
                case "eXIf":
                    orientation = Exif.ReadOrientation(data);
                    break;
                case "IDAT":
                    if (idatDone) throw Bad(origin, "IDAT chunks are not consecutive");
                    seenIdat = true;
                    idat.Write(data);
                    break;
                case "IEND":
                    seenEnd = true;
                    break;
                default:
                    // Bit 5 of the first byte clear = critical chunk we do not understand: the spec says stop.
                    if ((type[0] & 0x20) == 0) throw new NotSupportedException($"{origin}: unknown critical PNG chunk '{name}'");
                    break;
            }
        }
        if (!seenIdat) throw Bad(origin, "no IDAT chunk");
        if (colorType == 3 && palette is null) throw Bad(origin, "palette image without a PLTE chunk");

        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        int bitsPerPixel = channels * depth;
        int bpp = Math.Max(1, bitsPerPixel / 8); // filter byte distance
        long rawSize = 0;
        var passes = interlace == 1 ? Adam7 : [(0, 0, 1, 1)];
        foreach (var (x0, y0, dx, dy) in passes)
        {
            long pw = (width - x0 + dx - 1) / dx, ph = (height - y0 + dy - 1) / dy;
            if (pw > 0 && ph > 0) rawSize += ph * (1 + (pw * bitsPerPixel + 7) / 8);
        }
        if (rawSize > idat.Length * MaxDeflateRatio + 1024)
            throw Bad(origin, $"image data is truncated: {idat.Length} compressed bytes cannot hold {rawSize} bytes of {width}x{height} pixels");
        if (rawSize > int.MaxValue) throw new NotSupportedException($"{origin}: PNG image data of {rawSize} bytes is too large");

        var raw = new byte[rawSize];
        idat.Position = 0;
        try
        {
            using var z = new ZLibStream(idat, CompressionMode.Decompress);
            int got = 0;
            while (got < raw.Length)
            {
                int r = z.Read(raw, got, raw.Length - got);
                if (r == 0) break;
                got += r;
            }
            if (got < raw.Length) throw Bad(origin, $"image data is truncated: decompressed {got} of {raw.Length} bytes");
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(origin, StringComparison.Ordinal))
        {
            throw Bad(origin, "corrupt zlib stream in IDAT: " + e.Message);
        }

        bool sixteen = depth == 16;
        var mode = colorType switch { 0 => PixelMode.L, 2 => PixelMode.RGB, 3 => PixelMode.P, 4 => PixelMode.LA, _ => PixelMode.RGBA };
        var d8 = sixteen ? [] : new byte[(long)width * height * channels];
        var d16 = sixteen ? new ushort[(long)width * height * channels] : [];
        int off = 0;
        var zeros = new byte[(((long)width * bitsPerPixel + 7) / 8)];
        foreach (var (x0, y0, dx, dy) in passes)
        {
            int pw = (width - x0 + dx - 1) / dx, ph = (height - y0 + dy - 1) / dy;
            if (pw <= 0 || ph <= 0) continue;
            int rowBytes = (int)(((long)pw * bitsPerPixel + 7) / 8);
            // Rows are unfiltered in place: the previous row of the pass sits just before this one in raw.
            int prevOff = -1;
            for (int r = 0; r < ph; r++)
            {
                int filter = raw[off];
                var cur = raw.AsSpan(off + 1, rowBytes);
                var prev = prevOff < 0 ? zeros.AsSpan(0, rowBytes) : raw.AsSpan(prevOff, rowBytes);
                Unfilter(filter, cur, prev, bpp, origin);
                int y = y0 + r * dy;
                if (sixteen) Emit16(cur, pw, channels, d16, ((long)y * width + x0) * channels, dx * channels);
                else Emit8(cur, pw, channels, depth, colorType == 0, d8, ((long)y * width + x0) * channels, dx * channels);
                prevOff = off + 1;
                off += 1 + rowBytes;
            }
        }
        Image img = sixteen
            ? new Image(width, height, mode, d16) { Orientation = orientation, Source = origin, SourceBitDepth = depth }
            : new Image(width, height, mode, d8) { Palette = palette, PaletteAlpha = palAlpha, Orientation = orientation, Source = origin, SourceBitDepth = depth };
        return options.ApplyExifOrientation ? img.ApplyOrientation() : img;
    }

    private static unsafe void Unfilter(int filter, Span<byte> cur, ReadOnlySpan<byte> prev, int bpp, string origin)
    {
        int n = cur.Length;
        fixed (byte* c = cur)
        fixed (byte* p = prev)
        {
            switch (filter)
            {
                case 0: break;
                case 1: for (int i = bpp; i < n; i++) c[i] += c[i - bpp]; break;
                case 2: for (int i = 0; i < n; i++) c[i] += p[i]; break;
                case 3:
                    for (int i = 0; i < bpp && i < n; i++) c[i] += (byte)(p[i] >> 1);
                    for (int i = bpp; i < n; i++) c[i] += (byte)((c[i - bpp] + p[i]) >> 1);
                    break;
                case 4:
                    for (int i = 0; i < bpp && i < n; i++) c[i] += p[i]; // Paeth with a = c = 0 picks b
                    for (int i = bpp; i < n; i++) c[i] += Paeth(c[i - bpp], p[i], p[i - bpp]);
                    break;
                default: throw Bad(origin, $"unknown row filter type {filter}");
            }
        }
    }

    private static byte Paeth(int a, int b, int c)
    {
        int pa = Math.Abs(b - c), pb = Math.Abs(a - c), pc = Math.Abs(a + b - 2 * c);
        return (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
    }

    private static void Emit8(ReadOnlySpan<byte> row, int pw, int channels, int depth, bool gray, byte[] dst, long start, int step)
    {
        if (depth == 8)
        {
            if (step == channels) { row[..(pw * channels)].CopyTo(dst.AsSpan((int)start)); return; }
            for (int j = 0; j < pw; j++) row.Slice(j * channels, channels).CopyTo(dst.AsSpan((int)(start + (long)j * step)));
            return;
        }
        // 1/2/4-bit: one channel, most significant bits first. Gray is widened like Pillow's unpackers (L;2 ×0x55,
        // L;4 ×0x11, mode 1 → 0/255); palette indices stay indices.
        int mask = (1 << depth) - 1;
        int scale = gray ? 255 / mask : 1;
        for (int j = 0; j < pw; j++)
        {
            int bit = j * depth;
            int v = (row[bit >> 3] >> (8 - depth - (bit & 7))) & mask;
            dst[start + (long)j * step] = (byte)(v * scale);
        }
    }

    private static void Emit16(ReadOnlySpan<byte> row, int pw, int channels, ushort[] dst, long start, int step)
    {
        for (int j = 0; j < pw; j++)
            for (int c = 0; c < channels; c++)
                dst[start + (long)j * step + c] = BinaryPrimitives.ReadUInt16BigEndian(row[(2 * (j * channels + c))..]);
    }

    private static string ChunkName(ReadOnlySpan<byte> t)
    {
        Span<char> c = stackalloc char[4];
        for (int i = 0; i < 4; i++) c[i] = t[i] is >= 32 and < 127 ? (char)t[i] : '?';
        return new string(c);
    }

    private static InvalidDataException Bad(string origin, string what) => new($"{origin}: invalid PNG: {what}");

    private static readonly uint[] CrcTable = MakeCrcTable();

    private static uint[] MakeCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }

    internal static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
