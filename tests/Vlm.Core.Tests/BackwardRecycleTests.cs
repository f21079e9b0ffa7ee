using Vlm.Core;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>The engine disposes intermediate gradients once no pending entry holds them; graphs where one gradient
/// object reaches several inputs (add, x + x, fan-out, reshape views) must still get exact gradients.</summary>
[Collection(BufferPoolCollection.Name)]
public class BackwardRecycleTests
{
    [Fact]
    public void SharedGradientObjectsStayIntact()
    {
        var rng = new Rng(21);
        var x = Tensor.Randn([8, 10], rng);
        var y = Tensor.Randn([8, 10], rng);
        GradCheck.Check(t =>
        {
            var s = t[0].Add(t[1]);            // add hands one gradient object to both inputs
            var u = s.Add(s);                  // the same tensor twice
            var v = u.Mul(t[0]).Add(s.Reshape(10, 8).T.Reshape(8, 10).Tanh());
            return v.Add(t[1]).Sum(1);
        }, [x, y]);
    }

    [Fact]
    public void PooledSizesMatchAnalyticGradients()
    {
        // 64×80 = 5120 floats: large enough for the buffer pool, so recycled buffers really are reused.
        var rng = new Rng(23);
        var x = Tensor.Randn([64, 80], rng);
        var y = Tensor.Randn([64, 80], rng);
        x.RequiresGrad = true; y.RequiresGrad = true;
        var xs = x.ToArray(); var ys = y.ToArray();
        for (int round = 0; round < 3; round++)
        {
            x.Grad = null; y.Grad = null;
            var s = x.Add(y);
            var u = s.Add(s);                                  // 2(x + y)
            u.Mul(x).Add(s.Tanh()).Add(y).Sum().Backward();    // L = Σ 2(x+y)x + tanh(x+y) + y
            var gx = x.Grad!.ToArray(); var gy = y.Grad!.ToArray();
            for (int i = 0; i < xs.Length; i++)
            {
                float th = MathF.Tanh(xs[i] + ys[i]), dt = 1 - th * th;
                Assert.Equal(2 * (2 * xs[i] + ys[i]) + dt, gx[i], 1e-4f);
                Assert.Equal(2 * xs[i] + dt + 1, gy[i], 1e-4f);
            }
        }
    }

    [Fact]
    public void CallerGradientIsNotRecycled()
    {
        var x = Tensor.Randn([100, 50], new Rng(22));
        x.RequiresGrad = true;
        var g = Tensor.Ones(100, 50);
        var y = x.Add(x.Square());
        y.Backward(g);
        Assert.All(g.ToArray(), v => Assert.Equal(1f, v));
        // A second backward through a fresh graph reuses pooled buffers: results must not change.
        var first = x.Grad!.ToArray();
        x.Grad = null;
        x.Add(x.Square()).Backward(g);
        Assert.Equal(first, x.Grad!.ToArray());
    }

    [Fact]
    public void NarrowSlicesSummedInPlaceMatchAnalyticGradients()
    {
        // Packed-QKV pattern: three narrows of one tensor; the second and third add into the first's buffer.
        var rng = new Rng(31);
        var x = Tensor.Randn([4, 96, 48], rng);   // 18432 floats: pooled sizes
        x.RequiresGrad = true;
        var xs = x.ToArray();
        for (int round = 0; round < 2; round++)
        {
            x.Grad = null;
            var q = x.Narrow(-1, 0, 16); var k = x.Narrow(-1, 16, 16); var v = x.Narrow(-1, 32, 16);
            var w = x.Narrow(-1, 8, 16);              // overlaps q and k
            q.Mul(2f).Add(k.Square()).Add(v.Tanh()).Add(w.Mul(3f)).Sum().Backward();
            var gx = x.Grad!.ToArray();
            for (int i = 0; i < xs.Length; i++)
            {
                int c = i % 48;
                float e = 0;
                if (c < 16) e += 2;
                if (c >= 16 && c < 32) e += 2 * xs[i];
                if (c >= 32) { float t = MathF.Tanh(xs[i]); e += 1 - t * t; }
                if (c >= 8 && c < 24) e += 3;
                Assert.Equal(e, gx[i], 1e-5f);
            }
        }
        GradCheck.Check(t => t[0].Narrow(1, 0, 3).Mul(t[0].Narrow(1, 3, 3)).Add(t[0].Narrow(1, 1, 3).Exp()), [Tensor.Randn([5, 6], rng)]);
    }

