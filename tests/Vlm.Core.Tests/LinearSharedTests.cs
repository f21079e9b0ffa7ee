using Vlm.Core;
using Vlm.Core.Kernels;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>The Linear node's work-shared path (column pieces pulled by the cores; one fused pass over g for GELU',
/// its transpose and the bias sums) against the reference path (one product split statically / dx and dW side by
/// side) and finite differences, on shapes that are not multiples of the pieces, the 8-row slabs or the GEMM tiles.</summary>
public class LinearSharedTests
{
    private sealed class Path : IDisposable
    {
        private readonly bool? _previous = F.ForceShared.Value;
        public Path(bool shared) => F.ForceShared.Value = shared;
        public void Dispose() => F.ForceShared.Value = _previous;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 768)]
    [InlineData(1576, 768)]
    [InlineData(1576, 3072)]
    [InlineData(2304, 768)]
    [InlineData(193, 1000)]
    [InlineData(97, 512)]
    [InlineData(300, 100)]
    public void BlocksCoverTheProductOnce(int m, int n)
    {
        var p = WorkShare.Blocks(m, n);
        var hits = new int[m * n];
        foreach (var (c0, w, r0, r1) in p)
        {
            Assert.True(w > 0 && w <= 512 && r1 > r0 && c0 % 512 == 0);
            // Row cuts only in the last column block, at multiples of the GEMM's 24-row block.
            if (r1 - r0 < m) Assert.Equal((n - 1) / 512 * 512, c0);
            if (r0 > 0) Assert.Equal(0, r0 % 24);
            for (int r = r0; r < r1; r++) for (int c = c0; c < c0 + w; c++) hits[r * n + c]++;
        }
        Assert.All(hits, h => Assert.Equal(1, h));
        if (m == 1576 && n == 768)
            Assert.Equal([(0, 512, 0, 1576), (512, 256, 0, 792), (512, 256, 792, 1200), (512, 256, 1200, 1392), (512, 256, 1392, 1576)], p);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(37)]
    public void RunCallsEachIndexOnce(int count)
    {
        var hits = new int[count];
        WorkShare.Run(count, i => Interlocked.Increment(ref hits[i]), 2);
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    [Theory]
    [InlineData(1, 1, true)]
    [InlineData(1, 13, false)]
    [InlineData(7, 5, true)]
    [InlineData(8, 8, false)]
    [InlineData(13, 67, true)]
    [InlineData(37, 130, true)]
    [InlineData(40, 24, false)]
    public void PrepMatchesNaive(int rows, int n, bool gelu)
    {
        var rng = new Rng((ulong)(rows * 1000 + n));
        float[] g = Tensor.Randn([rows, n], rng).ToArray(), pre = Tensor.Randn([rows, n], rng).ToArray();
        int ldt = rows + 3;
        // Two row ranges (split at a multiple of 8, as the node splits them) into separate partial sums.
        int split = rows / 2 & ~7;
        var gc1 = new float[rows * n]; var gc2 = new float[rows * n];
        var t1 = Enumerable.Repeat(-9f, n * ldt).ToArray(); var t2 = (float[])t1.Clone();
        var s1a = new float[n]; var s1b = new float[n]; var s2a = new float[n]; var s2b = new float[n];
        ReadOnlySpan<float> p = gelu ? pre : default;
        LinearGradKernels.Prep(g, p, gelu ? gc1 : default, n, 0, split, t1, ldt, s1a);
        LinearGradKernels.Prep(g, p, gelu ? gc1 : default, n, split, rows, t1, ldt, s1b);
        LinearGradKernels.PrepNaive(g, p, gelu ? gc2 : default, n, 0, split, t2, ldt, s2a);
        LinearGradKernels.PrepNaive(g, p, gelu ? gc2 : default, n, split, rows, t2, ldt, s2b);
        Assert.Equal(gc2, gc1);
        Assert.Equal(t2, t1);                       // untouched padding columns stay as they were
        TensorAssert.Close(s2a, s1a, 1e-5f, 1e-5f, "sums a");
        TensorAssert.Close(s2b, s1b, 1e-5f, 1e-5f, "sums b");
        if (gelu)
        {
            // GELU' is the element-wise op's kernel over the same 8-aligned spans: bit-identical to it.
            var whole = new float[rows * n];
            FastMath.GeluBackward(pre, g, whole);
            Assert.Equal(whole, gc1);
        }
    }

    [Fact]
    public void PrepRejectsShortSpans()
    {
        var g = new float[12];
        Assert.Throws<ArgumentException>(() => LinearGradKernels.Prep(g, default, default, 4, 0, 4, default, 4, default));
        Assert.Throws<ArgumentException>(() => LinearGradKernels.Prep(g, default, default, 4, 0, 3, new float[10], 3, default));
        Assert.Throws<ArgumentException>(() => LinearGradKernels.Prep(g, default, default, 4, 0, 3, default, 3, new float[3]));
    }

    public static TheoryData<int, int, int, bool, bool, bool, bool, bool> Cases => new()
    {
        // rows, in, out, bias, gelu, x needs grad, W needs grad, transposed (non-contiguous) input
        { 1, 5, 7, true, true, true, true, false },
        { 37, 19, 67, true, false, true, true, false },
        { 37, 19, 67, false, true, true, true, true },
        { 203, 130, 200, true, true, true, true, false },
        { 203, 130, 200, true, false, false, true, true },   // input without grad
        { 203, 130, 200, true, true, true, false, false },   // frozen weight (and bias)
        { 96, 600, 136, false, false, true, true, false },   // several pieces of in, out % 8 == 0
        { 13, 64, 520, true, true, true, true, true },       // GELU per piece (out % 8 == 0), one 8-row slab + 5
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SharedPathMatchesReference(int rows, int inF, int outF, bool withBias, bool gelu, bool xGrad, bool wGrad, bool transposed)
    {
        var rng = new Rng((ulong)(rows + 7 * inF + 13 * outF));
        var xBase = transposed ? Tensor.Randn([inF, rows], rng) : Tensor.Randn([rows, inF], rng);
        var w0 = Tensor.Randn([outF, inF], rng, std: 0.1f);
        var b0 = withBias ? Tensor.Randn([outF], rng) : null;
        var gy = Tensor.Randn([rows, outF], rng);
        (Tensor y, Tensor? dx, Tensor? dw, Tensor? db) Run(bool shared)
        {
            using var _ = new Path(shared);
            var x = xBase.Detach().RequireGrad(xGrad);
            var w = w0.Detach().RequireGrad(wGrad);
            var b = b0?.Detach().RequireGrad(wGrad);
            var y = F.Linear(transposed ? x.T : x, w, b, gelu);
            if (xGrad || wGrad) y.Backward(gy);
            return (y, x.Grad, w.Grad, b?.Grad);
        }
        var r = Run(false);
        var s = Run(true);
        TensorAssert.Close(r.y, s.y, 1e-5f, 1e-5f, "y");
        Assert.Equal(r.dx is null, s.dx is null);
        Assert.Equal(r.dw is null, s.dw is null);
        Assert.Equal(r.db is null, s.db is null);
        if (r.dx != null) TensorAssert.Close(r.dx, s.dx!, 1e-4f, 1e-4f, "dx");
        if (r.dw != null) TensorAssert.Close(r.dw, s.dw!, 1e-4f, 1e-4f, "dw");
        if (r.db != null) TensorAssert.Close(r.db, s.db!, 1e-4f, 1e-4f, "db");
    }

    [Fact]
    public void SharedPathIsDeterministic()
    {
        // Pieces go to whichever core is free, but every output element is computed by one fixed sequence of
        // operations, and the bias sums combine in a fixed order: two runs agree bit for bit.
        var rng = new Rng(5);
        var x0 = Tensor.Randn([150, 200], rng); var w0 = Tensor.Randn([264, 200], rng, std: 0.1f); var b0 = Tensor.Randn([264], rng);
        float[][] Run()
        {
            using var _ = new Path(true);
            var x = x0.Detach().RequireGrad(); var w = w0.Detach().RequireGrad(); var b = b0.Detach().RequireGrad();
            var y = F.Linear(x, w, b, gelu: true);
            y.Square().Sum().Backward();
            return [y.ToArray(), x.Grad!.ToArray(), w.Grad!.ToArray(), b.Grad!.ToArray()];
        }
        var a = Run();
        for (int k = 0; k < 3; k++) Assert.Equal(a, Run());
    }

    [Fact]
    public void SharedGeluNodeMatchesUnfusedGraphExactly()
    {
        // linear_gelu and Linear(...).Gelu() on the shared path: GELU' of the fused node runs the op's kernel over
        // the same spans, so gradients stay bit-identical (out % 8 != 0 here: GELU as one pass after the pieces).
        var rng = new Rng(16);
        var xBase = Tensor.Randn([301, 2, 67], rng);
        var w1 = Tensor.Randn([130, 67], rng, std: 0.1f); var b1 = Tensor.Randn([130], rng);
        var gy = Tensor.Randn([2, 301, 130], rng);
        using var _ = new Path(true);
        var x1 = xBase.Detach().RequireGrad(); var x2 = xBase.Detach().RequireGrad();
        var w2 = w1.Detach().RequireGrad(); w1.RequireGrad(); var b2 = b1.Detach().RequireGrad(); b1.RequireGrad();
        var y1 = F.Linear(x1.Transpose(0, 1), w1, b1, gelu: true);
        var y2 = F.Linear(x2.Transpose(0, 1), w2, b2).Gelu();
        Assert.Equal(y2.ToArray(), y1.ToArray());
        y1.Backward(gy); y2.Backward(gy);
        Assert.Equal(x2.Grad!.ToArray(), x1.Grad!.ToArray());
        Assert.Equal(w2.Grad!.ToArray(), w1.Grad!.ToArray());
        Assert.Equal(b2.Grad!.ToArray(), b1.Grad!.ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SharedPathGradientsMatchFiniteDifferences(bool gelu)
    {
        using var _ = new Path(true);
        var rng = new Rng(23);
        // Fresh leaves per check: GradCheck marks its inputs as requiring grad.
        Tensor X() => Tensor.Randn([3, 3, 5], rng);
        Tensor W() => Tensor.Randn([9, 5], rng);
        Tensor B() => Tensor.Randn([9], rng);
        GradCheck.Check(t => F.Linear(t[0], t[1], t[2], gelu), [X(), W(), B()]);
        GradCheck.Check(t => F.Linear(t[0].Permute(1, 0, 2), t[1], null, gelu), [X(), W()]); // non-contiguous, no bias
        var xFixed = X();
        GradCheck.Check(t => F.Linear(xFixed, t[0], t[1], gelu), [W(), B()]);               // input without grad
        var wFrozen = W();
        GradCheck.Check(t => F.Linear(t[0], wFrozen, null, gelu), [X()]);                   // frozen weight
        GradCheck.Check(t => F.Linear(t[0], t[1], t[2], gelu), [Tensor.Randn([1, 1, 5], rng), W(), B()]); // 1 row
    }
}
