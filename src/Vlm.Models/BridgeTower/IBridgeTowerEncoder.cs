// What the training heads need from a two-tower + cross-modal encoder: the towers (for uni-modal pre-training and
// the contrastive embeddings) and one forward producing BridgeTower's outputs. BridgeTower (bridged, arXiv
// 2206.08657) and METER (unbridged, arXiv 2111.02387; Vlm.Models.Meter) both implement it over the same layers.
using Vlm.Core;

namespace Vlm.Models.BridgeTower;

public interface IBridgeTowerEncoder
{
    BridgeTowerConfig Config { get; }
    BtContext Context { get; }
    BtTextEmbeddings TextEmbeddings { get; }
    IReadOnlyList<BtTextLayer> TextLayers { get; }
    BtVisionTransformer Vision { get; }
    /// <summary>(token types, hidden): row 0 text, row 1 image.</summary>
    Tensor TokenTypeEmbeddings { get; }

    /// <param name="inputIds">(B, L) int64 ids</param>
    /// <param name="attentionMask">(B, L) 1 = token, 0 = padding; null = all ones</param>
    /// <param name="pixelValues">(B, 3, H, W)</param>
    BridgeTowerModelOutput Forward(Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, BridgeTowerForwardOptions? options = null);
}
