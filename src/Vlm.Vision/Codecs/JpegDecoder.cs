using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Vlm.Vision.Codecs;

/// <summary>
/// JPEG through libjpeg-turbo's TurboJPEG API (libturbojpeg.so.0), the same library Pillow links on Debian, with
/// the same defaults (accurate integer IDCT, fancy upsampling), so baseline and progressive files decode to
/// Pillow's pixels. Grayscale files give mode L, colour files RGB, Adobe CMYK/YCCK files CMYK (un-inverted as
/// Pillow does). The EXIF orientation (APP1) is read; it is applied only when <see cref="DecodeOptions"/> says so.
/// </summary>
public static unsafe class JpegDecoder
{
    private const int TJPF_RGB = 0, TJPF_GRAY = 6, TJPF_CMYK = 11;
    private const int TJCS_GRAY = 2, TJCS_CMYK = 3, TJCS_YCCK = 4;
    private const int TJERR_WARNING = 0;
    // TurboJPEG 2.1+: refuse progressive files with more than 500 scans (a known CPU-exhaustion trick); older
    // libraries ignore unknown flags. Real images have ~10 scans, so Pillow-equal output is unaffected.
    private const int TJFLAG_LIMITSCANS = 32768;

    // A Huffman-coded block costs at least one bit, and the sparsest legal layout (a DC-only scan of a 2×2-subsampled
    // component) codes one block per 256 pixels, so a real file has ≥ pixels / 2048 bytes. Headers promising more
    // are truncated or hostile: refuse them before allocating the output.
    private const long MaxPixelsPerByte = 4096;

    internal sealed class Api
    {
        public delegate* unmanaged[Cdecl]<nint> InitDecompress;
        public delegate* unmanaged[Cdecl]<nint, byte*, nuint, int*, int*, int*, int*, int> DecompressHeader3;
        public delegate* unmanaged[Cdecl]<nint, byte*, nuint, byte*, int, int, int, int, int, int> Decompress2;
        public delegate* unmanaged[Cdecl]<nint, byte*> GetErrorStr2;
        public delegate* unmanaged[Cdecl]<nint, int> GetErrorCode;
        public delegate* unmanaged[Cdecl]<nint, int> Destroy;
    }

    private static readonly string[] DefaultNames = OperatingSystem.IsWindows() ? ["turbojpeg.dll", "turbojpeg"]
        : OperatingSystem.IsMacOS() ? ["libturbojpeg.0.dylib", "libturbojpeg.dylib"]
        : ["libturbojpeg.so.0", "libturbojpeg.so"];

    private static readonly Lazy<(Api? Api, string Error)> Lib = new(() => Load(DefaultNames));

    /// <summary>True when libturbojpeg could be loaded.</summary>
    public static bool IsAvailable => Lib.Value.Api is not null;

    /// <summary>Loads the first library of <paramref name="names"/> that exists; the string says why none did.</summary>
    internal static (Api?, string) Load(string[] names)
    {
        foreach (var n in names)
        {
            if (!NativeLibrary.TryLoad(n, typeof(JpegDecoder).Assembly, null, out var h)) continue;
            try
            {
                var api = new Api
                {
                    InitDecompress = (delegate* unmanaged[Cdecl]<nint>)NativeLibrary.GetExport(h, "tjInitDecompress"),
                    DecompressHeader3 = (delegate* unmanaged[Cdecl]<nint, byte*, nuint, int*, int*, int*, int*, int>)NativeLibrary.GetExport(h, "tjDecompressHeader3"),
                    Decompress2 = (delegate* unmanaged[Cdecl]<nint, byte*, nuint, byte*, int, int, int, int, int, int>)NativeLibrary.GetExport(h, "tjDecompress2"),
                    GetErrorStr2 = (delegate* unmanaged[Cdecl]<nint, byte*>)NativeLibrary.GetExport(h, "tjGetErrorStr2"),
                    GetErrorCode = (delegate* unmanaged[Cdecl]<nint, int>)NativeLibrary.GetExport(h, "tjGetErrorCode"),
                    Destroy = (delegate* unmanaged[Cdecl]<nint, int>)NativeLibrary.GetExport(h, "tjDestroy"),
                };
                return (api, "");
            }
            catch (EntryPointNotFoundException e)
            {
                return (null, $"{n} is too old (TurboJPEG 2.0+ API needed: {e.Message})");
            }
        }
        return (null, "libturbojpeg (libjpeg-turbo's TurboJPEG library) was not found");
    }

    private static Api Require(string origin) => Lib.Value.Api ?? throw MissingLibrary(origin, Lib.Value.Error);

