using Vlm.Core;
using Vlm.Nn.Internal;

namespace Vlm.Nn;

/// <summary>
/// HF config activation names (transformers' ACT2FN, the <c>hidden_act</c> field) mapped to functions.
/// "gelu" is the exact erf form; "gelu_new", "gelu_fast" and "gelu_pytorch_tanh" are the tanh approximation
/// (equal formulas, differing only in HF's rounding of constants); "quick_gelu" is x·σ(1.702x) (CLIP).
/// </summary>
public static class Activations
{
    private static readonly Dictionary<string, Func<Tensor, Tensor>> Table = new(StringComparer.Ordinal)
    {
        ["gelu"] = Fallback.Gelu,
        ["gelu_python"] = Fallback.Gelu,
        ["gelu_new"] = Fallback.GeluTanh,
        ["gelu_fast"] = Fallback.GeluTanh,
        ["gelu_pytorch_tanh"] = Fallback.GeluTanh,
        ["quick_gelu"] = Fallback.QuickGelu,
        ["relu"] = Fallback.Relu,
        ["silu"] = Fallback.Silu,
        ["swish"] = Fallback.Silu,
        ["tanh"] = Fallback.Tanh,
        ["sigmoid"] = Fallback.Sigmoid,
        ["linear"] = x => x,
    };

    public static IReadOnlyCollection<string> Names => Table.Keys;

    /// <param name="field">The config field the name came from, for the error message.</param>
    public static Func<Tensor, Tensor> Get(string name, string field = "hidden_act")
    {
        ArgumentNullException.ThrowIfNull(name);
        return Table.TryGetValue(name, out var f) ? f
            : throw new ArgumentException($"unknown activation '{name}' in {field}; supported: {string.Join(", ", Table.Keys.Order(StringComparer.Ordinal))}");
    }
}