    [Fact]
    public void AdoptedLeafGradientsAreDistinctAndAccumulate()
    {
        // add hands one gradient object to both leaves: at most one may take it over as .Grad, the other copies.
        var rng = new Rng(32);
        var a = Tensor.Randn([64, 80], rng); var b = Tensor.Randn([64, 80], rng);
        a.RequiresGrad = true; b.RequiresGrad = true;
        a.Add(b).Mul(3f).Sum().Backward();
        Assert.NotSame(a.Grad, b.Grad);
        Assert.NotSame(a.Grad!.Storage, b.Grad!.Storage);
        Assert.All(a.Grad.ToArray(), v => Assert.Equal(3f, v));
        Assert.All(b.Grad.ToArray(), v => Assert.Equal(3f, v));
        // A second backward accumulates into the adopted buffers.
        a.Mul(2f).Add(b).Sum().Backward();
        Assert.All(a.Grad.ToArray(), v => Assert.Equal(5f, v));
        Assert.All(b.Grad.ToArray(), v => Assert.Equal(4f, v));
    }

    [Fact]
    public void InPlaceSumsKeepFanOutGradientsExact()
    {
        // x feeds a chain whose gradients reach it several times, with a shared gradient object from add in between.
        var rng = new Rng(33);
        GradCheck.Check(t =>
        {
            var h = t[0].Mul(t[1]);
            var s = h.Add(t[0]);                         // add: one gradient object to h and x
            var r = s.Add(h.Tanh()).Add(t[0].Square());  // x reached again, h again
            return r.Add(r.Narrow(1, 0, 4).Sum(1, keepDim: true)).Sum(0);
        }, [Tensor.Randn([6, 8], rng), Tensor.Randn([6, 8], rng)]);
    }

    [Fact]
    public void DisposedActivationsStayValidUntilTheirBackwardRan()
    {
        // The graph holds what backward reads: disposing activations right after the forward (as layers do to free
        // memory) must not let the pool hand their buffers out before backward, whatever is allocated meanwhile.
        var rng = new Rng(41);
        var x = Tensor.Randn([64, 80], rng);
        x.RequiresGrad = true;
        var a = x.Tanh();
        var b = a.Mul(a);
        var c = b.Narrow(1, 0, 40);
        a.Dispose(); b.Dispose();
        for (int i = 0; i < 8; i++) Tensor.Full([64, 80], 1e6f).Dispose(); // would reuse a freed buffer
        var junk = Enumerable.Range(0, 4).Select(_ => Tensor.Full([64, 80], -3f)).ToList();
        c.Sum().Backward();
        var xs = x.ToArray(); var gx = x.Grad!.ToArray();
        for (int i = 0; i < xs.Length; i++)
        {
            float t = MathF.Tanh(xs[i]);
            Assert.Equal(i % 80 < 40 ? 2 * t * (1 - t * t) : 0f, gx[i], 1e-5f);
        }
        GC.KeepAlive(junk);
    }

    [Fact]
    public void BackwardRecyclesDisposedActivationsAndRefusesASecondPass()
    {
        var x = Tensor.Randn([64, 80], new Rng(42));
        x.RequiresGrad = true;
        var a = x.Exp();
        var kept = x.Sigmoid();
        var loss = a.Add(kept).Sum();
        a.Dispose();
        Assert.False(a.Storage.IsFreed);          // the graph still holds it
        loss.Backward();
        Assert.True(a.Storage.IsFreed);           // back in the pool once exp's backward ran
        Assert.False(kept.Storage.IsFreed);       // the caller still holds this one
        var ex = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        Assert.Contains("second time", ex.Message);
    }

    [Fact]
    public void CatResultsAndTheirGradientsGoBackToThePool()
    {
        var a = Tensor.Randn([64, 40], new Rng(43));
        var b = Tensor.Randn([64, 40], new Rng(44));
        using (Tensor.NoGrad())
        {
            var r = Tensor.Cat([a, b], 1);
            r.Dispose();
            Assert.True(r.Storage.IsFreed);       // the pieces it was written through hold no reference
        }
        a.RequiresGrad = true; b.RequiresGrad = true;
        var y = Tensor.Cat([a, b], 1);
        var g = Tensor.Randn([64, 80], new Rng(45)).Mul(2f);   // a pooled buffer (Randn wraps its own array)
        float[] ga, gb;
        using (var va = g.Narrow(1, 0, 40)) ga = va.ToArray();
        using (var vb = g.Narrow(1, 40, 40)) gb = vb.ToArray();
        y.Backward(g);
        Assert.Equal(ga, a.Grad!.ToArray());
        Assert.Equal(gb, b.Grad!.ToArray());
        g.Dispose();
        Assert.True(g.Storage.IsFreed);           // the narrowed pieces of g were copied, then let go
    }

