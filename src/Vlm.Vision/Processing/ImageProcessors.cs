using System.Text.Json;
using Vlm.Core;

namespace Vlm.Vision.Processing;

/// <summary>What a processor returns: pixel_values (B, 3, H, W) float32 and, for BridgeTower with padding,
/// pixel_mask (B, H, W) int64 (1 = real pixel). Resized / cropped uint8 intermediates are kept per image.</summary>
public sealed record ProcessorOutput(Tensor PixelValues, Tensor? PixelMask, IReadOnlyList<Image> Resized, IReadOnlyList<Image> Cropped);

public interface IImageProcessor
{
    ProcessorOutput Preprocess(IReadOnlyList<Image> images);
}

/// <summary>OPENAI_CLIP_MEAN / OPENAI_CLIP_STD from HF image_utils.</summary>
public static class ClipConstants
{
    public static readonly double[] Mean = [0.48145466, 0.4578275, 0.40821073];
    public static readonly double[] Std = [0.26862954, 0.26130258, 0.27577711];
}

/// <summary>Fields of a <c>preprocessor_config.json</c> shared by the processors here.</summary>
public abstract class ImageProcessorBase : IImageProcessor
{
    public bool DoResize { get; init; } = true;
    public ResampleFilter Resample { get; init; } = ResampleFilter.Bicubic;
    public bool DoRescale { get; init; } = true;
    public double RescaleFactor { get; init; } = 1.0 / 255;
    public bool DoNormalize { get; init; } = true;
    public double[] ImageMean { get; init; } = ClipConstants.Mean;
    public double[] ImageStd { get; init; } = ClipConstants.Std;

    public abstract ProcessorOutput Preprocess(IReadOnlyList<Image> images);

    public ProcessorOutput Preprocess(params Image[] images) => Preprocess((IReadOnlyList<Image>)images);

    // numpy builds float32 arrays from the Python floats: round each to float32 once.
    protected float[] MeanF => CheckLen(ImageMean, "image_mean").Select(v => (float)v).ToArray();
    protected float[] StdF => CheckLen(ImageStd, "image_std").Select(v => (float)v).ToArray();

    private static double[] CheckLen(double[] v, string name) =>
        v.Length == 1 ? [v[0], v[0], v[0]] : v.Length == 3 ? v : throw new ArgumentException($"{name} has {v.Length} values; 3 channels need 1 or 3");

    /// <summary>Reads a processor from a <c>preprocessor_config.json</c>, choosing the class by image_processor_type.</summary>
    public static ImageProcessorBase FromConfigFile(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}"); }
        using (doc) return FromJson(doc.RootElement, path);
    }

    public static ImageProcessorBase FromJson(JsonElement cfg, string origin = "<preprocessor_config>")
    {
        string type = cfg.TryGetProperty("image_processor_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
        return type switch
        {
            "BridgeTowerImageProcessor" => BridgeTowerImageProcessor.FromConfig(cfg, origin),
            "BlipImageProcessor" => BlipImageProcessor.FromConfig(cfg, origin),
            _ => throw new NotSupportedException($"{origin}: image_processor_type '{type}' is not supported (BridgeTowerImageProcessor, BlipImageProcessor)"),
        };
    }

    // ------------------------------------------------------------ JSON helpers
    internal static bool Bool(JsonElement e, string k, bool def, string origin) =>
        !e.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null ? def
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
        : throw new InvalidDataException($"{origin}: '{k}' must be true/false");

    internal static double Num(JsonElement e, string k, double def, string origin) =>
        !e.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null ? def
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble()
        : throw new InvalidDataException($"{origin}: '{k}' must be a number");

    internal static double[] Nums(JsonElement e, string k, double[] def, string origin)
    {
        if (!e.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null) return def;
        if (v.ValueKind == JsonValueKind.Number) return [v.GetDouble()];
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
            throw new InvalidDataException($"{origin}: '{k}' must be a number or a list of numbers");
        return v.EnumerateArray().Select(x => x.GetDouble()).ToArray();
    }

    internal static Dictionary<string, int>? SizeDict(JsonElement e, string k, string origin)
    {
        if (!e.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return new() { ["shortest_edge"] = v.GetInt32() };
        if (v.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{origin}: '{k}' must be an object");
        var d = new Dictionary<string, int>();
        foreach (var p in v.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.Null) continue;
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int x) || x <= 0)
                throw new InvalidDataException($"{origin}: '{k}.{p.Name}' must be a positive integer");
            d[p.Name] = x;
        }
        return d;
    }

    internal static ResampleFilter Filter(JsonElement e, string origin)
    {
        int r = (int)Num(e, "resample", 3, origin);
        return r is >= 0 and <= 5 ? (ResampleFilter)r : throw new InvalidDataException($"{origin}: resample {r} is not a PIL filter (0..5)");
    }
}

