// Small-sample summaries for multi-seed experiments: mean, sample standard deviation and the two-sided 95 %
// confidence interval of the mean from Student's t distribution (the right interval for 3–10 seeds, where the
// normal 1.96 would be far too narrow).
namespace Vlm.Training.Eval;

/// <summary>Mean ± half-width of the 95 % t interval over <see cref="N"/> values (half-width NaN when N &lt; 2).</summary>
public sealed record MeanCi(double Mean, double Sd, double HalfWidth, int N)
{
    public double Low => Mean - HalfWidth;
    public double High => Mean + HalfWidth;
    /// <summary>Whether the interval lies entirely above or below zero (for paired differences).</summary>
    public bool ExcludesZero => N >= 2 && (Low > 0 || High < 0);
}

public static class Stats
{
    // t_{0.975, df} for df = 1..30 (standard table values).
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    /// <summary>The 0.975 quantile of Student's t with <paramref name="df"/> degrees of freedom (table to 30, then
    /// the Cornish-Fisher expansion around 1.96, within 1e-3 of the exact value there).</summary>
    public static double TQuantile975(int df)
    {
        if (df < 1) throw new ArgumentOutOfRangeException(nameof(df), $"degrees of freedom must be at least 1, got {df}");
        if (df <= T975.Length) return T975[df - 1];
        const double z = 1.959964;
        double g1 = (z * z * z + z) / 4, g2 = (5 * Math.Pow(z, 5) + 16 * z * z * z + 3 * z) / 96;
        return z + g1 / df + g2 / (df * (double)df);
    }

    public static MeanCi Summarise(IReadOnlyList<double> values)
    {
        int n = values.Count;
        if (n == 0) return new MeanCi(double.NaN, double.NaN, double.NaN, 0);
        double mean = values.Average();
        if (n == 1) return new MeanCi(mean, double.NaN, double.NaN, 1);
        double ss = values.Sum(v => (v - mean) * (v - mean));
        double sd = Math.Sqrt(ss / (n - 1));
        return new MeanCi(mean, sd, TQuantile975(n - 1) * sd / Math.Sqrt(n), n);
    }
}
