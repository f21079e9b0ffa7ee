using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.Vision.Processing;

/// <summary>
/// Replays an <c>image_preprocessing</c> fixture folder: for every run in its case.json, decodes the listed image
/// files with this library's decoders, runs the processor configured by the run's preprocessor_config.json with the
/// recorded call arguments, and writes <c>&lt;outDir&gt;/&lt;run&gt;/outputs.safetensors</c> with the fixture's tensor names
/// (pixel_values float32, pixel_mask uint8, resized.* / cropped.* uint8 HWC).
/// </summary>
public static class ImageCases
{
    /// <summary>True when <paramref name="folder"/> holds a case.json with "case": "image_preprocessing".</summary>
    public static bool IsImageCase(string folder)
    {
        var p = Path.Combine(folder, "case.json");
        if (!File.Exists(p)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(p));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("case", out var c)
                && c.ValueKind == JsonValueKind.String && c.GetString() == "image_preprocessing";
        }
        catch (JsonException) { return false; }
    }

    /// <summary>Runs every run; returns the run names written.</summary>
    public static IReadOnlyList<string> Run(string fixtureFolder, string outDir)
    {
        string casePath = Path.Combine(fixtureFolder, "case.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(casePath));
        var root = doc.RootElement;
        if (!root.TryGetProperty("runs", out var runs) || runs.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{casePath}: no 'runs' object");
        if (!root.TryGetProperty("images", out var imagesEl) || imagesEl.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{casePath}: no 'images' object");
        var cache = new Dictionary<string, Image>();
        Image Get(string key)
        {
            if (cache.TryGetValue(key, out var im)) return im;
            if (!imagesEl.TryGetProperty(key, out var e) || !e.TryGetProperty("file", out var f) || f.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{casePath}: image '{key}' has no 'file'");
            im = ImageDecoder.Decode(Path.Combine(fixtureFolder, f.GetString()!));
            cache[key] = im;
            return im;
        }
        var done = new List<string>();
        foreach (var run in runs.EnumerateObject())
        {
            string name = run.Name;
            var r = run.Value;
            var keys = r.GetProperty("images").EnumerateArray().Select(x => x.GetString()!).ToList();
            var proc = ImageProcessorBase.FromConfigFile(Path.Combine(fixtureFolder, name, "preprocessor_config.json"));
            string call = r.TryGetProperty("call", out var c) ? c.GetString() ?? "" : "";
            bool? crop = call.Contains("do_center_crop=True", StringComparison.Ordinal) ? true
                : call.Contains("do_center_crop=False", StringComparison.Ordinal) ? false : null;
            ProcessorOutput o;
            if (proc is BridgeTowerImageProcessor bt)
                o = bt.Preprocess(keys.Select(k => Get(k).ToRgb()).ToList(), crop); // the fixture fed PIL-converted RGB
            else
                o = proc.Preprocess(keys.Select(Get).ToList());
            var all = new Dictionary<string, Tensor> { ["pixel_values"] = o.PixelValues };
            if (o.PixelMask is not null)
            {
                var m = o.PixelMask.ToInt64Array();
                all["pixel_mask"] = Tensor.FromBytes(m.Select(v => (byte)v).ToArray(), DType.UInt8, o.PixelMask.ShapeArray());
            }
            for (int i = 0; i < o.Resized.Count; i++) all["resized." + keys[i]] = o.Resized[i].ToTensor();
            for (int i = 0; i < o.Cropped.Count; i++) all["cropped." + keys[i]] = o.Cropped[i].ToTensor();
            IEnumerable<KeyValuePair<string, Tensor>> toWrite = all;
            if (r.TryGetProperty("outputs", out var outs) && outs.ValueKind == JsonValueKind.Object)
            {
                var wanted = outs.EnumerateObject().Select(p => p.Name).ToList();
                var missing = wanted.Where(w => !all.ContainsKey(w)).ToList();
                if (missing.Count > 0) throw new InvalidOperationException($"run {name}: produced no {string.Join(", ", missing)}");
                toWrite = wanted.Select(w => new KeyValuePair<string, Tensor>(w, all[w]));
            }
            var dir = Path.Combine(outDir, name);
            Directory.CreateDirectory(dir);
            SafeTensors.Save(Path.Combine(dir, "outputs.safetensors"), toWrite);
            done.Add(name);
        }
        return done;
    }
}
