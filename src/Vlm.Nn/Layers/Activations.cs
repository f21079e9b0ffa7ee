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

    /// <summary>The GEMM epilogue computing activation <paramref name="name"/> exactly as <see cref="Get"/>'s function
    /// does (the same kernel, so the same bits), or null when there is none and the activation must run as its own op.
    /// "linear" maps to <see cref="Vlm.Core.Kernels.GemmEpilogue.None"/>.</summary>
    public static Vlm.Core.Kernels.GemmEpilogue? Epilogue(string name) => name switch
    {
        "gelu" or "gelu_python" => Vlm.Core.Kernels.GemmEpilogue.Gelu,
        "quick_gelu" => Vlm.Core.Kernels.GemmEpilogue.QuickGelu,
        "linear" => Vlm.Core.Kernels.GemmEpilogue.None,
        _ => null,
    };

    /// <param name="field">The config field the name came from, for the error message.</param>
    public static Func<Tensor, Tensor> Get(string name, string field = "hidden_act")
    {
        ArgumentNullException.ThrowIfNull(name);
        return Table.TryGetValue(name, out var f) ? f
            : throw new ArgumentException($"unknown activation '{name}' in {field}; supported: {string.Join(", ", Table.Keys.Order(StringComparer.Ordinal))}");
    }
}
