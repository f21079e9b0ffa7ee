using System.Buffers.Binary;
using System.IO.Compression;
using Vlm.Vision.Codecs;

namespace Vlm.Vision.Tests;

public class BadInputTests
{
    private static byte[] Read(string rel) => File.ReadAllBytes(Path.Combine(TestData.Dir, rel));

    private static byte[] Chunk(string type, byte[] data)
    {
        var o = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(o, (uint)data.Length);
        for (int i = 0; i < 4; i++) o[4 + i] = (byte)type[i];
        data.CopyTo(o, 8);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8 + data.Length), PngDecoder.Crc32(o.AsSpan(4, 4 + data.Length)));
        return o;
    }

    private static byte[] Png(uint w, uint h, byte depth, byte ct, byte[]? idat = null, byte interlace = 0)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = depth; ihdr[9] = ct; ihdr[12] = interlace;
        idat ??= Deflate(new byte[16]);
        return [.. PngDecoder.Signature, .. Chunk("IHDR", ihdr), .. Chunk("IDAT", idat), .. Chunk("IEND", [])];
    }

    private static byte[] Deflate(byte[] raw)
    {
        var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Fastest, true)) z.Write(raw);
        return ms.ToArray();
    }

    private static T Throws<T>(byte[] data, string mustContain) where T : Exception
    {
        var e = Assert.Throws<T>(() => ImageDecoder.Decode(data, "bad-file.x"));
        Assert.Contains("bad-file.x", e.Message);
        Assert.Contains(mustContain, e.Message, StringComparison.OrdinalIgnoreCase);
        return e;
    }

    [Fact]
    public void Png_BadCrc() => Throws<InvalidDataException>(FlipLast(Read("png/ct2_d8_13x11_plain.png"), 20), "CRC");

    private static byte[] FlipLast(byte[] b, int fromEnd) { var c = (byte[])b.Clone(); c[^fromEnd] ^= 0x40; return c; }

    [Fact]
    public void Png_TruncatedAnywhere_IsInvalidData()
    {
        var full = Read("png/ct6_d16_13x11_adam7.png");
        for (int n = 1; n < full.Length; n += Math.Max(1, full.Length / 97))
            Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(full.AsSpan(0, n), "cut.png"));
    }

    [Fact]
    public void Png_HugeHeader_RejectedWithoutAllocating()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        Throws<InvalidDataException>(Png(100000, 100000, 8, 6), "limit");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "rejecting the header must not allocate the image");
        // under the pixel limit but far more than the tiny IDAT can hold
        before = GC.GetAllocatedBytesForCurrentThread();
        Throws<InvalidDataException>(Png(12000, 12000, 16, 6), "truncated");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        // the limit is configurable
        var ok = Png(2, 2, 8, 0, Deflate(new byte[6]));
        Assert.Equal(2, ImageDecoder.Decode(ok).Width);
        Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(ok, "x", new DecodeOptions { MaxPixels = 3 }));
    }

    [Fact]
    public void Png_HeaderErrors()
    {
        Throws<InvalidDataException>(Png(0, 5, 8, 2), "size");
        Throws<InvalidDataException>(Png(5, 5, 3, 2), "bit depth");
        Throws<InvalidDataException>(Png(5, 5, 8, 7), "colour type");
        Throws<InvalidDataException>(Png(5, 5, 8, 2, interlace: 2), "interlace");
        Throws<InvalidDataException>(Png(2, 2, 8, 3, Deflate(new byte[6])), "PLTE");
        Throws<InvalidDataException>(Png(2, 2, 8, 0, [1, 2, 3, 4, 5, 6, 7, 8]), "zlib");
        Throws<InvalidDataException>(Png(2, 2, 8, 0, Deflate([9, 0, 0, 9, 0, 0])), "filter");
        Throws<InvalidDataException>(Png(2, 2, 8, 0, Deflate([0, 0])), "truncated");
        byte[] noIdat = [.. PngDecoder.Signature, .. Png(1, 1, 8, 0).AsSpan(8, 25), .. Chunk("IEND", [])];
        Throws<InvalidDataException>(noIdat, "IDAT");
        byte[] critical = [.. Png(1, 1, 8, 0).AsSpan(0, 33), .. Chunk("ABCD", [1]), .. Png(1, 1, 8, 0).AsSpan(33)];
        Throws<NotSupportedException>(critical, "ABCD");
        byte[] ancillary = [.. Png(1, 1, 8, 0, Deflate([0, 7])).AsSpan(0, 33), .. Chunk("abCD", [1]), .. Png(1, 1, 8, 0, Deflate([0, 7])).AsSpan(33)];
        Assert.Equal(7, ImageDecoder.Decode(ancillary).Data[0]);
    }

    [Fact]
    public void Jpeg_Errors()
    {
        if (!JpegDecoder.IsAvailable) return;
        var jpg = Read("formats/baseline.jpg");
        Throws<InvalidDataException>(jpg[..(jpg.Length / 2)], "JPEG");
        Throws<InvalidDataException>(jpg[..40], "JPEG");
        Throws<InvalidDataException>([0xFF, 0xD8, 0xFF, 0xD9], "JPEG");
        // SOF0 claiming 60000 x 60000 (3.6 G pixels): over the pixel limit
        var huge = (byte[])jpg.Clone();
        int sof = FindMarker(huge, 0xC0);
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 5), 60000);
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 7), 60000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Throws<InvalidDataException>(huge, "limit");
        // 10000 x 10000 is under the limit but cannot fit in a 2 KB file
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 5), 10000);
        BinaryPrimitives.WriteUInt16BigEndian(huge.AsSpan(sof + 7), 10000);
        Throws<InvalidDataException>(huge, "cannot fit");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }

    private static int FindMarker(byte[] b, byte m)
    {
        for (int i = 2; i + 1 < b.Length; i++) if (b[i] == 0xFF && b[i + 1] == m) return i;
        throw new InvalidOperationException("marker not found");
    }

    [Fact]
    public void Bmp_And_Pnm_Errors()
    {
        var bmp = Read("formats/rgb24.bmp");
        Throws<InvalidDataException>(bmp[..(bmp.Length - 10)], "truncated");
        Throws<InvalidDataException>(bmp[..20], "BMP");
        var rle = (byte[])bmp.Clone();
        rle[30] = 1; // BI_RLE8
        Throws<NotSupportedException>(rle, "compression");
        var huge = (byte[])bmp.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(huge.AsSpan(18), 100000);
        BinaryPrimitives.WriteInt32LittleEndian(huge.AsSpan(22), -100000);
        Throws<InvalidDataException>(huge, "limit");
        var zero = (byte[])bmp.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(zero.AsSpan(18), 0);
        Throws<InvalidDataException>(zero, "empty");

        Throws<InvalidDataException>("P6 4 4 255\n\x01\x02"u8.ToArray(), "truncated");
        Throws<InvalidDataException>("P5 4 4 70000\n"u8.ToArray(), "maxval");
        Throws<InvalidDataException>("P5 0 4 255\n"u8.ToArray(), "empty");
        Throws<InvalidDataException>("P5 100000 100000 255\n"u8.ToArray(), "limit");
        Throws<InvalidDataException>("P5 x"u8.ToArray(), "number");
    }

    [Fact]
    public void UnknownFormats_EmptyFiles_MissingFiles()
    {
        Throws<NotSupportedException>("GIF89a\x01\x00\x01\x00"u8.ToArray(), "unrecognised");
        Throws<NotSupportedException>("P3 1 1 255 0 0 0"u8.ToArray(), "unrecognised");
        Throws<InvalidDataException>([], "empty");
        var e = Assert.Throws<FileNotFoundException>(() => ImageDecoder.Decode("/nonexistent/dir/img.png"));
        Assert.Contains("img.png", e.Message);
    }

    [Fact]
    public void Image_Constructor_RejectsZeroSize()
    {
        Assert.Throws<ArgumentException>(() => new Image(0, 3, PixelMode.RGB, Array.Empty<byte>()));
        Assert.Throws<ArgumentException>(() => new Image(2, 2, PixelMode.RGB, new byte[5]));
    }
}
