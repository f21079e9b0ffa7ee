namespace Vlm.Vision.Codecs;

/// <summary>
/// Binary PGM (P5) and PPM (P6). maxval 255 is stored as is; other maxvals are rescaled as Pillow 9.4's PpmDecoder
/// does (round-half-even of v / maxval · out_max): to 8 bits for maxval &lt; 256 and for 16-bit PPM, and to a
/// 16-bit gray image (Pillow mode I) for 16-bit PGM. 16-bit PPM with maxval 65535 keeps the high byte (RGB;16B).
/// </summary>
public static class PnmDecoder
{
    public static Image Decode(ReadOnlySpan<byte> b, string origin = "<pnm>", DecodeOptions? options = null)
    {
        options ??= DecodeOptions.Default;
        if (b.Length < 2 || b[0] != (byte)'P' || (b[1] != (byte)'5' && b[1] != (byte)'6'))
            throw new NotSupportedException($"{origin}: only binary PGM (P5) and PPM (P6) are supported");
        bool color = b[1] == (byte)'6';
        int p = 2;
        long w = ReadInt(b, ref p, origin), h = ReadInt(b, ref p, origin), maxval = ReadInt(b, ref p, origin);
        if (p >= b.Length || !IsSpace(b[p])) throw Bad(origin, "header must end with one whitespace byte");
        p++;
        if (maxval is < 1 or > 65535) throw Bad(origin, $"maxval {maxval} outside 1..65535");
        options.CheckPixels(w, h, origin, color ? "PPM" : "PGM");
        int c = color ? 3 : 1, bytesPer = maxval < 256 ? 1 : 2;
        long n = w * h * c;
        if (p + n * bytesPer > b.Length) throw Bad(origin, $"pixel data needs {n * bytesPer} bytes, the file has {b.Length - p} (truncated)");
        var src = b.Slice(p, (int)(n * bytesPer));
        var mode = color ? PixelMode.RGB : PixelMode.L;
        if (!color && bytesPer == 2)
        {
            var d16 = new ushort[n];
            for (long i = 0; i < n; i++) d16[i] = (ushort)Scale((src[(int)(2 * i)] << 8) | src[(int)(2 * i + 1)], maxval, 65535);
            return new Image((int)w, (int)h, mode, d16) { Source = origin };
        }
        var d = new byte[n];
        if (bytesPer == 1)
        {
            if (maxval == 255) src.CopyTo(d);
            else for (long i = 0; i < n; i++) d[i] = (byte)Scale(src[(int)i], maxval, 255);
        }
        else if (maxval == 65535)
            for (long i = 0; i < n; i++) d[i] = src[(int)(2 * i)];
        else
            for (long i = 0; i < n; i++) d[i] = (byte)Scale((src[(int)(2 * i)] << 8) | src[(int)(2 * i + 1)], maxval, 255);
        return new Image((int)w, (int)h, mode, d) { Source = origin };
    }

    // Python's min(out_max, round(value / maxval * out_max)): float64 division then multiply, ties to even.
    private static int Scale(int v, long maxval, int outMax) =>
        (int)Math.Min(outMax, Math.Round(v / (double)maxval * outMax, MidpointRounding.ToEven));

    private static bool IsSpace(byte c) => c is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0B or 0x0C;

    private static long ReadInt(ReadOnlySpan<byte> b, ref int p, string origin)
    {
        while (p < b.Length)
        {
            if (IsSpace(b[p])) p++;
            else if (b[p] == (byte)'#') { while (p < b.Length && b[p] != (byte)'\n' && b[p] != (byte)'\r') p++; }
            else break;
        }
        long v = 0; int digits = 0;
        while (p < b.Length && b[p] is >= (byte)'0' and <= (byte)'9')
        {
            v = v * 10 + (b[p] - '0');
            if (v > int.MaxValue) throw Bad(origin, "header number too large");
            p++; digits++;
        }
        if (digits == 0) throw Bad(origin, "expected a number in the header");
        return v;
    }

    private static InvalidDataException Bad(string origin, string what) => new($"{origin}: invalid PNM: {what}");
}
