// The optimisation loop of every training stage (BridgeTower / METER recipe, arXiv 2206.08657 §4): AdamW with
// weight decay 0.01 except biases and norms, learning rate ×5 on the cross-modal layers and heads, linear warmup
// then linear decay, gradient clipping and accumulation; batches prefetched on a background worker; periodic and
// final atomic checkpoints; exact resume (a batch depends only on (seed, stage, step), and model, optimizer,
// schedule position and RNG states are all restored); a JSONL metrics log and a progress bar.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Nn.Optim;
using Vlm.Training.Model;
using Vlm.Training.Pipeline;

namespace Vlm.Training.Training;

public sealed record StageOptions
{
    public required string Name { get; init; }
    public required int Steps { get; init; }
    /// <summary>Micro-batches per optimizer step (gradient accumulation).</summary>
    public int Accumulate { get; init; } = 1;
    public double LearningRate { get; init; } = 5e-4;
    /// <summary>Multiplier for the cross-modal layers and heads (the paper's ×5).</summary>
    public double CrossModalLrScale { get; init; } = 5.0;
    public double WeightDecay { get; init; } = 0.01;
    public double WarmupFraction { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>Save a checkpoint every this many steps (0 = only the final one).</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Stop (as if killed) right after this step's checkpoint logic; for resume tests.</summary>
    public long? StopAfterStep { get; init; }
    /// <summary>Examples per micro-batch, for the throughput shown.</summary>
    public int ExamplesPerBatch { get; init; } = 1;
}

/// <summary>A micro-batch's loss (to differentiate) and scalar metrics to log (averaged over micro-batches).</summary>
public sealed record StepOutput(Tensor Loss, IReadOnlyDictionary<string, double> Metrics);

public sealed record StageResult(string Stage, bool Completed, bool Skipped, long Steps, double Seconds, IReadOnlyDictionary<string, double> Last);

public sealed class BridgeTowerTrainer(MultiTaskBridgeTower model, string runDir, string tokenizerDir, int imageSize, bool resume, TextWriter? log = null)
{
    public MultiTaskBridgeTower Model { get; } = model;
    public string RunDir { get; } = runDir;
    public string MetricsPath => Path.Combine(RunDir, "metrics.jsonl");
    private readonly TextWriter _log = log ?? Console.Error;
    /// <summary>Where progress bars draw (null = the console's error stream).</summary>
    public TextWriter? ProgressOutput { get; init; }

    public string StageDir(string stage) => Path.Combine(RunDir, "checkpoints", stage);

    public static bool IsCrossModalOrHead(string name) => MultiTaskBridgeTower.IsCrossModalOrHead(name);

