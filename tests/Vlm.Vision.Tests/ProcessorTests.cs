using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.TestSupport;
using Vlm.Vision.Processing;

namespace Vlm.Vision.Tests;

public sealed class CasesOutput : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "vlm-vision-cases-" + Guid.NewGuid().ToString("N")[..8]);
    public CasesOutput() => ImageCases.Run(TestData.FixtureDir, Dir);
    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

public class ProcessorTests(CasesOutput cases) : IClassFixture<CasesOutput>
{
    public static TheoryData<string> Runs()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestData.FixtureDir, "case.json")));
        return new(doc.RootElement.GetProperty("runs").EnumerateObject().Select(p => p.Name).ToList());
    }

    /// <summary>End to end from the image files (our decoders) through ImageCases.Run.</summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void ImageCasesRun_MatchesFixture(string run)
    {
        var want = SafeTensors.Load(Path.Combine(TestData.FixtureDir, run, "outputs.safetensors"));
        var got = SafeTensors.Load(Path.Combine(cases.Dir, run, "outputs.safetensors"));
        Assert.Equal(want.Keys.Order(), got.Keys.Order());
        foreach (var (name, w) in want)
        {
            if (w.DType == DType.Float32) TensorAssert.Close(w, got[name], atol: 1e-5f, rtol: 0, what: $"{run}/{name}");
            else TestData.Equal(w, got[name], $"{run}/{name}");
        }
    }

    /// <summary>Independent of our decoders: feeds Pillow's decoded pixels from decoded.safetensors.</summary>
    [Fact]
    public void Processors_OnPillowDecodedPixels_MatchFixture()
    {
        var dec = SafeTensors.Load(Path.Combine(TestData.FixtureDir, "decoded.safetensors"));
        string[] keys = ["rgb_png", "rgba_png", "gray_png", "rgb_jpeg"];
        var rgb = keys.Select(k => Image.FromTensor(dec["rgb." + k])).ToList();
        var raw = keys.Select(k => Image.FromTensor(dec["decoded." + k])).ToList();

        var bt = (BridgeTowerImageProcessor)ImageProcessorBase.FromConfigFile(Path.Combine(TestData.FixtureDir, "bridgetower_small", "preprocessor_config.json"));
        var o = bt.Preprocess(rgb);
        var want = SafeTensors.Load(Path.Combine(TestData.FixtureDir, "bridgetower_small", "outputs.safetensors"));
        TensorAssert.Close(want["pixel_values"], o.PixelValues, 1e-5f, 0, "bridgetower_small pixel_values");
        Assert.Equal(DType.Int64, o.PixelMask!.DType);
        TensorAssert.Close(want["pixel_mask"], o.PixelMask, 0, 0, "pixel_mask");
        for (int i = 0; i < keys.Length; i++) TestData.Equal(want["resized." + keys[i]], o.Resized[i].ToTensor(), "resized." + keys[i]);

        var blip = ImageProcessorBase.FromConfigFile(Path.Combine(TestData.FixtureDir, "blip_small", "preprocessor_config.json"));
        var ob = blip.Preprocess(raw);
        var wantB = SafeTensors.Load(Path.Combine(TestData.FixtureDir, "blip_small", "outputs.safetensors"));
        TensorAssert.Close(wantB["pixel_values"], ob.PixelValues, 1e-5f, 0, "blip_small pixel_values");
        Assert.Null(ob.PixelMask);
    }

    [Fact]
    public void BridgeTower_RejectsNonRgb_LikeHF()
    {
        var dec = SafeTensors.Load(Path.Combine(TestData.FixtureDir, "decoded.safetensors"));
        var bt = new BridgeTowerImageProcessor();
        var rgba = Image.FromTensor(dec["decoded.rgba_png"]);
        var gray = Image.FromTensor(dec["decoded.gray_png"]);
        var e1 = Assert.Throws<ArgumentException>(() => bt.Preprocess([rgba]));
        Assert.Contains("Unable to infer channel dimension format", e1.Message);
        Assert.Contains("RGBA", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => bt.Preprocess([gray]));
        Assert.Contains("Unsupported number of image dimensions: 2", e2.Message);
    }

    [Theory]
    // (h, w, shortest, divisor) -> HF get_resize_output_image_size, values worked by hand from the Python source
    [InlineData(160, 200, 64, 32, 64, 64)]    // scale 0.4: 64 x 80 -> floor to 32s
    [InlineData(100, 30, 288, 32, 448, 128)]  // 960 x 288 capped at int(1333/800*288)=479: 479 x 143.7 -> 479 x 144
    [InlineData(56, 64, 288, 32, 288, 320)]   // 288 x 329.14 -> 329 -> 320
    [InlineData(480, 640, 288, 32, 288, 384)]
    [InlineData(37, 61, 40, 8, 40, 64)]       // 40 x 65.9 -> 66 -> 64
    [InlineData(1, 1000, 64, 32, 0, 96)]      // degenerate: height floors to 0
    public void BridgeTower_OutputSize(int h, int w, int s, int d, int eh, int ew) =>
        Assert.Equal((eh, ew), BridgeTowerImageProcessor.OutputSize(h, w, s, d));

    [Fact]
    public void BridgeTower_TinyImage_ClearError()
    {
        var img = new Image(1000, 1, PixelMode.RGB, new byte[3000]);
        var e = Assert.Throws<ArgumentException>(() => new BridgeTowerImageProcessor { ShortestEdge = 64 }.Preprocess([img]));
        Assert.Contains("too small", e.Message);
    }

    [Fact]
    public void CenterCrop_CropsAndPadsLikeHF()
    {
        // 2x5 single-row-pattern image, crop 4x3: height padded (ceil((4-2)/2)=1 row on top), width cropped from 1.
        var data = Enumerable.Range(1, 10).Select(i => (byte)i).ToArray();
        var img = new Image(5, 2, PixelMode.L, data);
        var c = ImageTransforms.CenterCrop(img, 4, 3);
        Assert.Equal((3, 4), (c.Width, c.Height));
        Assert.Equal(new byte[] { 0, 0, 0, 2, 3, 4, 7, 8, 9, 0, 0, 0 }, c.Data);
        // odd difference: 3 rows into 6 -> top pad ceil(3/2)=2, bottom 1
        var img2 = new Image(1, 3, PixelMode.L, [1, 2, 3]);
        Assert.Equal(new byte[] { 0, 0, 1, 2, 3, 0 }, ImageTransforms.CenterCrop(img2, 6, 1).Data);
        // odd crop of even size: top = (4-1)//2 = 1
        var img3 = new Image(1, 4, PixelMode.L, [1, 2, 3, 4]);
        Assert.Equal(new byte[] { 2 }, ImageTransforms.CenterCrop(img3, 1, 1).Data);
    }

    [Fact]
    public void RescaleNormalize_FollowsNumpyDtypes()
    {
        // float64 multiply then float32 cast, then float32 (x - mean) / std
        var img = new Image(2, 1, PixelMode.RGB, [0, 128, 255, 7, 200, 31]);
        var o = new BlipImageProcessor { DoResize = false }.Preprocess([img]).PixelValues;
        var got = o.ToArray();
        var mean = ClipConstants.Mean.Select(v => (float)v).ToArray();
        var std = ClipConstants.Std.Select(v => (float)v).ToArray();
        byte[] px = img.Data;
        for (int ch = 0; ch < 3; ch++)
            for (int x = 0; x < 2; x++)
            {
                float r = (float)(px[x * 3 + ch] * (1.0 / 255));
                Assert.Equal((r - mean[ch]) / std[ch], got[ch * 2 + x]);
            }
    }

    [Fact]
    public void Config_Errors_NameTheFile()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-vision-cfg").FullName;
        try
        {
            var p = Path.Combine(dir, "preprocessor_config.json");
            File.WriteAllText(p, "{\"image_processor_type\": \"CLIPImageProcessor\"}");
            Assert.Contains(p, Assert.Throws<NotSupportedException>(() => ImageProcessorBase.FromConfigFile(p)).Message);
            File.WriteAllText(p, "{\"image_processor_type\": \"BlipImageProcessor\", \"size\": {\"shortest_edge\": 3}}");
            Assert.Contains(p, Assert.Throws<InvalidDataException>(() => ImageProcessorBase.FromConfigFile(p)).Message);
            File.WriteAllText(p, "{not json");
            Assert.Contains(p, Assert.Throws<InvalidDataException>(() => ImageProcessorBase.FromConfigFile(p)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Blip_BareNumberSize_IsSquare()
    {
        using var doc = JsonDocument.Parse("{\"image_processor_type\": \"BlipImageProcessor\", \"size\": 24}");
        var p = (BlipImageProcessor)ImageProcessorBase.FromJson(doc.RootElement);
        Assert.Equal((24, 24), (p.Height, p.Width));
        var o = p.Preprocess(new Image(5, 3, PixelMode.L, new byte[15]));
        Assert.Equal(new[] { 1, 3, 24, 24 }, o.PixelValues.ShapeArray());
    }

    [Fact]
    public void IsImageCase_OnlyForImageFixtures()
    {
        Assert.True(ImageCases.IsImageCase(TestData.FixtureDir));
        Assert.False(ImageCases.IsImageCase(Fixtures.Path("bridgetower_model")));
        Assert.False(ImageCases.IsImageCase(Path.GetTempPath()));
    }
}