    [Fact]
    public void IndexSelectReturnsItsContiguousCopyToThePool()
    {
        var x = Tensor.Randn([80, 64], new Rng(46)).T;    // non-contiguous: index_select copies it first
        var idx = Tensor.FromArray(new long[] { 3, 1, 2, 0 }, 4);
        using var _ = Tensor.NoGrad();
        x.IndexSelect(1, idx).Dispose();                   // warms the pool with the copy's and the result's sizes
        long before = BufferPool.ThreadFreshAllocations;
        using var r = x.IndexSelect(1, idx);
        Assert.Equal(0, BufferPool.ThreadFreshAllocations - before);
        Assert.Equal(x.Select(1, 2).ToArray(), r.Select(1, 2).ToArray());
    }

    [Fact]
    public void AttentionReturnsItsContiguousCopiesToThePool()
    {
        // Last dim not contiguous: the op copies q, k and v into head-major layouts first.
        var q = Tensor.Randn([1, 2, 64, 64], new Rng(47)).Transpose(2, 3);
        var k = Tensor.Randn([1, 2, 64, 64], new Rng(48)).Transpose(2, 3);
        var v = Tensor.Randn([1, 2, 64, 64], new Rng(49)).Transpose(2, 3);
        using var _ = Tensor.NoGrad();
        F.ScaledDotProductAttention(q, k, v).Dispose();   // warms the pool with the copies' and the output's sizes
        long before = BufferPool.ThreadFreshAllocations;
        using var o = F.ScaledDotProductAttention(q, k, v);
        Assert.Equal(0, BufferPool.ThreadFreshAllocations - before);
        using var expect = F.ScaledDotProductAttention(q.Contiguous(), k.Contiguous(), v.Contiguous());
        TensorAssert.Equal(expect, o, "copied layouts");
    }

    [Fact]
    public void SelectLeavesNoHoldOnItsInput()
    {
        // Select is a narrow then a squeeze: the narrowed view in between must not keep the buffer.
        var t = Tensor.Randn([3, 41, 103], new Rng(9)).Mul(1f);
        using (Tensor.NoGrad())
        {
            var s = t.Select(0, 1);
            using (var n = t.Narrow(0, 1, 1)) Assert.Equal(n.ToArray(), s.ToArray());
            s.Dispose();
        }
        t.Dispose();
        Assert.True(t.Storage.IsFreed);
    }

    [Fact]
    public void DisposingADeadBranchReleasesItsGraph()
    {
        var x = Tensor.Randn([64, 80], new Rng(50));
        x.RequiresGrad = true;
        var a = x.Mul(2f);
        var b = a.Exp();
        a.Dispose();
        Assert.False(a.Storage.IsFreed);          // exp's node still holds its input
        b.Dispose();
        // Nothing consumes b, so no backward can reach its node: it lets go, and so does a's (disposed, unconsumed).
        Assert.True(b.Storage.IsFreed);
        Assert.True(a.Storage.IsFreed);
    }

    [Fact]
    public void DisposingADeadBranchKeepsTheLiveGraph()
    {
        var x = Tensor.Randn([64, 80], new Rng(51));
        x.RequiresGrad = true;
        var y = x.Mul(2f);
        var side = y.Tanh();                      // a branch nobody back-propagates through
        var loss = y.Exp().Sum();
        y.Dispose();                              // consumed by tanh and exp: stays
        side.Dispose();                           // releases tanh's node only; exp still consumes y
        Assert.False(y.Storage.IsFreed);
        loss.Backward();
        var xs = x.ToArray(); var gx = x.Grad!.ToArray();
        for (int i = 0; i < xs.Length; i++) Assert.Equal(2 * MathF.Exp(2 * xs[i]), gx[i], 1e-4f * MathF.Exp(2 * xs[i]));
    }

