namespace Vlm.Core.Tests;

public class FunctionalDropoutTests
{
    [Fact]
    public void DropoutIsIdentityWhenOffAndSeededWhenOn()
    {
        var x = Tensor.Ones(1000);
        Assert.Same(x, F.Dropout(x, 0.3f, training: false, new Rng(1)));
        Assert.Same(x, F.Dropout(x, 0f, training: true, new Rng(1)));
        var a = F.Dropout(x, 0.25f, true, new Rng(9)).ToArray();
        var b = F.Dropout(x, 0.25f, true, new Rng(9)).ToArray();
        Assert.Equal(a, b);
        Assert.All(a, v => Assert.True(v == 0f || v == 1f / 0.75f));
        int kept = a.Count(v => v != 0);
        Assert.InRange(kept, 700, 800); // 750 expected, σ ≈ 14
        Assert.All(F.Dropout(x, 1f, true, new Rng(1)).ToArray(), v => Assert.Equal(0f, v));
        // Odd length (the last element has its own draw).
        var odd = Enumerable.Range(0, 40).Select(s => F.Dropout(Tensor.Ones(7), 0.5f, true, new Rng((ulong)s)).ToArray()[6]).ToArray();
        Assert.Contains(0f, odd); Assert.Contains(2f, odd);
        Assert.All(odd, v => Assert.True(v == 0f || v == 2f));
        Assert.Throws<ArgumentOutOfRangeException>(() => F.Dropout(x, 1.5f, true, new Rng(1)));
    }

    [Fact]
    public void DropoutGradientUsesTheSameMask()
    {
        var x = Tensor.Randn([4, 50], new Rng(2)).RequireGrad();
        var y = F.Dropout(x.T, 0.5f, true, new Rng(3)); // non-contiguous input
        y.Sum().Backward();
        var yv = y.ToArray(); var xv = x.T.Contiguous().ToArray(); var g = x.Grad!.T.Contiguous().ToArray();
        for (int i = 0; i < yv.Length; i++)
        {
            if (yv[i] == 0f && xv[i] != 0f) Assert.Equal(0f, g[i]);
            else { Assert.Equal(2f, g[i]); Assert.Equal(2f * xv[i], yv[i], 6); }
        }
    }
}
