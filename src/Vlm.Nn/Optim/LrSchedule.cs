namespace Vlm.Nn.Optim;

/// <summary>
/// Learning-rate multipliers by step (HF transformers' optimization.py formulas, applied like torch's LambdaLR:
/// step k of the optimizer uses Factor(k), k from 0).
/// </summary>
public sealed class LrSchedule
{
    private readonly Func<long, double> _f;
    public string Description { get; }

    private LrSchedule(string description, Func<long, double> f) { Description = description; _f = f; }

    public double Factor(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), $"step must be ≥ 0, got {step}");
        return _f(step);
    }

    public override string ToString() => Description;

    public static LrSchedule Constant() => new("constant", _ => 1.0);

    /// <summary>get_constant_schedule_with_warmup.</summary>
    public static LrSchedule ConstantWithWarmup(int warmupSteps)
    {
        CheckArgs(warmupSteps, int.MaxValue);
        return new($"constant, warmup {warmupSteps}", s => s < warmupSteps ? (double)s / Math.Max(1, warmupSteps) : 1.0);
    }

    /// <summary>get_linear_schedule_with_warmup: 0 → 1 over the warmup, then linearly to 0 at <paramref name="totalSteps"/>.</summary>
    public static LrSchedule LinearWarmupDecay(int warmupSteps, int totalSteps)
    {
        CheckArgs(warmupSteps, totalSteps);
        return new($"linear, warmup {warmupSteps}, total {totalSteps}", s =>
            s < warmupSteps
                ? (double)s / Math.Max(1, warmupSteps)
                : Math.Max(0.0, (double)(totalSteps - s) / Math.Max(1, totalSteps - warmupSteps)));
    }

    /// <summary>get_cosine_schedule_with_warmup (num_cycles 0.5 = half a cosine down to 0).</summary>
    public static LrSchedule CosineWarmupDecay(int warmupSteps, int totalSteps, double numCycles = 0.5)
    {
        CheckArgs(warmupSteps, totalSteps);
        return new($"cosine, warmup {warmupSteps}, total {totalSteps}", s =>
        {
            if (s < warmupSteps) return (double)s / Math.Max(1, warmupSteps);
            double progress = (double)(s - warmupSteps) / Math.Max(1, totalSteps - warmupSteps);
            return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * numCycles * 2.0 * progress)));
        });
    }

    /// <summary>By HF scheduler name ("linear", "cosine", "constant", "constant_with_warmup").</summary>
    public static LrSchedule ByName(string name, int warmupSteps, int totalSteps) => name switch
    {
        "linear" => LinearWarmupDecay(warmupSteps, totalSteps),
        "cosine" => CosineWarmupDecay(warmupSteps, totalSteps),
        "constant" => Constant(),
        "constant_with_warmup" => ConstantWithWarmup(warmupSteps),
        _ => throw new ArgumentException($"unknown lr scheduler '{name}'; supported: linear, cosine, constant, constant_with_warmup"),
    };

    private static void CheckArgs(int warmup, int total)
    {
        if (warmup < 0) throw new ArgumentException($"warmup steps must be ≥ 0, got {warmup}");
        if (total < 0) throw new ArgumentException($"total steps must be ≥ 0, got {total}");
    }
}