    [Fact]
    public void SecondBackwardOverKeptTensorsAccumulates()
    {
        var x = Tensor.Randn([64, 80], new Rng(43));
        x.RequiresGrad = true;
        var loss = x.Exp().Sum();
        loss.Backward();
        loss.Backward();                          // nothing was disposed: the saved tensors are intact
        var xs = x.ToArray(); var gx = x.Grad!.ToArray();
        for (int i = 0; i < xs.Length; i++) Assert.Equal(2 * MathF.Exp(xs[i]), gx[i], 1e-4f * MathF.Exp(xs[i]));
    }

    [Fact]
    public void StridedAddInPlaceRowsMatchScalarSums()
    {
        // AddInPlace into a slice (rows strided, each row contiguous) runs vectorised row adds; alpha ≠ 1 too.
        var rng = new Rng(33);
        var acc = Tensor.Randn([5, 37, 90], rng);
        var g = Tensor.Randn([5, 37, 29], rng);
        var before = acc.ToArray(); var gs = g.ToArray();
        using (var slice = acc.Narrow(-1, 31, 29)) slice.AddInPlace(g, 0.5f);
        var after = acc.ToArray();
        for (int r = 0; r < 5 * 37; r++)
            for (int c = 0; c < 90; c++)
            {
                float expect = c >= 31 && c < 60 ? before[r * 90 + c] + 0.5f * gs[r * 29 + c - 31] : before[r * 90 + c];
                Assert.Equal(expect, after[r * 90 + c], 1e-6f);
            }
    }
}

/// <summary>Reductions that copy their input into rows (max/min, var, logsumexp, sums over inner dims, max with
/// indices) drop that copy and its view when done: once the caller disposes the input, its buffer is free at once,
/// not when the GC gets round to the view.</summary>
public class ReductionReleaseTests
{
    public static TheoryData<string> Reductions => new() { "amax", "amin", "var", "logsumexp", "sum", "max_dim" };

    [Theory]
    [MemberData(nameof(Reductions))]
    public void InputBufferIsFreedWhenTheCallerDisposesIt(string op)
    {
        foreach (bool permuted in new[] { false, true })
        {
            var x = Tensor.Randn([64, 80], new Rng(24));
            var v = permuted ? x.T : x;      // (80, 64) view, or x itself
            Tensor r = op switch
            {
                "amax" => v.Amax([0]),
                "amin" => v.Amin([0]),
                "var" => v.Var([0]),
                "logsumexp" => v.LogSumExp([0]),
                "sum" => v.Sum([0], false),
                _ => v.Max(0),
            };
            Assert.Equal(v.Size(1), r.Numel);
            if (permuted) v.Dispose();
            x.Dispose();
            Assert.Null(x.Storage.F32);
        }
    }
}

/// <summary>Backward temporaries (broadcast products before their sum, negations, masks, contiguous copies of the
/// incoming gradient, the transposed views a matmul's backward multiplies by) go back to the pool: a training loop
/// over the same shapes allocates no fresh poolable buffer once warm. Shapes are odd sizes of at least 4096 floats
/// (the pool's floor) that no other test uses, so a parallel test cannot take these buffers.</summary>
[Collection(BufferPoolCollection.Name)]
public class BackwardTemporariesTests
{
    public static TheoryData<string> Ops => new()
    {
        "add_broadcast", "sub_broadcast", "mul_broadcast", "div_broadcast", "matmul_batch_broadcast", "where", "maximum",
        "pow_scalar", "pow_tensor", "abs", "cumsum", "max_dim", "index_select", "embedding", "masked_fill", "sort",
        "reshape_strided", "affine_strided", "dropout_strided", "softmax_strided", "layer_norm_strided", "normalize_strided",
        "matmul_strided", "mean_dims", "cross_entropy_3d", "interpolate_strided", "conv2d_strided", "to_array_strided",
        "var_dims", "amax_dims", "logsumexp_dims",
    };

