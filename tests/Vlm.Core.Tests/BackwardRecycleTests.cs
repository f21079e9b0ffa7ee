using Vlm.Core;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>The engine disposes intermediate gradients once no pending entry holds them; graphs where one gradient
/// object reaches several inputs (add, x + x, fan-out, reshape views) must still get exact gradients.</summary>
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
}
