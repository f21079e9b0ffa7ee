using System.Buffers.Binary;
using Vlm.Vision.Codecs;

namespace Vlm.Vision.Tests;

/// <summary>
/// Mutation fuzzing: thousands of damaged PNG/JPEG/BMP files must each decode or fail with one of the documented
/// exception types (InvalidDataException, NotSupportedException) — no crash, no other exception, no hang.
/// PNG mutants get their CRCs repaired half of the time so that the damage reaches the zlib and filter code.
/// </summary>
public class FuzzTests
{
    private static readonly string[] Seeds =
    [
        "png/ct2_d8_13x11_adam7.png", "png/ct3_d4_13x11_adam7.png", "png/ct6_d16_13x11_plain.png", "png/ct0_d1_9x17_adam7.png",
        "png/ct4_d8_13x11_plain.png", "formats/baseline.jpg", "formats/progressive.jpg", "formats/gray.jpg", "formats/orient6.jpg",
        "formats/p8.bmp", "formats/rgb24.bmp", "formats/rgb16.ppm",
    ];

    [Fact]
    public void MutatedFiles_OnlyDocumentedExceptions()
    {
        var rng = new Random(2024);
        var seeds = Seeds.Select(s => File.ReadAllBytes(Path.Combine(TestData.Dir, s))).ToArray();
        int decoded = 0, rejected = 0;
        var options = new DecodeOptions { MaxPixels = 1 << 22 };
        for (int iter = 0; iter < 2400; iter++)
        {
            int si = rng.Next(seeds.Length);
            if (!JpegDecoder.IsAvailable && Seeds[si].EndsWith(".jpg")) continue;
            var data = Mutate(seeds[si], rng);
            if (Seeds[si].EndsWith(".png") && rng.Next(2) == 0) FixCrcs(data);
            try
            {
                var img = ImageDecoder.Decode(data, $"fuzz#{iter}", options);
                Assert.True(img.Width > 0 && img.Height > 0);
                decoded++;
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                Assert.Contains($"fuzz#{iter}", e.Message);
                rejected++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {iter} (seed {Seeds[si]}): unexpected {e.GetType().Name}: {e.Message}");
            }
        }
        Assert.True(decoded > 100 && rejected > 100, $"decoded {decoded}, rejected {rejected}: the mutations should hit both paths");
    }

    private static byte[] Mutate(byte[] seed, Random rng)
    {
        var d = new List<byte>(seed);
        int n = 1 + rng.Next(4);
        for (int k = 0; k < n && d.Count > 0; k++)
        {
            int p = rng.Next(d.Count);
            switch (rng.Next(6))
            {
                case 0: d[p] ^= (byte)(1 << rng.Next(8)); break;
                case 1: d[p] = (byte)rng.Next(256); break;
                case 2: d.RemoveRange(p, Math.Min(d.Count - p, 1 + rng.Next(16))); break;
                case 3: d.InsertRange(p, Enumerable.Range(0, 1 + rng.Next(8)).Select(_ => (byte)rng.Next(256))); break;
                case 4: d.RemoveRange(p, d.Count - p); break; // truncate
                default: d[p] = rng.Next(2) == 0 ? (byte)0xFF : (byte)0; break;
            }
        }
        return d.ToArray();
    }

    private static void FixCrcs(byte[] d)
    {
        int p = 8;
        while (p + 12 <= d.Length)
        {
            uint len = BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(p));
            if (len > d.Length || p + 12L + len > d.Length) return;
            BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(p + 8 + (int)len), PngDecoder.Crc32(d.AsSpan(p + 4, 4 + (int)len)));
            p += 12 + (int)len;
        }
    }
}
