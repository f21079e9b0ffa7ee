using Vlm.Vision.Codecs;

namespace Vlm.Vision;

/// <summary>
/// Decodes PNG, JPEG, BMP and binary PGM/PPM, picking the format from the magic bytes (never the file name).
/// Errors: <see cref="InvalidDataException"/> for corrupt, truncated or oversized data,
/// <see cref="NotSupportedException"/> for formats or variants not handled, <see cref="DllNotFoundException"/>
/// when a JPEG arrives and libturbojpeg is missing; every message names the file.
/// </summary>
public static class ImageDecoder
{
    public static Image Decode(string path, DecodeOptions? options = null)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"image file not found: {path}", path);
        }
        return Decode(bytes, path, options);
    }

    public static Image Decode(ReadOnlySpan<byte> bytes, string origin = "<bytes>", DecodeOptions? options = null)
    {
        if (bytes.Length == 0) throw new InvalidDataException($"{origin}: empty file");
        return Sniff(bytes) switch
        {
            ImageFormat.Png => PngDecoder.Decode(bytes, origin, options),
            ImageFormat.Jpeg => JpegDecoder.Decode(bytes, origin, options),
            ImageFormat.Bmp => BmpDecoder.Decode(bytes, origin, options),
            ImageFormat.Pnm => PnmDecoder.Decode(bytes, origin, options),
            _ => throw new NotSupportedException($"{origin}: unrecognised image format (starts with {Convert.ToHexString(bytes[..Math.Min(8, bytes.Length)])}); PNG, JPEG, BMP, PGM/PPM are supported"),
        };
    }

    public static ImageFormat Sniff(ReadOnlySpan<byte> b)
    {
        // A prefix of the PNG signature is a truncated PNG: let the PNG decoder say so.
        if (b.Length > 0 && b[..Math.Min(8, b.Length)].SequenceEqual(PngDecoder.Signature[..Math.Min(8, b.Length)])) return ImageFormat.Png;
        if (b.Length >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat.Jpeg;
        if (b.Length >= 2 && b[0] == (byte)'B' && b[1] == (byte)'M') return ImageFormat.Bmp;
        if (b.Length >= 3 && b[0] == (byte)'P' && b[1] is (byte)'5' or (byte)'6' && b[2] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t' or (byte)'#')
            return ImageFormat.Pnm;
        return ImageFormat.Unknown;
    }
}

public enum ImageFormat { Unknown, Png, Jpeg, Bmp, Pnm }