/// <summary>
/// HF <c>BridgeTowerImageProcessor</c> (transformers 4.47): resize the shorter side to size["shortest_edge"] with the
/// longer side capped at int(1333/800 · shortest_edge), both sides floored to multiples of size_divisor (PIL
/// resampling on uint8); optional centre crop to shortest_edge (zero-padded when smaller); rescale; normalise;
/// pad bottom/right to the batch maximum with a pixel mask. Inputs must already be RGB, as in HF, which raises for
/// RGBA and single-channel images.
/// </summary>
public sealed class BridgeTowerImageProcessor : ImageProcessorBase
{
    public int ShortestEdge { get; init; } = 288;
    public int SizeDivisor { get; init; } = 32;
    public bool DoPad { get; init; } = true;

    /// <summary>The stored attribute. HF's preprocess() does not read it (a no-op line in the source), so it has no
    /// effect; pass <c>doCenterCrop</c> to <see cref="Preprocess(IReadOnlyList{Image}, bool?)"/> as BridgeTowerProcessor does.</summary>
    public bool DoCenterCropAttribute { get; init; } = true;

    /// <summary>crop_size["shortest_edge"]; null falls back to <see cref="ShortestEdge"/> (HF backwards compatibility).</summary>
    public int? CropSize { get; init; }

    public static BridgeTowerImageProcessor FromConfig(JsonElement c, string origin)
    {
        var size = SizeDict(c, "size", origin);
        if (size is not null && !size.ContainsKey("shortest_edge"))
            throw new InvalidDataException($"{origin}: BridgeTower 'size' must contain 'shortest_edge', got {string.Join(", ", size.Keys)}");
        var crop = SizeDict(c, "crop_size", origin);
        if (crop is not null && !crop.ContainsKey("shortest_edge"))
            throw new InvalidDataException($"{origin}: BridgeTower 'crop_size' must contain 'shortest_edge' (HF indexes it), got {string.Join(", ", crop.Keys)}");
        bool doPad = Bool(c, "do_pad", true, origin);
        if (c.TryGetProperty("pad_and_return_pixel_mask", out var pm) && pm.ValueKind == JsonValueKind.True) doPad = true;
        return new BridgeTowerImageProcessor
        {
            DoResize = Bool(c, "do_resize", true, origin),
            ShortestEdge = size?["shortest_edge"] ?? 288,
            SizeDivisor = (int)Num(c, "size_divisor", 32, origin) is var sd && sd > 0 ? sd : throw new InvalidDataException($"{origin}: size_divisor must be positive"),
            Resample = Filter(c, origin),
            DoRescale = Bool(c, "do_rescale", true, origin),
            RescaleFactor = Num(c, "rescale_factor", 1.0 / 255, origin),
            DoNormalize = Bool(c, "do_normalize", true, origin),
            ImageMean = Nums(c, "image_mean", ClipConstants.Mean, origin),
            ImageStd = Nums(c, "image_std", ClipConstants.Std, origin),
            DoPad = doPad,
            DoCenterCropAttribute = Bool(c, "do_center_crop", true, origin),
            CropSize = crop?["shortest_edge"],
        };
    }

    /// <summary>HF get_resize_output_image_size (ViLT/BridgeTower), in the same double arithmetic.</summary>
    public static (int Height, int Width) OutputSize(int height, int width, int shorter, int sizeDivisor)
    {
        int longer = (int)(1333.0 / 800 * shorter);
        double scale = (double)shorter / Math.Min(height, width);
        double nh, nw;
        if (height < width) { nh = shorter; nw = scale * width; }
        else { nh = scale * height; nw = shorter; }
        if (Math.Max(nh, nw) > longer)
        {
            scale = longer / Math.Max(nh, nw);
            nh = scale * nh;
            nw = scale * nw;
        }
        int h = (int)(nh + 0.5), w = (int)(nw + 0.5);
        return (h / sizeDivisor * sizeDivisor, w / sizeDivisor * sizeDivisor);
    }

    public override ProcessorOutput Preprocess(IReadOnlyList<Image> images) => Preprocess(images, null);

