using Vlm.Core;

namespace Vlm.Nn;

/// <summary>torch.nn.Embedding: rows of "weight" (num, dim) looked up by integer ids of any shape.</summary>
public sealed class Embedding : Module
{
    public int NumEmbeddings { get; }
    public int Dim { get; }
    public int? PaddingIdx { get; }
    public Tensor Weight { get; } // (num, dim)

    /// <param name="init">Default Normal(0, 1) like PyTorch; the padding row is zeroed after init and gets no
    /// gradient (as nn.Embedding(padding_idx=…)).</param>
    public Embedding(int numEmbeddings, int dim, VarBuilder vb, int? paddingIdx = null, Initializer? init = null)
    {
        if (numEmbeddings <= 0 || dim <= 0) throw new ArgumentException($"Embedding {vb.Prefix}: sizes must be positive, got {numEmbeddings}x{dim}");
        if (paddingIdx is int p && (p < 0 || p >= numEmbeddings)) throw new ArgumentException($"Embedding {vb.Prefix}: padding_idx {p} outside [0, {numEmbeddings})");
        NumEmbeddings = numEmbeddings;
        Dim = dim;
        PaddingIdx = paddingIdx;
        var baseInit = init ?? Init.Normal();
        Weight = vb.Param("weight", [numEmbeddings, dim], paddingIdx is int pad
            ? (t, rng) => { baseInit(t, rng); t.Span.Slice(pad * dim, dim).Clear(); }
            : baseInit);
    }

    public Tensor Forward(Tensor ids) // (...) int -> (..., dim)
    {
        if (ids.DType is not (DType.Int64 or DType.Int32))
            throw new ArgumentException($"Embedding {Weight.Name}: ids must be int64 or int32, got {ids.DType}");
        return Tensor.Embedding(Weight, ids, PaddingIdx);
    }
}
