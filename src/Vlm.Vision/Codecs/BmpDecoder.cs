using System.Buffers.Binary;

namespace Vlm.Vision.Codecs;

/// <summary>
/// Uncompressed Windows BMP: 24-bit (RGB), 32-bit BI_RGB (RGB, the fourth byte ignored as Pillow's BGRX does),
/// 32-bit BI_BITFIELDS with byte-aligned masks (RGBA when an alpha mask is given), 1/4/8-bit palette (mode P);
/// bottom-up and top-down rows. RLE and other compressions are refused with NotSupportedException.
/// </summary>
public static class BmpDecoder
{
    public static Image Decode(ReadOnlySpan<byte> b, string origin = "<bmp>", DecodeOptions? options = null)
    {
        options ??= DecodeOptions.Default;
        if (b.Length < 26 || b[0] != (byte)'B' || b[1] != (byte)'M') throw Bad(origin, "missing BM signature or truncated header");
        uint dataOffset = BinaryPrimitives.ReadUInt32LittleEndian(b[10..]);
        uint hdrSize = BinaryPrimitives.ReadUInt32LittleEndian(b[14..]);
        if (hdrSize < 40) throw new NotSupportedException($"{origin}: BMP core headers (size {hdrSize}) are not supported");
        if (b.Length < 14 + 40) throw Bad(origin, "truncated info header");
        int w = BinaryPrimitives.ReadInt32LittleEndian(b[18..]);
        int h = BinaryPrimitives.ReadInt32LittleEndian(b[22..]);
        int planes = BinaryPrimitives.ReadUInt16LittleEndian(b[26..]);
        int bits = BinaryPrimitives.ReadUInt16LittleEndian(b[28..]);
        uint comp = BinaryPrimitives.ReadUInt32LittleEndian(b[30..]);
        uint colorsUsed = BinaryPrimitives.ReadUInt32LittleEndian(b[46..]);
        if (planes != 1) throw Bad(origin, $"{planes} planes");
        bool topDown = h < 0;
        long height = Math.Abs((long)h);
        options.CheckPixels(w, height, origin, "BMP");
        int H = (int)height;
        if (comp is not (0 or 3)) throw new NotSupportedException($"{origin}: BMP compression {comp} (RLE/JPEG/PNG) is not supported");
        if (bits is not (1 or 4 or 8 or 24 or 32)) throw new NotSupportedException($"{origin}: {bits}-bit BMP is not supported");
        if (comp == 3 && bits != 32) throw new NotSupportedException($"{origin}: BI_BITFIELDS with {bits} bits is not supported");

        long stride = ((long)w * bits + 31) / 32 * 4;
        if (dataOffset > b.Length || dataOffset + stride * H > b.Length)
            throw Bad(origin, $"pixel data ({stride * H} bytes at offset {dataOffset}) runs past the end of the file ({b.Length} bytes): truncated");
        PixelMode mode;
        byte[] dst;
        byte[]? palette = null;
        if (bits <= 8)
        {
            int n = colorsUsed == 0 ? 1 << bits : (int)Math.Min(colorsUsed, 256u);
            long palStart = 14 + hdrSize;
            if (palStart + 4L * n > dataOffset) throw Bad(origin, "palette overlaps the pixel data");
            palette = Image.GrayRamp();
            for (int i = 0; i < n; i++)
            {
                var e = b.Slice((int)(palStart + 4 * i), 4); // B, G, R, reserved
                palette[3 * i] = e[2]; palette[3 * i + 1] = e[1]; palette[3 * i + 2] = e[0];
            }
            mode = PixelMode.P;
            dst = new byte[(long)w * H];
            int mask = (1 << bits) - 1;
            for (int y = 0; y < H; y++)
            {
                var row = b.Slice((int)(dataOffset + stride * (topDown ? y : H - 1 - y)), (int)stride);
                for (int x = 0; x < w; x++)
                {
                    int bit = x * bits;
                    dst[(long)y * w + x] = (byte)((row[bit >> 3] >> (8 - bits - (bit & 7))) & mask);
                }
            }
        }
        else
        {
            int rs = 2, gs = 1, bs = 0, aS = -1;
            if (comp == 3)
            {
                if (b.Length < 14 + 52) throw Bad(origin, "truncated BI_BITFIELDS masks");
                uint rm = BinaryPrimitives.ReadUInt32LittleEndian(b[54..]), gm = BinaryPrimitives.ReadUInt32LittleEndian(b[58..]);
                uint bm = BinaryPrimitives.ReadUInt32LittleEndian(b[62..]);
                uint am = hdrSize >= 56 && b.Length >= 70 ? BinaryPrimitives.ReadUInt32LittleEndian(b[66..]) : 0;
                rs = ByteOf(rm, origin); gs = ByteOf(gm, origin); bs = ByteOf(bm, origin); aS = am == 0 ? -1 : ByteOf(am, origin);
            }
            int bpp = bits / 8;
            mode = aS >= 0 ? PixelMode.RGBA : PixelMode.RGB;
            int c = Image.ChannelsOf(mode);
            dst = new byte[(long)w * H * c];
            for (int y = 0; y < H; y++)
            {
                var row = b.Slice((int)(dataOffset + stride * (topDown ? y : H - 1 - y)), (int)stride);
                long o = (long)y * w * c;
                for (int x = 0; x < w; x++, o += c)
                {
                    var px = row.Slice(x * bpp, bpp);
                    dst[o] = px[rs]; dst[o + 1] = px[gs]; dst[o + 2] = px[bs];
                    if (aS >= 0) dst[o + 3] = px[aS];
                }
            }
        }
        return new Image(w, H, mode, dst) { Palette = palette, Source = origin, SourceBitDepth = bits <= 8 ? bits : 8 };
    }

    private static int ByteOf(uint mask, string origin) => mask switch
    {
        0x000000FFu => 0, 0x0000FF00u => 1, 0x00FF0000u => 2, 0xFF000000u => 3,
        _ => throw new NotSupportedException($"{origin}: BMP channel mask 0x{mask:x8} is not byte-aligned"),
    };

    private static InvalidDataException Bad(string origin, string what) => new($"{origin}: invalid BMP: {what}");
}
