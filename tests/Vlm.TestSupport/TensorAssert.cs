using Vlm.Core;

namespace Vlm.TestSupport;

public static class TensorAssert
{
    /// <summary>|a - e| ≤ atol + rtol·|e| element-wise, with the worst element reported on failure.</summary>
    public static void Close(Tensor expected, Tensor actual, float atol = 1e-5f, float rtol = 1e-5f, string? what = null)
    {
        if (!expected.Shape.SequenceEqual(actual.Shape))
            throw new Xunit.Sdk.XunitException($"{what}: shape {actual.ShapeString} != expected {expected.ShapeString}");
        Close(expected.ToArray(), actual.ToArray(), atol, rtol, what);
    }

    /// <summary>The same bits element by element (NaNs included), with the first difference reported on failure.</summary>
    public static void Equal(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string? what = null)
    {
        if (expected.Length != actual.Length)
            throw new Xunit.Sdk.XunitException($"{what}: length {actual.Length} != expected {expected.Length}");
        int bad = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
            {
                bad++;
                if (first < 0) first = i;
            }
        if (bad > 0)
            throw new Xunit.Sdk.XunitException(
                $"{what}: {bad}/{expected.Length} elements differ in their bits; first at flat index {first}: actual {actual[first]:G9}, expected {expected[first]:G9}");
    }

    public static void Equal(Tensor expected, Tensor actual, string? what = null)
    {
        if (!expected.Shape.SequenceEqual(actual.Shape))
            throw new Xunit.Sdk.XunitException($"{what}: shape {actual.ShapeString} != expected {expected.ShapeString}");
        Equal(expected.ToArray(), actual.ToArray(), what);
    }

    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float atol = 1e-5f, float rtol = 1e-5f, string? what = null)
    {
        if (expected.Length != actual.Length)
            throw new Xunit.Sdk.XunitException($"{what}: length {actual.Length} != expected {expected.Length}");
        int worst = -1; double worstExcess = 0;
        int bad = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            double tol = atol + rtol * Math.Abs(e);
            double diff = Math.Abs(a - e);
            bool ok = diff <= tol || (double.IsNaN(e) && double.IsNaN(a)) || (double.IsInfinity(e) && e == a);
            if (!ok)
            {
                bad++;
                double excess = double.IsNaN(diff) ? double.PositiveInfinity : diff - tol;
                if (worst < 0 || excess > worstExcess) { worst = i; worstExcess = excess; }
            }
        }
        if (bad > 0)
            throw new Xunit.Sdk.XunitException(
                $"{what}: {bad}/{expected.Length} elements differ; worst at flat index {worst}: actual {actual[worst]:G9}, expected {expected[worst]:G9} (atol {atol}, rtol {rtol})");
    }
}

/// <summary>Central finite-difference gradient check for float32 ops.</summary>
public static class GradCheck
{
    /// <summary>Checks d(sum(f(inputs) * w))/d(input) for a fixed random weight w, so every output element matters.</summary>
    public static void Check(Func<Tensor[], Tensor> f, Tensor[] inputs, float eps = 1e-2f, float atol = 2e-3f, float rtol = 2e-2f, ulong seed = 7)
    {
        var rng = new Rng(seed);
        foreach (var t in inputs) if (t.DType == DType.Float32) { t.RequiresGrad = true; t.Grad = null; }
        var outT = f(inputs);
        var w = Tensor.Randn(outT.ShapeArray(), rng);
        var loss = outT.Mul(w).Sum();
        loss.Backward();
        for (int k = 0; k < inputs.Length; k++)
        {
            var x = inputs[k];
            if (x.DType != DType.Float32 || !x.RequiresGrad) continue;
            var analytic = x.Grad?.ToArray() ?? new float[x.Numel];
            var numeric = new float[x.Numel];
            var idx = new int[x.Rank];
            using (Tensor.NoGrad())
            {
                for (int i = 0; i < x.Numel; i++)
                {
                    int rem = i;
                    for (int d = x.Rank - 1; d >= 0; d--) { idx[d] = rem % x.Size(d); rem /= x.Size(d); }
                    float orig = x[idx];
                    x[idx] = orig + eps;
                    double plus = f(inputs).Mul(w).Sum().Item();
                    x[idx] = orig - eps;
                    double minus = f(inputs).Mul(w).Sum().Item();
                    x[idx] = orig;
                    numeric[i] = (float)((plus - minus) / (2 * eps));
                }
            }
            TensorAssert.Close(numeric, analytic, atol, rtol, $"gradient of input {k}");
        }
    }
}
