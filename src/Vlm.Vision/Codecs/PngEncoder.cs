using System.Buffers.Binary;
using System.IO.Compression;

namespace Vlm.Vision.Codecs;

/// <summary>Writes 8-bit L, LA, RGB and RGBA PNGs (non-interlaced, one IDAT, per-row filter chosen by the
/// usual minimum-sum-of-absolute-values heuristic). Meant for demo outputs and tests.</summary>
public static class PngEncoder
{
    public static byte[] Encode(Image image, CompressionLevel level = CompressionLevel.Optimal)
    {
        if (image.BitDepth != 8 || image.Mode is not (PixelMode.L or PixelMode.LA or PixelMode.RGB or PixelMode.RGBA))
            throw new NotSupportedException($"PNG writer handles 8-bit L, LA, RGB, RGBA; got {image}");
        int c = image.Channels, w = image.Width, h = image.Height, rowBytes = w * c;
        var ms = new MemoryStream();
        ms.Write(PngDecoder.Signature);
        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)w);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr[4..], (uint)h);
        ihdr[8] = 8;
        ihdr[9] = image.Mode switch { PixelMode.L => 0, PixelMode.LA => 4, PixelMode.RGB => 2, _ => 6 };
        WriteChunk(ms, "IHDR", ihdr);

        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, level, leaveOpen: true))
        {
            var prev = new byte[rowBytes];
            var best = new byte[rowBytes + 1];
            var trial = new byte[rowBytes + 1];
            for (int y = 0; y < h; y++)
            {
                var cur = image.Data.AsSpan(y * rowBytes, rowBytes);
                long bestScore = long.MaxValue;
                for (int f = 0; f < 5; f++)
                {
                    long score = Filter(f, cur, prev, c, trial);
                    if (score < bestScore) { bestScore = score; (best, trial) = (trial, best); }
                }
                zs.Write(best);
                cur.CopyTo(prev);
            }
        }
        WriteChunk(ms, "IDAT", z.GetBuffer().AsSpan(0, (int)z.Length));
        WriteChunk(ms, "IEND", []);
        return ms.ToArray();
    }

    public static void Save(Image image, string path) => File.WriteAllBytes(path, Encode(image));

    /// <summary>Filters one row into <paramref name="o"/> (filter byte first); returns the heuristic score.</summary>
    private static long Filter(int f, ReadOnlySpan<byte> cur, ReadOnlySpan<byte> prev, int bpp, Span<byte> o)
    {
        o[0] = (byte)f;
        long score = 0;
        for (int i = 0; i < cur.Length; i++)
        {
            int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], cc = i >= bpp ? prev[i - bpp] : 0;
            int pred = f switch
            {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) >> 1,
                _ => Paeth(a, b, cc),
            };
            byte v = (byte)(cur[i] - pred);
            o[i + 1] = v;
            score += (sbyte)v < 0 ? -(sbyte)v : v;
        }
        return score;
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(head, (uint)data.Length);
        for (int i = 0; i < 4; i++) head[4 + i] = (byte)type[i];
        s.Write(head);
        s.Write(data);
        var crcIn = new byte[4 + data.Length];
        head[4..].CopyTo(crcIn);
        data.CopyTo(crcIn.AsSpan(4));
        Span<byte> crc = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, PngDecoder.Crc32(crcIn));
        s.Write(crc);
    }
}
