// The pre-training loop for BLIP / ALBEF (BLIP arXiv 2201.12086 §4.1: AdamW, weight decay 0.05, warmup then decay;
// ALBEF arXiv 2107.07651 §4), following the BridgeTower trainer's conventions: batches depend only on (seed, step) —
// each epoch is a seeded permutation of the pairs — so an interrupted run resumes onto exactly the batches it would
// have seen; ITM negatives and MLM masks come from a per-step stream too; metrics JSONL, progress bar, periodic and
// final atomic checkpoints (BlipCheckpoint) holding parameters, momentum copy, queues and optimizer moments.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Nn.Optim;
using Vlm.Training.Data;
using Vlm.Training.Pipeline;

namespace Vlm.Training.Blip;

public sealed record BlipPretrainOptions
{
    public int Steps { get; init; } = 1000;
    public int BatchSize { get; init; } = 8;
    public double LearningRate { get; init; } = 1e-4;
    public double WeightDecay { get; init; } = 0.05;
    public double WarmupFraction { get; init; } = 0.05;
    /// <summary>Gradient-norm clip (0 = none; the reference does not clip).</summary>
    public double ClipNorm { get; init; }
    public int CheckpointEvery { get; init; }
    public ulong Seed { get; init; } = 42;
    /// <summary>Pass image ids to ITC / ITM so pairs of one image are positives (BLIP's retrieval fine-tune).</summary>
    public bool UseImageIds { get; init; }
    /// <summary>Stop (as if killed) after this step's checkpoint logic; for resume tests.</summary>
    public long? StopAfterStep { get; init; }
    public bool Resume { get; init; }
}

/// <summary>One training batch: pixels (B, 3, S, S), text (right-padded ids/mask), image ids.</summary>
public sealed record PairBatch(Tensor Pixels, TextBatch Text, long[] ImageIds);

public sealed record BlipPretrainResult(bool Completed, long Steps, double Seconds, IReadOnlyDictionary<string, double> First, IReadOnlyDictionary<string, double> Last);

/// <summary>Trains a <see cref="BlipPretrainModel"/> (either configuration) on image–text pairs.</summary>
public sealed class BlipPretrainer(BlipPretrainModel model, string runDir, TextWriter? log = null)
{
    public BlipPretrainModel Model { get; } = model;
    public string RunDir { get; } = runDir;
    public string MetricsPath => Path.Combine(RunDir, "metrics.jsonl");
    public string CheckpointDir => Path.Combine(RunDir, "checkpoints");
    /// <summary>Copied into every checkpoint (HF tokenizer files), or null.</summary>
    public string? TokenizerDir { get; init; }
    public TextWriter? ProgressOutput { get; init; }
    private readonly TextWriter _log = log ?? Console.Error;

    /// <summary>The pair indices of step <paramref name="step"/>: epoch e is a permutation of all pairs seeded by
    /// (seed, e); step s takes positions [s·B, (s+1)·B) of the concatenated epochs.</summary>
    public static int[] BatchIndices(int pairs, int batch, ulong seed, long step)
    {
        if (pairs < 1 || batch < 1) throw new ArgumentException($"{pairs} pairs / batch {batch}");
        var res = new int[batch];
        long first = step * batch;
        int[]? perm = null; long permEpoch = -1;
        for (int i = 0; i < batch; i++)
        {
            long pos = first + i, epoch = pos / pairs;
            if (epoch != permEpoch)
            {
                perm = Enumerable.Range(0, pairs).ToArray();
                StepRng.For(seed, "blip-epoch", epoch).Shuffle(perm);
                permEpoch = epoch;
            }
            res[i] = perm![(int)(pos % pairs)];
        }
        return res;
    }

    /// <summary>Builds the batch of <paramref name="step"/> from pairs, a text collator and a pixel loader.</summary>
    public static PairBatch MakeBatch(IReadOnlyList<ImageCaption> pairs, TextCollator text, Func<IReadOnlyList<string>, Tensor> pixels, int batch, ulong seed, long step)
    {
        var idx = BatchIndices(pairs.Count, batch, seed, step);
        var chosen = idx.Select(i => pairs[i]).ToList();
        return new PairBatch(pixels(chosen.Select(p => p.ImagePath).ToList()), text.Encode(chosen.Select(p => p.Caption).ToList()), chosen.Select(p => (long)p.ImageId).ToArray());
    }

