namespace Vlm.Core.Tests;

/// <summary>Double-precision erf/erfc (series for small |x|, continued fraction for large), accurate to ~1e-15.</summary>
internal static class RefMath
{
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        if (Math.Abs(x) < 2.5) return ErfSeries(x);
        return Math.Sign(x) * (1 - ErfcCf(Math.Abs(x)));
    }

    public static double Erfc(double x)
    {
        if (double.IsNaN(x)) return x;
        if (x < 0) return 2 - Erfc(-x);
        if (x < 2.5) return 1 - ErfSeries(x);
        return ErfcCf(x);
    }

    private static double ErfSeries(double x)
    {
        // erf(x) = 2/√π · Σ (-1)^n x^(2n+1) / (n! (2n+1)), summed with enough terms for |x| < 2.5
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            double t = term / (2 * n + 1);
            sum += t;
            if (Math.Abs(t) < 1e-18 * Math.Abs(sum)) break;
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    private static double ErfcCf(double x)
    {
        // Lentz continued fraction: erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        double f = x, c = x, d = 0;
        for (int n = 1; n < 500; n++)
        {
            double an = n * 0.5;
            d = x + an * d; d = 1 / d;
            c = x + an / c;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }
}
