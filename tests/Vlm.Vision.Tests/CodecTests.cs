using System.IO.Compression;
using Vlm.Core;
using Vlm.Vision.Codecs;

namespace Vlm.Vision.Tests;

public class CodecTests
{
    public static TheoryData<string> PngFiles() => new(Directory.GetFiles(Path.Combine(TestData.Dir, "png"), "*.png").Select(Path.GetFileName).Order()!);
    public static TheoryData<string> OtherFiles() => new(Directory.GetFiles(Path.Combine(TestData.Dir, "formats")).Select(Path.GetFileName).Order()!);

    [Theory]
    [MemberData(nameof(PngFiles))]
    public void PngSuite_MatchesSourceSamplesAndPillow(string name)
    {
        var img = ImageDecoder.Decode(Path.Combine(TestData.Dir, "png", name));
        var exp = TestData.Expected;
        // Raw samples as the generator wrote them (sub-byte gray is widened like Pillow, so compare scaled).
        var raw = exp["raw." + name].ToArray();
        int depth = img.SourceBitDepth;
        bool subByteGray = img.Mode == PixelMode.L && depth < 8;
        Assert.Equal(raw.Length, img.BitDepth == 16 ? img.Data16.Length : img.Data.Length);
        for (int i = 0; i < raw.Length; i++)
        {
            int got = img.BitDepth == 16 ? img.Data16[i] : img.Data[i];
            int want = subByteGray ? (int)raw[i] * (255 / ((1 << depth) - 1)) : (int)raw[i];
            if (got != want) Assert.Fail($"{name}: sample {i} = {got}, expected {want}");
        }
        if (exp.TryGetValue("pil." + name, out var pil) && img.BitDepth == 8 && !(img.Mode == PixelMode.L && depth == 1))
            TestData.Equal(pil, img.ToTensor(), name + " (np.array(Image.open))");
        TestData.Equal(exp["rgb." + name], TestData.Rgb(img), name + " convert('RGB')");
        TestData.Equal(exp["exif." + name], TestData.Rgb(img.ApplyOrientation()), name + " exif_transpose");
    }

    [Theory]
    [MemberData(nameof(OtherFiles))]
    public void OtherFormats_MatchPillow(string name)
    {
        if (name.EndsWith(".jpg") && !JpegDecoder.IsAvailable) return; // reported by JpegLibraryIsInstalled
        var img = ImageDecoder.Decode(Path.Combine(TestData.Dir, "formats", name));
        var exp = TestData.Expected;
        var meta = TestData.Meta.GetProperty("files").GetProperty(name);
        Assert.Equal(meta.GetProperty("width").GetInt32(), img.Width);
        Assert.Equal(meta.GetProperty("height").GetInt32(), img.Height);
        Assert.Equal(meta.GetProperty("orientation").GetInt32(), img.Orientation);
        if (exp.TryGetValue("pil." + name, out var pil) && img.BitDepth == 8 && meta.GetProperty("mode").GetString() != "1")
            TestData.Equal(pil, img.ToTensor(), name + " (np.array(Image.open))");
        TestData.Equal(exp["rgb." + name], TestData.Rgb(img), name + " convert('RGB')");
        TestData.Equal(exp["exif." + name], TestData.Rgb(img.ApplyOrientation()), name + " exif_transpose");
        var applied = ImageDecoder.Decode(Path.Combine(TestData.Dir, "formats", name), new DecodeOptions { ApplyExifOrientation = true });
        TestData.Equal(exp["exif." + name], TestData.Rgb(applied), name + " ApplyExifOrientation");
    }

    [Fact]
    public void MissingJpegLibrary_SaysHowToInstallIt()
    {
        var (api, why) = JpegDecoder.Load(["libturbojpeg-does-not-exist.so.9"]);
        Assert.Null(api);
        var e = JpegDecoder.MissingLibrary("photo.jpg", why);
        Assert.Contains("photo.jpg", e.Message);
        Assert.Contains("apt-get install libturbojpeg0", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void JpegLibraryIsInstalled() => Assert.True(JpegDecoder.IsAvailable, "libturbojpeg.so.0 missing: apt-get install libturbojpeg0");

    [Fact]
    public void FixtureImages_DecodeExactlyAsPillow()
    {
        var dec = Vlm.Core.IO.SafeTensors.Load(Path.Combine(TestData.FixtureDir, "decoded.safetensors"));
        foreach (var (key, file, mode) in new[] { ("rgb_png", "rgb.png", PixelMode.RGB), ("rgba_png", "rgba.png", PixelMode.RGBA), ("gray_png", "gray.png", PixelMode.L), ("rgb_jpeg", "photo.jpg", PixelMode.RGB) })
        {
            var img = ImageDecoder.Decode(Path.Combine(TestData.FixtureDir, "images", file));
            Assert.Equal(mode, img.Mode);
            TestData.Equal(dec["decoded." + key], img.ToTensor(), key + " decode");
            TestData.Equal(dec["rgb." + key], TestData.Rgb(img), key + " convert('RGB')");
        }
    }

    [Theory]
    [InlineData(PixelMode.L)]
    [InlineData(PixelMode.LA)]
    [InlineData(PixelMode.RGB)]
    [InlineData(PixelMode.RGBA)]
    public void PngEncoder_RoundTrips(PixelMode mode)
    {
        var rng = new Random(5);
        foreach (var (w, h) in new[] { (1, 1), (17, 9), (64, 3) })
        {
            var data = new byte[w * h * Image.ChannelsOf(mode)];
            // half noise, half smooth, so every filter type gets chosen somewhere
            for (int i = 0; i < data.Length; i++) data[i] = i % 7 < 3 ? (byte)rng.Next(256) : (byte)(i / 3);
            var img = new Image(w, h, mode, data);
            var back = ImageDecoder.Decode(PngEncoder.Encode(img, CompressionLevel.Fastest));
            Assert.Equal(mode, back.Mode);
            Assert.Equal((w, h), (back.Width, back.Height));
            Assert.Equal(data, back.Data);
        }
    }

    [Fact]
    public void Exif_ReadsBothByteOrdersAndIgnoresGarbage()
    {
        byte[] Le(int o) => [.. "II"u8, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (byte)o, 0, 0, 0, 0, 0, 0, 0];
        byte[] Be(int o) => [.. "MM"u8, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (byte)o, 0, 0, 0, 0, 0, 0];
        for (int o = 1; o <= 8; o++)
        {
            Assert.Equal(o, Exif.ReadOrientation(Le(o)));
            Assert.Equal(o, Exif.ReadOrientation([.. "Exif\0\0"u8, .. Be(o)]));
        }
        Assert.Equal(1, Exif.ReadOrientation(Le(9)));
        Assert.Equal(1, Exif.ReadOrientation("II*\0\xff\xff\xff\x7f"u8));
        Assert.Equal(1, Exif.ReadOrientation([]));
        var truncated = Le(6)[..15];
        Assert.Equal(1, Exif.ReadOrientation(truncated));
    }
}
