// Training curves of a run: for each stage in metrics.jsonl, one PNG of its losses and one of its accuracies
// (moving average over ~1/25 of the stage), written as curves/{stage}_{loss|accuracy}.png.
using System.Text.Json.Nodes;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Training.Plot;

public static class Curves
{
    /// <summary>Plots <c>{runDir}/metrics.jsonl</c> into <c>{runDir}/curves</c>; returns the files written.</summary>
    public static List<string> Write(string runDir)
    {
        var written = new List<string>();
        var path = Path.Combine(runDir, "metrics.jsonl");
        if (!File.Exists(path)) return written;
        var rows = File.ReadAllLines(path).Where(l => !string.IsNullOrWhiteSpace(l)).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var dir = Path.Combine(runDir, "curves");
        Directory.CreateDirectory(dir);
        (byte, byte, byte)[] palette = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)];
        foreach (var stage in rows.GroupBy(r => r["stage"]!.GetValue<string>()))
            foreach (var (kind, suffix) in new[] { ("loss", "loss"), ("accuracy", "acc") })
            {
                var keys = stage.SelectMany(r => r.Select(kv => kv.Key)).Distinct().Where(k => k.EndsWith(suffix, StringComparison.Ordinal)).OrderBy(k => k, StringComparer.Ordinal).ToList();
                if (keys.Count == 0) continue;
                var series = keys.Select((k, ci) => new Series(k, Smooth(stage.Where(r => r[k] != null).Select(r => ((double)r["step"]!.GetValue<long>(), r[k]!.GetValue<double>())).ToList()),
                    palette[ci % palette.Length])).ToList();
                var (rgb, w, h) = LinePlot.Render($"{stage.Key} {kind}", series);
                var file = Path.Combine(dir, $"{stage.Key}_{kind}.png");
                PngEncoder.Save(new Image(w, h, PixelMode.RGB, rgb), file);
                written.Add(file);
            }
        return written;
    }

    private static List<(double, double)> Smooth(List<(double x, double y)> pts)
    {
        int win = Math.Max(1, pts.Count / 25);
        var res = new List<(double, double)>();
        for (int i = 0; i < pts.Count; i++)
        {
            int a = Math.Max(0, i - win + 1);
            res.Add((pts[i].x, pts.Skip(a).Take(i - a + 1).Average(p => p.y)));
        }
        return res;
    }
}