    /// <param name="doCenterCrop">HF's preprocess(do_center_crop=...); null (not passed) means no crop.</param>
    public ProcessorOutput Preprocess(IReadOnlyList<Image> images, bool? doCenterCrop)
    {
        if (images.Count == 0) throw new ArgumentException("no images to preprocess");
        var resized = new List<Image>();
        var cropped = new List<Image>();
        var current = new List<Image>();
        for (int i = 0; i < images.Count; i++)
        {
            var img = images[i];
            if (img.BitDepth != 8 || img.Mode != PixelMode.RGB)
                throw new ArgumentException(
                    $"BridgeTowerImageProcessor: image {i} ({img}) is {img.Mode}{(img.BitDepth == 16 ? " 16-bit" : "")}, not 8-bit RGB; HF raises here too " +
                    (img.Channels == 1 ? "(\"Unsupported number of image dimensions: 2\")" : img.Channels == 4 ? "(\"Unable to infer channel dimension format\")" : "") +
                    ". Convert it first with Image.ToRgb() (Pillow convert('RGB')).");
            if (DoResize)
            {
                var (h, w) = OutputSize(img.Height, img.Width, ShortestEdge, SizeDivisor);
                if (h <= 0 || w <= 0)
                    throw new ArgumentException($"BridgeTowerImageProcessor: image {i} ({img.Width}x{img.Height}) would be resized to {w}x{h} (size_divisor {SizeDivisor}); it is too small or too elongated");
                img = Resampler.Resize(img, w, h, Resample);
                resized.Add(img);
            }
            if (doCenterCrop == true)
            {
                int s = CropSize ?? ShortestEdge;
                img = ImageTransforms.CenterCrop(img, s, s);
                cropped.Add(img);
            }
            current.Add(img);
        }
        var (pv, mask) = ImageTransforms.Batch(current, DoPad, DoRescale, RescaleFactor, DoNormalize, MeanF, StdF);
        return new ProcessorOutput(pv, mask, resized, cropped);
    }
}

/// <summary>
/// HF <c>BlipImageProcessor</c>: Pillow convert('RGB') (alpha dropped, no compositing), resize to exactly
/// size["height"] × size["width"] (aspect ratio not kept), rescale, normalise. No crop, no padding, no mask.
/// </summary>
public sealed class BlipImageProcessor : ImageProcessorBase
{
    public int Height { get; init; } = 384;
    public int Width { get; init; } = 384;
    public bool DoConvertRgb { get; init; } = true;

    public static BlipImageProcessor FromConfig(JsonElement c, string origin)
    {
        var size = SizeDict(c, "size", origin);
        // HF get_size_dict(int, default_to_square=True): a bare number means a square.
        if (c.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number) size = new() { ["height"] = sz.GetInt32(), ["width"] = sz.GetInt32() };
        if (size is not null && !(size.ContainsKey("height") && size.ContainsKey("width")))
            throw new InvalidDataException($"{origin}: BLIP 'size' must have 'height' and 'width', got {string.Join(", ", size.Keys)}");
        return new BlipImageProcessor
        {
            DoResize = Bool(c, "do_resize", true, origin),
            Height = size?["height"] ?? 384,
            Width = size?["width"] ?? 384,
            Resample = Filter(c, origin),
            DoRescale = Bool(c, "do_rescale", true, origin),
            RescaleFactor = Num(c, "rescale_factor", 1.0 / 255, origin),
            DoNormalize = Bool(c, "do_normalize", true, origin),
            ImageMean = Nums(c, "image_mean", ClipConstants.Mean, origin),
            ImageStd = Nums(c, "image_std", ClipConstants.Std, origin),
            DoConvertRgb = Bool(c, "do_convert_rgb", true, origin),
        };
    }

    public override ProcessorOutput Preprocess(IReadOnlyList<Image> images)
    {
        if (images.Count == 0) throw new ArgumentException("no images to preprocess");
        var resized = new List<Image>();
        var current = new List<Image>();
        for (int i = 0; i < images.Count; i++)
        {
            var img = images[i];
            if (DoConvertRgb) img = img.ToRgb();
            if (img.BitDepth != 8 || img.Mode != PixelMode.RGB)
                throw new ArgumentException($"BlipImageProcessor: image {i} ({img}) is not RGB and do_convert_rgb is off");
            if (DoResize)
            {
                img = Resampler.Resize(img, Width, Height, Resample);
                resized.Add(img);
            }
            current.Add(img);
        }
        var (pv, _) = ImageTransforms.Batch(current, pad: false, DoRescale, RescaleFactor, DoNormalize, MeanF, StdF);
        return new ProcessorOutput(pv, null, resized, []);
    }
}
