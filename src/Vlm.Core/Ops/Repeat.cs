using Vlm.Core.Autograd;

namespace Vlm.Core;

/// <summary>torch.repeat / tril / triu.</summary>
public sealed partial class Tensor
{
    /// <summary>Tiles the tensor <paramref name="repeats"/>[i] times along dim i (extra leading repeats add dims),
    /// like torch's Tensor.repeat. Built from view ops, so the gradient sums the tiles.</summary>
    public Tensor Repeat(params int[] repeats)
    {
        if (repeats.Length < Rank)
            throw new ArgumentException($"repeat: {repeats.Length} repeats for a tensor of rank {Rank} ({ShapeString}); give at least one per dim");
        foreach (var rp in repeats) if (rp < 0) throw new ArgumentException($"repeat: negative count in [{string.Join(", ", repeats)}]");
        int lead = repeats.Length - Rank;
        var padded = Enumerable.Repeat(1, lead).Concat(_shape).ToArray();
        var inter = new int[2 * padded.Length];   // (1, s0, 1, s1, …)
        var expanded = new int[2 * padded.Length]; // (r0, s0, r1, s1, …)
        var outShape = new int[padded.Length];
        for (int i = 0; i < padded.Length; i++)
        {
            inter[2 * i] = 1; inter[2 * i + 1] = padded[i];
            expanded[2 * i] = repeats[i]; expanded[2 * i + 1] = padded[i];
            outShape[i] = repeats[i] * padded[i];
        }
        return Reshape(inter).Expand(expanded).Reshape(outShape);
    }

    /// <summary>Lower triangle of the last two dims: keeps [i, j] where j − i ≤ <paramref name="diagonal"/>.</summary>
    public Tensor Tril(int diagonal = 0) => Triangle(diagonal, lower: true);

    /// <summary>Upper triangle of the last two dims: keeps [i, j] where j − i ≥ <paramref name="diagonal"/>.</summary>
    public Tensor Triu(int diagonal = 0) => Triangle(diagonal, lower: false);

    private Tensor Triangle(int diagonal, bool lower)
    {
        if (Rank < 2) throw new ArgumentException($"{(lower ? "tril" : "triu")} needs at least 2 dims, got {ShapeString}");
        Tensor r;
        using (GradMode.Disable()) r = Clone();
        int rows = _shape[^2], cols = _shape[^1];
        int mats = rows * cols == 0 ? 0 : Numel / (rows * cols);
        var arr = r.RawArray;
        for (int m = 0; m < mats; m++)
            for (int i = 0; i < rows; i++)
            {
                // zero the columns outside the triangle in row i
                int keepLo = lower ? 0 : Math.Clamp(i + diagonal, 0, cols);
                int keepHi = lower ? Math.Clamp(i + diagonal + 1, 0, cols) : cols; // [keepLo, keepHi) kept
                int b = (m * rows + i) * cols;
                if (keepLo > 0) Array.Clear(arr, b, keepLo);
                if (keepHi < cols) Array.Clear(arr, b + keepHi, cols - keepHi);
            }
        if (DType != DType.Float32) return r;
        return Recorder.Record(r, lower ? "tril" : "triu", [this], g => [g.Triangle(diagonal, lower)]);
    }
}
