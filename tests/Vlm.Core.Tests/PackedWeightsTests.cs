using Vlm.Core;
using Vlm.Core.Autograd;
using Vlm.Core.Kernels;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>Prepacked Linear weights in <see cref="Tensor.Inference"/>: the same bits as packing per call, reused while
/// the weight is unchanged, rebuilt after every kind of write, never used for arrays a caller holds or outside an
/// inference scope.</summary>
public class PackedWeightsTests
{
    private static bool Applies => GemmManaged.IsAccelerated && Gemm.Effective == GemmBackend.Managed;

    /// <summary>A parameter as VarBuilder makes one: engine-owned storage, wants a gradient.</summary>
    private static Tensor Param(int outF, int inF, Rng rng) => Tensor.Randn([outF, inF], rng).RequireGrad();

    private static Tensor NoGradLinear(Tensor x, Tensor w, Tensor? b, bool gelu = false)
    {
        using (Tensor.NoGrad()) return F.Linear(x, w, b, gelu);
    }

    private static Tensor InferenceLinear(Tensor x, Tensor w, Tensor? b, bool gelu = false)
    {
        using (Tensor.Inference()) return F.Linear(x, w, b, gelu);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(197, false)]
    [InlineData(197, true)]
    [InlineData(600, true)]
    public void InferenceLinear_SameBitsAsNoGrad_AndPacksOnce(int rows, bool gelu)
    {
        var rng = new Rng((ulong)rows);
        var x = Tensor.Randn([rows, 96], rng);
        var w = Param(130, 96, rng);
        var b = Tensor.Randn([130], rng).RequireGrad();
        var expected = NoGradLinear(x, w, b, gelu);
        Assert.False(PackedWeights.IsPacked(w));
        var first = InferenceLinear(x, w, b, gelu);
        TensorAssert.Equal(expected, first, "first inference call");
        Assert.Equal(Applies, PackedWeights.IsPacked(w));
        var second = InferenceLinear(x, w, b, gelu);
        TensorAssert.Equal(expected, second, "reused pack");
    }

    public static TheoryData<string> Writes() => ["span", "indexer", "copy_from", "add_in_place"];

    [Theory]
    [MemberData(nameof(Writes))]
    public void EveryWriteThroughTheTensorApis_IsSeenByTheNextInferenceCall(string how)
    {
        var rng = new Rng(21);
        var x = Tensor.Randn([5, 40], rng);
        var w = Param(70, 40, rng);
        var before = InferenceLinear(x, w, null);
        Assert.Equal(Applies, PackedWeights.IsPacked(w));
        using (Tensor.NoGrad())
        {
            switch (how)
            {
                case "span": w.Span[3 * 40 + 7] += 5f; break;
                case "indexer": w[3, 7] = w[3, 7] + 5f; break;
                case "copy_from": w.CopyFrom(Tensor.Randn([70, 40], rng)); break;
                default: w.AddInPlace(Tensor.Randn([70, 40], rng)); break;
            }
        }
        Assert.False(PackedWeights.IsPacked(w));
        var after = InferenceLinear(x, w, null);
        TensorAssert.Equal(NoGradLinear(x, w, null), after, how);
        Assert.NotEqual(before.ToArray(), after.ToArray());
        Assert.Equal(Applies, PackedWeights.IsPacked(w));
    }

    [Fact]
    public void CallerHeldArray_IsNeverPacked_AndItsChangesAreSeen()
    {
        var rng = new Rng(22);
        var x = Tensor.Randn([4, 16], rng);
        var data = Tensor.Randn([24, 16], rng).ToArray();
        var w = Tensor.FromArray(data, 24, 16).RequireGrad();
        var before = InferenceLinear(x, w, null);
        Assert.False(PackedWeights.IsPacked(w));
        data[5] += 3f;                                          // behind the tensor's back
        var after = InferenceLinear(x, w, null);
        Assert.NotEqual(before.ToArray(), after.ToArray());
        TensorAssert.Equal(NoGradLinear(x, w, null), after);
    }

    [Fact]
    public void OnlyInsideInference_AndNotWhenRecordingOrForTemporaries()
    {
        var rng = new Rng(23);
        var x = Tensor.Randn([3, 16], rng);
        var w = Param(20, 16, rng);
        NoGradLinear(x, w, null);
        Assert.False(PackedWeights.IsPacked(w));
        using (Tensor.Inference())
        using (GradMode.Enable())
        {
            Assert.False(GradMode.IsInference);
            var y = F.Linear(x, w, null);
            Assert.NotNull(y.GradFn);
        }
        Assert.False(PackedWeights.IsPacked(w));
        // A weight computed per call (no name, no gradient wanted) is fresh storage each time: not cached.
        var temp = w.Detach().Mul(2f);
        var y2 = InferenceLinear(x, temp, null);
        Assert.False(PackedWeights.IsPacked(temp));
        TensorAssert.Equal(NoGradLinear(x, temp, null), y2);
        // A transposed view is not contiguous: packed per call, same values.
        var wt = Param(16, 20, rng);
        var view = wt.T;
        TensorAssert.Equal(NoGradLinear(x, view, null), InferenceLinear(x, view, null));
    }

    [Fact]
    public void ViewsOfOneStorage_ArePackedApart()
    {
        // A fused in-projection cut into q and k weights: one storage, two offsets.
        var rng = new Rng(24);
        var x = Tensor.Randn([6, 32], rng);
        var fused = Param(80, 32, rng);
        Tensor q, k;
        using (Tensor.NoGrad())
        {
            q = fused.Narrow(0, 0, 40); q.Name = "q";
            k = fused.Narrow(0, 40, 40); k.Name = "k";
        }
        var yq = InferenceLinear(x, q, null);
        var yk = InferenceLinear(x, k, null);
        TensorAssert.Equal(NoGradLinear(x, q, null), yq, "q");
        TensorAssert.Equal(NoGradLinear(x, k, null), yk, "k");
        Assert.Equal(Applies, PackedWeights.IsPacked(q));
        Assert.Equal(Applies, PackedWeights.IsPacked(k));
    }

    [Fact]
    public void OverBudget_PacksPerCallInstead()
    {
        var rng = new Rng(25);
        var x = Tensor.Randn([3, 64], rng);
        var w = Param(64, 64, rng);
        PackedWeights.FlowBudget.Value = 1024;
        try
        {
            var y = InferenceLinear(x, w, null);
            Assert.False(PackedWeights.IsPacked(w));
            TensorAssert.Equal(NoGradLinear(x, w, null), y);
        }
        finally { PackedWeights.FlowBudget.Value = null; }
    }

    [Fact]
    public void InferenceScope_NestsAndRestores()
    {
        Assert.False(GradMode.IsInference);
        using (Tensor.Inference())
        {
            Assert.True(GradMode.IsInference);
            Assert.False(GradMode.IsEnabled);
            using (Tensor.NoGrad()) Assert.True(GradMode.IsInference);
            using (GradMode.Enable()) Assert.False(GradMode.IsInference);
            Assert.True(GradMode.IsInference);
        }
        Assert.False(GradMode.IsInference);
        Assert.True(GradMode.IsEnabled);
        using (Tensor.NoGrad()) Assert.False(GradMode.IsInference);
    }
}
