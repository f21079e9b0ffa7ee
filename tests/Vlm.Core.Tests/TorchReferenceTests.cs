using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>Element-wise ops and reductions against PyTorch 1.13 CPU outputs (Data/torch_elementwise.py).</summary>
public class TorchReferenceTests
{
    private static readonly Lazy<Dictionary<string, Tensor>> Ref = new(() =>
        SafeTensors.Load(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Core.Tests", "Data", "torch_elementwise.safetensors")));

    private static Tensor R(string name) => Ref.Value[name];

    /// <summary>|ours − torch| ≤ atol·max(1, |x|) + rtol·|torch|, per element (atol scales with |x| because torch's
    /// own float kernels, e.g. 1 + erf(x/√2) in GELU, carry absolute errors proportional to |x|).</summary>
    private static void Close(string what, Tensor x, Tensor expected, Tensor actual, float rtol, float atol)
    {
        var xs = x.ToArray(); var e = expected.ToArray(); var a = actual.ToArray();
        Assert.Equal(e.Length, a.Length);
        for (int i = 0; i < e.Length; i++)
        {
            if (float.IsNaN(e[i]) && float.IsNaN(a[i])) continue;
            if (float.IsInfinity(e[i]) && e[i] == a[i]) continue;
            double tol = atol * Math.Max(1, Math.Abs(xs[i])) + rtol * Math.Abs(e[i]);
            if (!(Math.Abs(a[i] - e[i]) <= tol))
                Assert.Fail($"{what}({xs[i]:R}): ours {a[i]:R}, torch {e[i]:R} (diff {Math.Abs(a[i] - e[i]):G3}, tol {tol:G3})");
        }
    }

    [Fact]
    public void TranscendentalsMatchTorch()
    {
        var x = R("x"); var ax = R("ax");
        Close("exp", x, R("exp"), x.Exp(), 3e-7f, 0f);
        Close("log", ax, R("log"), ax.Log(), 2e-7f, 1e-7f);
        Close("sqrt", ax, R("sqrt"), ax.Sqrt(), 0f, 0f);      // correctly rounded on both sides
        Close("rsqrt", ax, R("rsqrt"), ax.Rsqrt(), 2.5e-7f, 0f);
        Close("pow", ax, R("pow_1_7"), ax.Pow(1.7f), 3e-7f, 0f);
        Close("tanh", x, R("tanh"), x.Tanh(), 3e-7f, 1e-38f);
        Close("sigmoid", x, R("sigmoid"), x.Sigmoid(), 3e-7f, 1e-38f);
        Close("erf", x, R("erf"), x.Erf(), 3e-7f, 1.5e-7f);
        Close("gelu", x, R("gelu"), x.Gelu(), 3e-7f, 1.5e-7f);
        Close("gelu_tanh", x, R("gelu_tanh"), x.GeluTanh(), 5e-7f, 1e-7f);
        Close("silu", x, R("silu"), x.Silu(), 3e-7f, 1e-37f);
        Close("quick_gelu", x, R("quick_gelu"), x.QuickGelu(), 3e-7f, 1e-7f);
    }

    [Fact]
    public void DerivativesMatchTorchAutograd()
    {
        var xd = R("xd");
        Tensor D(Func<Tensor, Tensor> f)
        {
            var t = xd.Clone().RequireGrad();
            f(t).Sum().Backward();
            return t.Grad!;
        }
        Close("gelu'", xd, R("d_gelu"), D(t => t.Gelu()), 1e-6f, 3e-7f);
        Close("gelu_tanh'", xd, R("d_gelu_tanh"), D(t => t.GeluTanh()), 1e-6f, 3e-7f);
        Close("silu'", xd, R("d_silu"), D(t => t.Silu()), 1e-6f, 3e-7f);
        Close("tanh'", xd, R("d_tanh"), D(t => t.Tanh()), 1e-6f, 3e-7f);
        Close("sigmoid'", xd, R("d_sigmoid"), D(t => t.Sigmoid()), 1e-6f, 3e-7f);
        Close("quick_gelu'", xd, R("d_quick_gelu"), D(t => t.QuickGelu()), 1e-6f, 3e-7f);
    }

    [Fact]
    public void ReductionsMatchTorch()
    {
        var m = R("m");
        TensorAssert.Close(R("var1"), m.Var(1), 1e-6f, 1e-6f, "var");
        TensorAssert.Close(R("var0_pop"), m.T.Var(1, unbiased: false), 1e-6f, 1e-6f, "var (population, transposed)");
        TensorAssert.Close(R("std1"), m.Std(1), 1e-6f, 1e-6f, "std");
        TensorAssert.Close(R("lse1"), m.LogSumExp(1), 1e-6f, 1e-6f, "logsumexp");
        TensorAssert.Close(R("lse0"), m.LogSumExp(0), 1e-6f, 1e-6f, "logsumexp dim 0");
        TensorAssert.Close(R("cumsum1"), m.Cumsum(1), 1e-5f, 1e-6f, "cumsum");
        TensorAssert.Close(R("amax1"), m.Amax([1]), 0f, 0f, "amax");
        Assert.Equal(R("argmax0").ToInt64Array(), m.ArgMax(0).ToInt64Array());
    }
}
