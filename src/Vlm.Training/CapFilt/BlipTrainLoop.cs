// The optimisation loop for the small BLIP models of CapFilt: AdamW (weight decay 0.05 except biases and norms, as
// BLIP fine-tunes), linear warmup then cosine decay, gradient clipping, batches built ahead on a background worker
// (a batch depends only on (seed, stage, step)), a JSONL metrics log and a progress bar. No checkpoints or resume:
// each CapFilt stage is minutes long and saved as an HF folder when it ends.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Nn;
using Vlm.Nn.Optim;
using Vlm.Training.Pipeline;
using Vlm.Training.Training;

namespace Vlm.Training.CapFilt;

public sealed record BlipStageOptions
{
    public required string Name { get; init; }
    public required int Steps { get; init; }
    public double LearningRate { get; init; } = 3e-4;
    public double WeightDecay { get; init; } = 0.05;
    public double WarmupFraction { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
    public int ExamplesPerBatch { get; init; } = 1;
}

public static class BlipTrainLoop
{
    /// <returns>the last step's metrics (loss terms, accuracies, grad norm, lr).</returns>
    public static Dictionary<string, double> Run<TBatch>(BlipStageOptions o, Module model, ParameterStore store, Func<long, TBatch> makeBatch,
        Func<TBatch, StepOutput> step, string? metricsPath, TextWriter? progress)
    {
        if (o.Steps <= 0) throw new ArgumentException($"stage {o.Name}: steps must be positive, got {o.Steps}");
        var opt = new AdamW(ParamGroups.ByName(store, o.WeightDecay), o.LearningRate)
        {
            Schedule = LrSchedule.CosineWarmupDecay((int)Math.Round(o.Steps * o.WarmupFraction), o.Steps),
        };
        model.Train();
        var sw = Stopwatch.StartNew();
        var last = new Dictionary<string, double>();
        using var metrics = metricsPath is null ? null : new StreamWriter(metricsPath, append: true);
        using var bar = new ProgressBar(o.Name, o.Steps, "step", progress);
        var steps = Enumerable.Range(0, o.Steps).Select(i => (long)i).ToList();
        try
        {
            foreach (var (s, batch) in new Prefetcher<long, (long, TBatch)>(steps, s => (s, makeBatch(s)), workers: 1, depth: 3))
            {
                opt.ZeroGrad(recycle: true);
                var r = step(batch);
                r.Loss.Backward();
                double lr = opt.GroupLr(opt.Groups[0]) / opt.Groups[0].LrScale;
                float norm = GradClip.ClipGradNorm(opt, o.ClipNorm);
                opt.Step();
                last = r.Metrics.ToDictionary(kv => kv.Key, kv => kv.Value);
                last["grad_norm"] = norm;
                last["lr"] = lr;
                if (!last.Values.All(double.IsFinite))
                    throw new InvalidOperationException($"[{o.Name}] step {s + 1}: non-finite metric ({string.Join(", ", last.Select(kv => $"{kv.Key}={kv.Value}"))})");
                if (metrics != null)
                {
                    var line = new JsonObject { ["stage"] = o.Name, ["step"] = s + 1 };
                    foreach (var (k, v) in last) line[k] = Math.Round(v, 6);
                    metrics.WriteLine(line.ToJsonString());
                }
                double eps = (s + 1) * o.ExamplesPerBatch / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
                bar.Report(s + 1, string.Join(' ', last.Where(kv => kv.Key.EndsWith("loss", StringComparison.Ordinal) || kv.Key.EndsWith("acc", StringComparison.Ordinal))
                    .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F3}"))) + string.Create(CultureInfo.InvariantCulture, $" {eps:F1} ex/s"));
            }
        }
        finally { model.Eval(); }
        last["seconds"] = sw.Elapsed.TotalSeconds;
        return last;
    }
}
