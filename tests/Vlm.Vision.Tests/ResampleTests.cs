using Vlm.Core;

namespace Vlm.Vision.Tests;

public class ResampleTests
{
    public static TheoryData<int> Cases() => new(Enumerable.Range(0, TestData.Meta.GetProperty("resample").GetArrayLength()));

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesPillowResize(int i)
    {
        var meta = TestData.Meta.GetProperty("resample")[i];
        var src = TestData.Expected[$"resample.{i}.src"];
        var want = TestData.Expected[$"resample.{i}.out"];
        var img = Image.FromTensor(src);
        var filter = Enum.Parse<ResampleFilter>(meta.GetProperty("filter").GetString()!, ignoreCase: true);
        var got = Resampler.Resize(img, meta.GetProperty("width").GetInt32(), meta.GetProperty("height").GetInt32(), filter);
        var gotT = Tensor.FromBytes(got.Data, DType.UInt8, got.Height, got.Width, got.Channels);
        TestData.Equal(want, gotT, $"case {i} {meta}");
    }

    [Fact]
    public void FastPathEqualsReference_OnRandomSizes()
    {
        var rng = new Random(11);
        for (int t = 0; t < 60; t++)
        {
            int w = rng.Next(1, 90), h = rng.Next(1, 90), ow = rng.Next(1, 120), oh = rng.Next(1, 120), c = rng.Next(1, 5);
            var data = new byte[w * h * c];
            rng.NextBytes(data);
            var f = (ResampleFilter)new[] { 1, 2, 3, 4, 5 }[rng.Next(5)];
            var fast = Resampler.Convolve(data, w, h, c, ow, oh, f);
            var reference = Resampler.ConvolveReference(data, w, h, c, ow, oh, f);
            Assert.True(fast.AsSpan().SequenceEqual(reference), $"{w}x{h}x{c} -> {ow}x{oh} {f}");
        }
    }

    [Fact]
    public void LargeImage_FastPathEqualsReference()
    {
        // big enough for the parallel, vectorised row kernel
        var rng = new Random(3);
        var data = new byte[640 * 480 * 3];
        rng.NextBytes(data);
        var fast = Resampler.Convolve(data, 640, 480, 3, 384, 288, ResampleFilter.Bicubic);
        var reference = Resampler.ConvolveReference(data, 640, 480, 3, 384, 288, ResampleFilter.Bicubic);
        Assert.True(fast.AsSpan().SequenceEqual(reference));
    }

    [Fact]
    public void SameSize_IsIdentity_AndBadSizesThrow()
    {
        var img = new Image(3, 2, PixelMode.RGB, Enumerable.Range(0, 18).Select(i => (byte)(i * 13)).ToArray());
        Assert.Equal(img.Data, Resampler.Resize(img, 3, 2).Data);
        Assert.Throws<ArgumentException>(() => Resampler.Resize(img, 0, 2));
        Assert.Throws<NotSupportedException>(() => Resampler.Resize(new Image(2, 2, PixelMode.L, new ushort[4]), 3, 3));
    }

    [Fact]
    public void BicubicKernel_HandValues()
    {
        // Keys cubic, a = -0.5: k(0)=1, k(±1)=0, k(±2)=0, k(0.5)=0.5625, k(1.5)=-0.0625
        Assert.Equal(1.0, Resampler.Kernel(ResampleFilter.Bicubic, 0));
        Assert.Equal(0.0, Resampler.Kernel(ResampleFilter.Bicubic, 1));
        Assert.Equal(0.0, Resampler.Kernel(ResampleFilter.Bicubic, -2));
        Assert.Equal(0.5625, Resampler.Kernel(ResampleFilter.Bicubic, 0.5), 12);
        Assert.Equal(-0.0625, Resampler.Kernel(ResampleFilter.Bicubic, -1.5), 12);
        Assert.Equal(0.25, Resampler.Kernel(ResampleFilter.Bilinear, 0.75), 12);
    }

    [Fact]
    public void BilevelImages_AreResizedNearest_LikePillowMode1()
    {
        // Pillow: Image.open(ct0_d1_9x17_plain.png) is mode "1"; .resize((5, 7), BICUBIC) falls back to NEAREST.
        int[,] want =
        {
            { 1, 1, 1, 0, 0 }, { 0, 1, 1, 0, 0 }, { 1, 1, 1, 0, 0 }, { 1, 0, 0, 1, 1 }, { 1, 1, 1, 1, 0 }, { 1, 1, 1, 1, 0 }, { 0, 1, 0, 0, 0 },
        };
        var img = ImageDecoder.Decode(Path.Combine(TestData.Dir, "png", "ct0_d1_9x17_plain.png"));
        var r = Resampler.Resize(img, 5, 7, ResampleFilter.Bicubic);
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 5; x++) Assert.Equal(want[y, x] * 255, r.Data[y * 5 + x]);
    }
}