    [Theory]
    [MemberData(nameof(Ops))]
    public void WarmTrainingLoopAllocatesNothingFresh(string op)
    {
        var rng = new Rng(77);
        // (3, 41, 103) against a (41, 103) operand: 4223 floats per broadcast slice.
        var x = Tensor.Randn([3, 41, 103], rng).Abs().Add(0.5f);
        var w = Tensor.Randn([41, 103], rng).Abs().Add(0.5f);
        var w2 = Tensor.Randn([103, 47], rng);
        var m = Tensor.Randn([3, 41, 103], rng).Gt(0f);
        var ids = Tensor.FromArray(Enumerable.Range(0, 60).Select(i => (long)(i * 7 % 41)).ToArray(), 3, 20);
        var w3 = Tensor.Randn([41, 47], rng);
        var w4 = Tensor.Randn([8, 3, 3, 3], rng);
        var w103 = Tensor.Randn([103], rng);
        var t3 = Tensor.FromArray(Enumerable.Range(0, 309).Select(i => (long)(i % 41)).ToArray(), 3, 103);
        x.RequiresGrad = true; w.RequiresGrad = true; w2.RequiresGrad = true; w3.RequiresGrad = true; w4.RequiresGrad = true;
        // The test's own intermediates are disposed after each step, as a training loop does.
        var temps = new List<Tensor>();
        Tensor T(Tensor t) { temps.Add(t); return t; }
        Tensor Forward() => op switch
        {
            "add_broadcast" => x.Add(w),
            "sub_broadcast" => x.Sub(w),
            "mul_broadcast" => x.Mul(w),
            "div_broadcast" => x.Div(w),
            "matmul_batch_broadcast" => x.MatMul(w2),                                   // (3, 41, 103)·(103, 47)
            "where" => Tensor.Where(m, x, w),
            "maximum" => x.Maximum(w),
            "pow_scalar" => x.Pow(1.5f),
            "pow_tensor" => x.Pow(w),
            "abs" => x.Abs(),
            "cumsum" => T(x.Transpose(1, 2)).Cumsum(2),
            "max_dim" => T(x.Transpose(1, 2)).MaxWithIndices(2).Values,
            "index_select" => T(T(x.IndexSelect(1, ids.Reshape(60))).Transpose(0, 2)).Mul(2f),
            "embedding" => T(T(Tensor.Embedding(w, ids)).Transpose(1, 2)).Mul(3f),
            "masked_fill" => T(x.MaskedFill(m, 0f)).Mul(w),
            "sort" => x.Add(T(T(T(T(w.Detach()).Transpose(0, 1)).Sort(0).Values).Transpose(0, 1))),   // sorts a strided copy
            // Strided views: each op copies its input (and, backward, the transposed gradient) into a private buffer.
            "reshape_strided" => T(T(x.Transpose(0, 1)).Reshape(41, 309)).Mul(2f),
            "affine_strided" => T(x.Transpose(1, 2)).Mul(2f),
            "dropout_strided" => F.Dropout(T(x.Transpose(1, 2)), 0.25f, training: true, new Rng(5)),
            "softmax_strided" => F.Softmax(T(x.Transpose(1, 2)), -1),
            "layer_norm_strided" => F.LayerNorm(T(x.Transpose(0, 1)), [103], w103),
            "normalize_strided" => F.Normalize(T(x.Transpose(1, 2)), dim: -1),
            "matmul_strided" => T(x.Permute(2, 0, 1)).MatMul(w3),                         // no GEMM layout: copied
            "mean_dims" => T(x.Mean([0], keepDim: false)).Mul(w),
            "cross_entropy_3d" => F.CrossEntropy(x, t3),                                   // classes on dim 1: permuted rows
            "interpolate_strided" => F.Interpolate(T(T(x.Transpose(1, 2)).Unsqueeze(0)), 80, 50, InterpolateMode.Bicubic),
            "conv2d_strided" => F.Conv2d(T(T(x.Transpose(1, 2)).Unsqueeze(0)), w4, null, 1, 1),
            "to_array_strided" => x.Mul(T(Tensor.FromArray(T(x.Transpose(1, 2)).ToArray(), 3, 103, 41)).Transpose(1, 2)),
            "var_dims" => T(x.Var([0])).Mul(w),
            "amax_dims" => T(x.Amax([0])).Mul(w),
            "logsumexp_dims" => T(x.LogSumExp([0])).Mul(w),
            _ => throw new ArgumentException(op),
        };
        long fresh = 0;
        for (int round = 0; round < 4; round++)
        {
            long before = BufferPool.ThreadFreshAllocations;
            using (var y = Forward())
            using (var loss = y.Sum())
                loss.Backward();
            foreach (var t in temps) t.Dispose();
            temps.Clear();
            foreach (var p in new[] { x, w, w2, w3, w4 }) { p.Grad?.Dispose(); p.Grad = null; }
            fresh = BufferPool.ThreadFreshAllocations - before;
        }
        Assert.Equal(0, fresh);
    }
}
