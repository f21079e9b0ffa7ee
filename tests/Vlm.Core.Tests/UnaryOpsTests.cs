using Vlm.TestSupport;

namespace Vlm.Core.Tests;

public class UnaryOpsTests
{
    private static Tensor T(params float[] v) => Tensor.FromArray(v, v.Length);

    private static void Map(Func<Tensor, Tensor> op, Func<double, double> exact, float[] x, float rtol = 3e-7f, float atol = 1e-30f, string? what = null)
    {
        var got = op(T(x)).ToArray();
        TensorAssert.Close(x.Select(v => (float)exact(v)).ToArray(), got, atol, rtol, what);
    }

    [Fact]
    public void ForwardValuesMatchDoublePrecision()
    {
        float[] x = [-3.5f, -1f, -0.25f, 0f, 0.3f, 1f, 2.5f, 7f];
        float[] pos = [1e-6f, 0.25f, 1f, 2f, 9f, 1e6f];
        Map(t => t.Exp(), Math.Exp, x, what: "exp");
        Map(t => t.Log(), Math.Log, pos, what: "log");
        Map(t => t.Sqrt(), Math.Sqrt, pos, what: "sqrt");
        Map(t => t.Rsqrt(), v => 1 / Math.Sqrt(v), pos, what: "rsqrt");
        Map(t => t.Square(), v => v * v, x, what: "square");
        Map(t => t.Reciprocal(), v => 1 / v, pos, what: "reciprocal");
        Map(t => t.Abs(), Math.Abs, x, what: "abs");
        Map(t => t.Sign(), v => Math.Sign(v), x, what: "sign");
        Map(t => t.Tanh(), Math.Tanh, x, what: "tanh");
        Map(t => t.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), x, what: "sigmoid");
        Map(t => t.Relu(), v => Math.Max(v, 0), x, what: "relu");
        Map(t => t.Silu(), v => v / (1 + Math.Exp(-v)), x, what: "silu");
        Map(t => t.QuickGelu(), v => v / (1 + Math.Exp(-1.702 * v)), x, 1e-6f, what: "quick_gelu"); // 1.702·x rounds first
        Map(t => t.Gelu(), v => 0.5 * v * RefMath.Erfc(-v / Math.Sqrt(2)), x, what: "gelu");
        Map(t => t.GeluTanh(), v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))), x, 1e-6f, what: "gelu_tanh");
        Map(t => t.Erf(), RefMath.Erf, x, what: "erf");
        Map(t => t.Pow(3f), v => v * v * v, x, what: "pow 3");
        Map(t => t.Pow(1.7f), v => Math.Pow(v, (double)1.7f), pos, 5e-7f, what: "pow 1.7");
        Map(t => t.Pow(-0.5f), v => Math.Pow(v, -0.5), pos, what: "pow -0.5");
        Map(t => t.Pow(0f), v => 1, x, what: "pow 0");
        Map(t => t.Clamp(-1f, 2f), v => Math.Clamp(v, -1, 2), x, what: "clamp");
        Map(t => t.ClampMin(0.3f), v => Math.Max(v, 0.3), x, what: "clamp_min");
    }

    [Fact]
    public void NaNAndInfinityFollowTorch()
    {
        var x = T(float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, 0f, 1f, -2f, 100f);
        var rl = x.Relu().ToArray();
        Assert.True(float.IsNaN(rl[0]));
        Assert.True(float.IsNegative(rl[3]), "relu(-0) = -0 like torch");
        Assert.Equal([float.PositiveInfinity, 0f, 0f, 1f, 0f, 100f], new[] { rl[1], rl[2], rl[4], rl[5], rl[6], rl[7] });
        Assert.True(float.IsNaN(x.Clamp(0f, 1f).ToArray()[0]));
        var th = x.Tanh().ToArray();
        Assert.Equal([float.NaN, 1f, -1f, -0f, 0f], th[..5]);
        Assert.True(float.IsNegative(th[3]), "tanh(-0) = -0");
        TensorAssert.Close(new[] { MathF.Tanh(1f), MathF.Tanh(-2f), 1f }, th[5..], 0, 2e-7f);
        Assert.Equal([float.NaN, 1f, 0f, 0.5f, 0.5f], x.Sigmoid().ToArray()[..5]);
        Assert.Equal(float.PositiveInfinity, x.Gelu().ToArray()[1]);
        var ex = x.Exp().ToArray();
        Assert.True(float.IsNaN(ex[0]));
        Assert.Equal([float.PositiveInfinity, 0f, 1f, 1f], ex[1..5]);
        Assert.Equal(float.PositiveInfinity, ex[7]);
        Assert.Equal(float.NegativeInfinity, T(0f).Log().Item());
        Assert.True(float.IsNaN(T(-1f).Log().Item()));
        // clamp with min > max gives max everywhere (torch)
        Assert.Equal([1f, 1f, 1f], T(-5f, 0.5f, 5f).Clamp(2f, 1f).ToArray());
    }

    [Fact]
    public void OpsReadNonContiguousInputs()
    {
        var rng = new Rng(5);
        var a = Tensor.Randn([3, 4], rng);
        var t = a.T; // (4, 3) view
        TensorAssert.Close(t.Contiguous().Gelu(), t.Gelu());
        TensorAssert.Close(t.Contiguous().Exp(), t.Exp());
        Assert.Equal(new[] { 4, 3 }, t.Tanh().ShapeArray());
    }

    [Fact]
    public void LargeTensorsMatchSmallOnesAcrossThreads()
    {
        var rng = new Rng(6);
        var big = Tensor.Randn([300_001], rng, 0f, 3f);
        var a = big.Gelu().ToArray();
        var x = big.ToArray();
        for (int i = 0; i < x.Length; i += 997) Assert.Equal(Vlm.Core.Kernels.FastMath.GeluScalar(x[i]), a[i], 6);
        var e = big.Exp().ToArray();
        for (int i = 0; i < x.Length; i += 997) Assert.Equal(Vlm.Core.Kernels.FastMath.ExpScalar(x[i]), e[i]);
    }

    [Fact]
    public void PowerBackwardsOnLargeViewsAreTorchsFormulaExactly()
    {
        // Past the parallel threshold, on a transposed view, with a broadcast gradient (what mean's backward hands
        // over): square's fused pass must give g·(2x), sqrt's g / (2y), rsqrt's g·(-0.5·y³), reciprocal's g·(-y²),
        // bit for bit.
        var rng = new Rng(11);
        var x = Tensor.Rand([400, 300], rng, 0.5f, 2f); x.RequiresGrad = true;
        var g = Tensor.Randn([300, 1], rng);
        var xt = x.T;                                   // (300, 400), non-contiguous
        var gx = g.Expand(300, 400);
        var xs = xt.Contiguous().ToArray(); var gs = gx.Contiguous().ToArray();
        foreach (var (name, op, rule) in new (string, Func<Tensor, Tensor>, Func<float, float, float>)[]
        {
            ("square", t => t.Square(), (v, gv) => gv * (2f * v)),
            ("sqrt", t => t.Sqrt(), (v, gv) => gv / (2f * MathF.Sqrt(v))),
            ("rsqrt", t => t.Rsqrt(), (v, gv) => { float y = 1f / MathF.Sqrt(v); return gv * (-0.5f * y * y * y); }),
            ("reciprocal", t => t.Reciprocal(), (v, gv) => { float y = 1f / v; return gv * (-y * y); }),
        })
        {
            x.Grad = null;
            op(xt).Backward(gx);
            var got = x.Grad!.T.Contiguous().ToArray();
            for (int i = 0; i < xs.Length; i++)
                Assert.True(rule(xs[i], gs[i]) == got[i], $"{name} grad [{i}]: expected {rule(xs[i], gs[i])}, got {got[i]}");
        }
    }

    [Fact]
    public void Gradients()
    {
        var rng = new Rng(7);
        Tensor Rn(params int[] s) => Tensor.Randn(s, rng);
        Tensor Pos(params int[] s) => Tensor.Rand(s, rng, 0.5f, 2f);
        // Inputs as (3, 4) transposed views so every op also reads a non-contiguous tensor.
        Tensor NonC(Tensor t) => t.T;
        GradCheck.Check(x => NonC(x[0]).Exp(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).Log(), [Pos(4, 3)]);
        GradCheck.Check(x => x[0].Sqrt(), [Pos(2, 3)]);
        GradCheck.Check(x => x[0].Rsqrt(), [Pos(2, 3)]);
        GradCheck.Check(x => x[0].Square(), [Rn(2, 3)]);
        GradCheck.Check(x => x[0].Reciprocal(), [Pos(2, 3)]);
        GradCheck.Check(x => NonC(x[0]).Tanh(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).Sigmoid(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).Gelu(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).GeluTanh(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).QuickGelu(), [Rn(4, 3)]);
        GradCheck.Check(x => NonC(x[0]).Silu(), [Rn(4, 3)]);
        GradCheck.Check(x => x[0].Erf(), [Rn(2, 3)]);
        GradCheck.Check(x => x[0].Pow(2.5f), [Pos(2, 3)]);
        GradCheck.Check(x => x[0].Pow(3f), [Rn(2, 3)]);
        // Away from the kinks at 0 (relu, abs) and the clamp bounds.
        var away = Tensor.FromArray(new float[] { -1.5f, -0.7f, -0.2f, 0.3f, 0.8f, 1.9f }, 2, 3);
        GradCheck.Check(x => x[0].Relu(), [away.Clone()]);
        GradCheck.Check(x => x[0].Abs(), [away.Clone()]);
        GradCheck.Check(x => x[0].Clamp(-1f, 1f), [away.Clone()]);
        // Tensor exponent with broadcasting: base (2, 3), exponent (3)
        GradCheck.Check(x => x[0].Pow(x[1]), [Pos(2, 3), Rn(3)]);
    }

    [Fact]
    public void PowTensorGradientIsZeroAtZeroBase()
    {
        var b = Tensor.FromArray(new float[] { 0f, 2f }, 2).RequireGrad();
        var e = Tensor.FromArray(new float[] { 2f, 3f }, 2).RequireGrad();
        b.Pow(e).Sum().Backward();
        TensorAssert.Close(new float[] { 0f, 8f * MathF.Log(2f) }, e.Grad!.ToArray());
        TensorAssert.Close(new float[] { 0f, 12f }, b.Grad!.ToArray());
    }
}