    internal static DllNotFoundException MissingLibrary(string origin, string why) =>
        new($"{origin}: cannot decode JPEG: {why}. Install it with `apt-get install libturbojpeg0` (Debian/Ubuntu) or your platform's libjpeg-turbo package.");

    public static Image Decode(ReadOnlySpan<byte> jpeg, string origin = "<jpeg>", DecodeOptions? options = null)
    {
        options ??= DecodeOptions.Default;
        var (orientation, adobe, huffman) = ScanMarkers(jpeg, origin);
        var api = Require(origin);
        nint h = api.InitDecompress();
        if (h == 0) throw new InvalidOperationException("tjInitDecompress failed");
        try
        {
            fixed (byte* src = jpeg)
            {
                int w, ht, subsamp, cs;
                if (api.DecompressHeader3(h, src, (nuint)jpeg.Length, &w, &ht, &subsamp, &cs) != 0)
                    throw new InvalidDataException($"{origin}: invalid JPEG header: {Error(api, h)}");
                options.CheckPixels(w, ht, origin, "JPEG");
                if (huffman && (long)w * ht > MaxPixelsPerByte * jpeg.Length)
                    throw new InvalidDataException($"{origin}: corrupt JPEG: a {w}x{ht} image cannot fit in {jpeg.Length} bytes (truncated?)");
                (PixelMode mode, int pf) = cs switch
                {
                    TJCS_GRAY => (PixelMode.L, TJPF_GRAY),
                    TJCS_CMYK or TJCS_YCCK => (PixelMode.CMYK, TJPF_CMYK),
                    _ => (PixelMode.RGB, TJPF_RGB),
                };
                int c = Image.ChannelsOf(mode);
                var dst = new byte[(long)w * ht * c];
                fixed (byte* d = dst)
                {
                    if (api.Decompress2(h, src, (nuint)jpeg.Length, d, w, w * c, ht, pf, TJFLAG_LIMITSCANS) != 0)
                    {
                        string msg = Error(api, h);
                        // libjpeg warnings (e.g. extraneous bytes before a marker) are ignored by Pillow too; running
                        // out of data is an error there ("image file is truncated"), so it is one here.
                        if (api.GetErrorCode(h) != TJERR_WARNING || msg.Contains("Premature end", StringComparison.OrdinalIgnoreCase))
                            throw new InvalidDataException($"{origin}: corrupt JPEG: {msg}");
                    }
                }
                // Adobe (Photoshop) CMYK JPEGs store inverted ink; Pillow reads them with rawmode CMYK;I.
                if (mode == PixelMode.CMYK && adobe)
                    for (int i = 0; i < dst.Length; i++) dst[i] = (byte)(255 - dst[i]);
                var img = new Image(w, ht, mode, dst) { Orientation = orientation, Source = origin };
                return options.ApplyExifOrientation ? img.ApplyOrientation() : img;
            }
        }
        finally
        {
            api.Destroy(h);
        }
    }

    private static string Error(Api api, nint h) => Marshal.PtrToStringUTF8((nint)api.GetErrorStr2(h)) ?? "unknown error";

    /// <summary>Walks the marker segments before the scan data for APP1 Exif (orientation) and APP14 Adobe.</summary>
    private static (int Orientation, bool Adobe, bool Huffman) ScanMarkers(ReadOnlySpan<byte> b, string origin)
    {
        if (b.Length < 4 || b[0] != 0xFF || b[1] != 0xD8) throw new InvalidDataException($"{origin}: invalid JPEG: missing SOI marker");
        int orientation = 1; bool adobe = false, gotExif = false, huffman = false;
        int p = 2;
        while (p + 4 <= b.Length)
        {
            if (b[p] != 0xFF) break; // not at a marker: leave the rest to libjpeg
            byte m = b[p + 1];
            if (m == 0xFF) { p++; continue; } // fill byte
            if (m == 0xDA || m == 0xD9) break; // SOS / EOI
            if (m is 0x01 or (>= 0xD0 and <= 0xD7)) { p += 2; continue; } // markers without length
            int len = BinaryPrimitives.ReadUInt16BigEndian(b[(p + 2)..]);
            if (len < 2 || p + 2 + len > b.Length) break;
            var seg = b.Slice(p + 4, len - 2);
            if (m == 0xE1 && !gotExif && seg.Length >= 6 && seg[..6].SequenceEqual("Exif\0\0"u8)) { orientation = Exif.ReadOrientation(seg); gotExif = true; }
            if (m is 0xC0 or 0xC1 or 0xC2) huffman = true;
            if (m == 0xEE && seg.Length >= 5 && seg[..5].SequenceEqual("Adobe"u8)) adobe = true;
            p += 2 + len;
        }
        return (orientation, adobe, huffman);
    }
}