    public BlipPretrainResult Run(BlipPretrainOptions o, Func<long, PairBatch> makeBatch)
    {
        if (o.Steps <= 0) throw new ArgumentException($"steps must be positive, got {o.Steps}");
        Directory.CreateDirectory(RunDir);
        var groups = ParamGroups.ByName(Model.Parameters, o.WeightDecay);
        var opt = new AdamW(groups, o.LearningRate) { Schedule = LrSchedule.LinearWarmupDecay((int)Math.Round(o.Steps * o.WarmupFraction), o.Steps) };
        long start = 0;
        var kind = Model.Config.Kind.ToString().ToLowerInvariant();
        if (o.Resume)
        {
            var final = Path.Combine(CheckpointDir, "final");
            if (BlipCheckpoint.ReadState(final) is { Complete: true } done)
            {
                BlipCheckpoint.Load(final, Model, null);
                Model.Parameters.Dropout.SetState(done.DropoutRng);
                _log.WriteLine($"[{kind}] complete in {final}; loaded, skipping");
                return new BlipPretrainResult(true, done.Step, 0, new Dictionary<string, double>(), new Dictionary<string, double>());
            }
            if (LatestStepDir() is (string dir, BlipTrainerState st))
            {
                BlipCheckpoint.Load(dir, Model, opt);
                Model.Parameters.Dropout.SetState(st.DropoutRng);
                start = st.Step;
                _log.WriteLine($"[{kind}] resuming from {dir} (step {start}/{o.Steps})");
            }
        }
        TruncateMetrics(start);
        long stop = Math.Min(o.Steps, o.StopAfterStep ?? long.MaxValue);
        var steps = new List<long>();
        for (long s = start; s < stop; s++) steps.Add(s);
        var sw = Stopwatch.StartNew();
        Dictionary<string, double> first = new(), last = new();
        Model.Train();
        using var bar = new ProgressBar(kind, o.Steps, "step", ProgressOutput);
        bar.Report(start);
        using var metricsFile = new StreamWriter(MetricsPath, append: true);
        long examples = 0;
        foreach (var (s, batch) in new Prefetcher<long, (long, PairBatch)>(steps, s => (s, makeBatch(s)), workers: 1, depth: 2))
        {
            opt.ZeroGrad(recycle: true);
            float alpha = PretrainObjectives.AlphaAt(Model.Config.Alpha, s, Model.Config.AlphaRampSteps);
            var rng = StepRng.For(o.Seed, "blip-step", s, stream: 1);
            var losses = Model.Forward(batch.Pixels, batch.Text.Ids, batch.Text.Mask, alpha, rng, o.UseImageIds ? batch.ImageIds : null);
            losses.Total.Backward();
            double lr = opt.GroupLr(opt.Groups[0]) / opt.Groups[0].LrScale;
            float norm = o.ClipNorm > 0 ? GradClip.ClipGradNorm(opt, o.ClipNorm) : float.NaN;
            opt.Step();
            examples += batch.Text.Batch;
            last = losses.Metrics(Model.Config.Kind);
            if (Model.Config.Kind == PretrainKind.Albef) last["mlm_acc"] = losses.MlmAccuracy;
            if (o.ClipNorm > 0) last["grad_norm"] = norm;
            last["lr"] = lr;
            if (s == start) first = new Dictionary<string, double>(last);
            var line = new JsonObject { ["stage"] = kind, ["step"] = s + 1 };
            foreach (var (k, v) in last) line[k] = double.IsFinite(v) ? Math.Round(v, 6) : null;
            line["examples_per_s"] = Math.Round(examples / Math.Max(sw.Elapsed.TotalSeconds, 1e-9), 2);
            metricsFile.WriteLine(line.ToJsonString());
            metricsFile.Flush();
            if (!double.IsFinite(last["loss"])) throw new InvalidOperationException($"[{kind}] step {s + 1}: non-finite loss ({string.Join(", ", last.Select(kv => $"{kv.Key}={kv.Value}"))})");
            bar.Report(s + 1, string.Join(' ', last.Where(kv => kv.Key.EndsWith("loss", StringComparison.Ordinal) || kv.Key.EndsWith("acc", StringComparison.Ordinal))
                .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F3}"))));
            bool isLast = s + 1 == o.Steps;
            if (isLast || (o.CheckpointEvery > 0 && (s + 1) % o.CheckpointEvery == 0) || s + 1 == stop)
            {
                var state = new BlipTrainerState(kind, s + 1, o.Steps, Model.Parameters.Dropout.GetState(), isLast);
                var dir = isLast ? Path.Combine(CheckpointDir, "final") : Path.Combine(CheckpointDir, $"step-{s + 1:D6}");
                BlipCheckpoint.Save(dir, Model, opt, state, TokenizerDir);
                PruneStepDirs(keep: 2);
            }
        }
        return new BlipPretrainResult(stop == o.Steps, stop, sw.Elapsed.TotalSeconds, first, last);
    }

    private (string, BlipTrainerState)? LatestStepDir()
    {
        if (!Directory.Exists(CheckpointDir)) return null;
        (string, BlipTrainerState)? best = null;
        foreach (var d in Directory.GetDirectories(CheckpointDir, "step-*"))
            if (BlipCheckpoint.ReadState(d) is BlipTrainerState st && (best is null || st.Step > best.Value.Item2.Step)) best = (d, st);
        return best;
    }

    private void PruneStepDirs(int keep)
    {
        var dirs = Directory.GetDirectories(CheckpointDir, "step-*").OrderBy(d => d, StringComparer.Ordinal).ToList();
        for (int i = 0; i < dirs.Count - keep; i++) Directory.Delete(dirs[i], true);
        foreach (var t in Directory.GetDirectories(CheckpointDir, ".tmp-*")) Directory.Delete(t, true);
    }

    private void TruncateMetrics(long step)
    {
        if (!File.Exists(MetricsPath)) return;
        var keep = File.ReadAllLines(MetricsPath).Where(l =>
        {
            if (string.IsNullOrWhiteSpace(l)) return false;
            try { return JsonNode.Parse(l)!["step"]!.GetValue<long>() <= step; }
            catch (System.Text.Json.JsonException) { return false; }
        }).ToList();
        File.WriteAllLines(MetricsPath, keep);
    }
}
