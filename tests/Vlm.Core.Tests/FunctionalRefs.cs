using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Core.Tests;

/// <summary>PyTorch reference tensors for F.* (made by Data/functional_refs.py): inputs, outputs, a fixed upstream
/// gradient and torch's input gradients per case.</summary>
internal static class FunctionalRefs
{
    private static readonly Lazy<Dictionary<string, Tensor>> All = new(() =>
        SafeTensors.Load(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Core.Tests", "Data", "functional_refs.safetensors")));

    public static Tensor Get(string name) =>
        All.Value.TryGetValue(name, out var t) ? t.Clone() : throw new KeyNotFoundException($"reference tensor {name} missing; rerun functional_refs.py");

    /// <summary>Runs <paramref name="f"/> on the case's inputs (fresh copies), compares the output with torch's, then
    /// back-propagates torch's upstream gradient and compares the gradients of <paramref name="gradOf"/>.</summary>
    public static void Check(string name, Func<Func<string, Tensor>, Tensor> f, string[] gradOf, float atol = 1e-5f, float rtol = 1e-4f)
    {
        var inputs = new Dictionary<string, Tensor>();
        Tensor Input(string k)
        {
            if (!inputs.TryGetValue(k, out var t))
            {
                t = Get($"{name}.{k}");
                if (gradOf.Contains(k)) t.RequiresGrad = true;
                inputs[k] = t;
            }
            return t;
        }
        foreach (var k in gradOf) Input(k);
        var outT = f(Input);
        TensorAssert.Close(Get($"{name}.out"), outT, atol, rtol, $"{name} output");
        if (gradOf.Length == 0) return;
        outT.Backward(Get($"{name}.gout").Reshape(outT.ShapeArray()));
        foreach (var k in gradOf)
        {
            var g = inputs[k].Grad ?? throw new Xunit.Sdk.XunitException($"{name}: no gradient for {k}");
            TensorAssert.Close(Get($"{name}.grad.{k}"), g, atol, rtol, $"{name} gradient of {k}");
        }
    }
}
