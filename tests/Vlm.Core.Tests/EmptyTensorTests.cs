using Vlm.Core;
using Xunit;

namespace Vlm.Core.Tests;

/// <summary>Tensors with a 0-size dimension (an empty batch, a sequence cut to nothing) follow PyTorch: views of
/// them are contiguous, elementwise ops and reductions over the other dims give empty results, sums give 0 and
/// means NaN — and nothing throws or divides by the 0.</summary>
public class EmptyTensorTests
{
    // (3, 2, 0, 4) permuted: a non-row-major view whose 0-size dim sits in the middle.
    private static Tensor PermutedEmpty() => Tensor.Zeros([3, 2, 0, 4], DType.Float32).Permute(3, 2, 0, 1); // (4, 0, 3, 2)

    [Fact]
    public void EmptyViewsAreContiguousAndCopy()
    {
        var z = PermutedEmpty();
        Assert.True(z.IsContiguous);
        var c = z.Contiguous();
        Assert.Equal([4, 0, 3, 2], c.ShapeArray());
        Assert.Empty(c.ToArray());
        Assert.False(Tensor.Zeros([3, 2, 4], DType.Float32).Permute(2, 0, 1).IsContiguous);
    }

    [Fact]
    public void ElementwiseOpsOnEmptyViewsGiveEmptyResults()
    {
        var z = PermutedEmpty();
        Assert.Equal([4, 0, 3, 2], z.Add(Tensor.Ones(1)).ShapeArray());
        Assert.Equal([4, 0, 3, 2], z.Mul(z).ShapeArray());
        Assert.Equal([4, 0, 3, 2], z.Exp().ShapeArray());
        Assert.Equal([4, 0, 3, 2], Tensor.Randn([2, 0, 3], new Rng(2)).Permute(1, 0, 2).Unsqueeze(0).Expand(4, 0, 2, 3).Permute(0, 1, 3, 2).Add(z).ShapeArray());
    }

    [Fact]
    public void ReductionsOverEmptyDimsFollowTorch()
    {
        var z = PermutedEmpty();
        var s = z.Sum(1); // (4, 3, 2): sums over nothing are 0
        Assert.Equal([4, 3, 2], s.ShapeArray());
        Assert.All(s.ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal([0, 3, 2], z.Sum(0).ShapeArray());
        Assert.Equal(0f, z.Sum().Item());
        Assert.True(float.IsNaN(z.Mean().Item()));             // torch.zeros(0).mean() is nan
        Assert.All(z.Mean(1).ToArray(), v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void GradientFlowsThroughEmptyViews()
    {
        var p = Tensor.Zeros([2, 0, 3], DType.Float32).RequireGrad();
        var loss = p.Permute(1, 0, 2).Exp().Sum();
        loss.Backward();
        Assert.NotNull(p.Grad);
        Assert.Equal([2, 0, 3], p.Grad!.ShapeArray());
    }
}
