using Vlm.Core;

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
        ["gelu"] = x => x.Gelu(),
        ["gelu_python"] = x => x.Gelu(),
        ["gelu_new"] = x => x.GeluTanh(),
        ["gelu_fast"] = x => x.GeluTanh(),
        ["gelu_pytorch_tanh"] = x => x.GeluTanh(),
        ["quick_gelu"] = x => x.QuickGelu(),
        ["relu"] = x => x.Relu(),
        ["silu"] = x => x.Silu(),
        ["swish"] = x => x.Silu(),
        ["tanh"] = x => x.Tanh(),
        ["sigmoid"] = x => x.Sigmoid(),
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
