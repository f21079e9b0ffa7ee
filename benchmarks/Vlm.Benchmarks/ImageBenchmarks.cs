using BenchmarkDotNet.Attributes;
using Vlm.Vision;
using Vlm.Vision.Codecs;
using Vlm.Vision.Processing;

namespace Vlm.Benchmarks;

/// <summary>
/// Image pipeline costs on a 640x480 JPEG (Data/photo640x480.jpg, made by Data/make_photo.py): TurboJPEG decode,
/// Pillow-exact bicubic resize to BridgeTower's 384x288, the full BridgeTower preprocess as BridgeTowerProcessor calls it
/// (center crop to 288x288, rescale, normalise, pad), the per-pixel reference resampler for comparison, and PNG decode.
/// </summary>
[MemoryDiagnoser]
public class ImageBenchmarks
{
    private byte[] _jpeg = [];
    private byte[] _png = [];
    private Image _rgb = null!;
    private readonly BridgeTowerImageProcessor _bridgeTower = new();

    [GlobalSetup]
    public void Setup()
    {
        string dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "Vlm.slnx"))) dir = Path.GetDirectoryName(dir) ?? throw new DirectoryNotFoundException("repository root (Vlm.slnx) not found");
        _jpeg = File.ReadAllBytes(Path.Combine(dir, "benchmarks", "Vlm.Benchmarks", "Data", "photo640x480.jpg"));
        _rgb = ImageDecoder.Decode(_jpeg);
        _png = PngEncoder.Encode(_rgb);
    }

    [Benchmark]
    public Image DecodeJpeg() => ImageDecoder.Decode(_jpeg);

    [Benchmark]
    public Image DecodePng() => ImageDecoder.Decode(_png);

    [Benchmark]
    public Image ResizeBicubic() => Resampler.Resize(_rgb, 384, 288, ResampleFilter.Bicubic);

    [Benchmark]
    public byte[] ResizeBicubicReference() => Resampler.ConvolveReference(_rgb.Data, 640, 480, 3, 384, 288, ResampleFilter.Bicubic);

    /// <summary>The whole path from file bytes to (1, 3, 288, 288) pixel values.</summary>
    [Benchmark(Baseline = true)]
    public ProcessorOutput DecodeAndPreprocess() => _bridgeTower.Preprocess([ImageDecoder.Decode(_jpeg)], doCenterCrop: true);
}