    public StageResult Run<TBatch>(StageOptions o, Func<long, int, TBatch> makeBatch, Func<TBatch, StepOutput> step)
    {
        if (o.Steps <= 0) throw new ArgumentException($"stage {o.Name}: steps must be positive");
        Directory.CreateDirectory(RunDir);
        var groups = ParamGroups.ByName(Model.Parameters, o.WeightDecay, lrScale: n => IsCrossModalOrHead(n) ? o.CrossModalLrScale : 1.0);
        var opt = new AdamW(groups, o.LearningRate) { Schedule = LrSchedule.LinearWarmupDecay((int)Math.Round(o.Steps * o.WarmupFraction), o.Steps) };
        var stageDir = StageDir(o.Name);
        long start = 0;
        if (resume)
        {
            var final = Path.Combine(stageDir, "final");
            if (Checkpoint.ReadState(final) is { Complete: true } done)
            {
                Checkpoint.Load(final, Model, null);
                Model.Base.Context.DropoutRng.SetState(done.DropoutRng);
                _log.WriteLine($"[{o.Name}] complete in {final}; loaded, skipping");
                return new StageResult(o.Name, true, true, done.Step, 0, new Dictionary<string, double>());
            }
            if (LatestStepDir(stageDir) is (string dir, TrainerState st))
            {
                Checkpoint.Load(dir, Model, opt);
                Model.Base.Context.DropoutRng.SetState(st.DropoutRng);
                start = st.Step;
                _log.WriteLine($"[{o.Name}] resuming from {dir} (step {start}/{o.Steps})");
            }
        }
        TruncateMetrics(o.Name, start);

        long stop = Math.Min(o.Steps, o.StopAfterStep ?? long.MaxValue);
        var items = new List<(long step, int micro)>();
        for (long s = start; s < stop; s++)
            for (int m = 0; m < o.Accumulate; m++) items.Add((s, m));
        var sw = Stopwatch.StartNew();
        var last = new Dictionary<string, double>();
        Model.Train();
        using var bar = new ProgressBar(o.Name, o.Steps, "step", ProgressOutput);
        bar.Report(start);
        using var metricsFile = new StreamWriter(MetricsPath, append: true);
        var pending = new Dictionary<string, double>();
        int micros = 0;
        long examples = 0;
        foreach (var batch in new Prefetcher<(long step, int micro), (long step, int micro, TBatch b)>(items, x => (x.step, x.micro, makeBatch(x.step, x.micro)), workers: 1, depth: 3))
        {
            if (batch.micro == 0) { opt.ZeroGrad(recycle: true); pending.Clear(); micros = 0; }
            var r = step(batch.b);
            var loss = o.Accumulate == 1 ? r.Loss : r.Loss.Div(o.Accumulate);
            loss.Backward();
            foreach (var (k, v) in r.Metrics) pending[k] = pending.GetValueOrDefault(k) + v;
            micros++;
            examples += o.ExamplesPerBatch;
            if (batch.micro != o.Accumulate - 1) continue;

            long s = batch.step;
            double lr = opt.GroupLr(opt.Groups[0]) / opt.Groups[0].LrScale;
            float norm = GradClip.ClipGradNorm(opt, o.ClipNorm);
            opt.Step();
            last = pending.ToDictionary(kv => kv.Key, kv => kv.Value / micros);
            last["grad_norm"] = norm;
            last["lr"] = lr;
            var line = new JsonObject { ["stage"] = o.Name, ["step"] = s + 1 };
            foreach (var (k, v) in last) line[k] = double.IsFinite(v) ? Math.Round(v, 6) : null;
            line["examples_per_s"] = Math.Round(examples / Math.Max(sw.Elapsed.TotalSeconds, 1e-9), 2);
            metricsFile.WriteLine(line.ToJsonString());
            metricsFile.Flush();
            if (!last.Values.All(double.IsFinite)) throw new InvalidOperationException($"[{o.Name}] step {s + 1}: non-finite metric ({string.Join(", ", last.Select(kv => $"{kv.Key}={kv.Value}"))})");
            bar.Report(s + 1, string.Join(' ', last.Where(kv => kv.Key.EndsWith("loss", StringComparison.Ordinal) || kv.Key.EndsWith("acc", StringComparison.Ordinal))
                .Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F3}")))
                + string.Create(CultureInfo.InvariantCulture, $" {examples / Math.Max(sw.Elapsed.TotalSeconds, 1e-9):F1} ex/s"));
            bool isLast = s + 1 == o.Steps;
            if (isLast || (o.CheckpointEvery > 0 && (s + 1) % o.CheckpointEvery == 0) || s + 1 == stop)
            {
                var state = new TrainerState(o.Name, s + 1, o.Steps, Model.Base.Context.DropoutRng.GetState(), isLast);
                var dir = isLast ? Path.Combine(stageDir, "final") : Path.Combine(stageDir, $"step-{s + 1:D6}");
                Checkpoint.Save(dir, Model, opt, state, tokenizerDir, imageSize);
                PruneStepDirs(stageDir, keep: 2);
            }
        }
        return new StageResult(o.Name, stop == o.Steps, false, stop, sw.Elapsed.TotalSeconds, last);
    }

    private static (string, TrainerState)? LatestStepDir(string stageDir)
    {
        if (!Directory.Exists(stageDir)) return null;
        (string, TrainerState)? best = null;
        foreach (var d in Directory.GetDirectories(stageDir, "step-*"))
            if (Checkpoint.ReadState(d) is TrainerState st && (best is null || st.Step > best.Value.Item2.Step)) best = (d, st);
        return best;
    }

    private static void PruneStepDirs(string stageDir, int keep)
    {
        var dirs = Directory.GetDirectories(stageDir, "step-*").OrderBy(d => d, StringComparer.Ordinal).ToList();
        for (int i = 0; i < dirs.Count - keep; i++) Directory.Delete(dirs[i], true);
        foreach (var t in Directory.GetDirectories(stageDir, ".tmp-*")) Directory.Delete(t, true);
    }

    /// <summary>Drops log lines of <paramref name="stage"/> past <paramref name="step"/> (a resumed run rewrites them).</summary>
    private void TruncateMetrics(string stage, long step)
    {
        if (!File.Exists(MetricsPath)) return;
        var keep = File.ReadAllLines(MetricsPath).Where(l =>
        {
            if (string.IsNullOrWhiteSpace(l)) return false;
            try
            {
                var n = JsonNode.Parse(l)!;
                return n["stage"]?.GetValue<string>() != stage || n["step"]!.GetValue<long>() <= step;
            }
            catch (JsonException) { return false; } // a line cut by a kill
        }).ToList();
        File.WriteAllLines(MetricsPath, keep);
    }

    /// <summary>Copies of every parameter's values (to start several fine-tunings from one pre-trained model).</summary>
    public static Dictionary<string, float[]> Snapshot(MultiTaskBridgeTower m) =>
        m.Parameters.Unique().ToDictionary(kv => kv.Key, kv => kv.Value.Contiguous().ToArray());

    public static void Restore(MultiTaskBridgeTower m, Dictionary<string, float[]> snap)
    {
        using (Tensor.NoGrad())
            foreach (var (k, t) in m.Parameters.Unique())
                t.CopyFrom(Tensor.FromArray(snap[k], t.ShapeArray()));
    }
}
