namespace Vlm.Vision.Codecs;

/// <summary>Limits and switches shared by every decoder.</summary>
public sealed record DecodeOptions
{
    /// <summary>Pillow's decompression-bomb error threshold (2 × 89,478,485 pixels). Headers that declare more
    /// pixels are rejected before anything is allocated.</summary>
    public const long DefaultMaxPixels = 178_956_970;

    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Rotate/flip by the EXIF orientation tag (Pillow's ImageOps.exif_transpose). Off by default:
    /// Pillow's Image.open and the HF processors leave pixels as stored.</summary>
    public bool ApplyExifOrientation { get; init; }

    public static DecodeOptions Default { get; } = new();

    internal void CheckPixels(long width, long height, string origin, string format)
    {
        if (width <= 0 || height <= 0)
            throw new InvalidDataException($"{origin}: {format} header declares an empty image ({width}x{height})");
        if (width * height > MaxPixels)
            throw new InvalidDataException($"{origin}: {format} image {width}x{height} has {width * height} pixels, more than the limit of {MaxPixels} (decompression bomb?); raise DecodeOptions.MaxPixels to allow it");
    }
}
