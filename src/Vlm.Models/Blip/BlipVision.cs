// BLIP vision encoder (arXiv 2201.12086 §3.1: a ViT whose [CLS] embedding summarises the image), with the parameter
// names and semantics of HF transformers v4.47.1 `modeling_blip.py` (BlipVisionEmbeddings, BlipAttention, BlipMLP,
// BlipEncoderLayer, BlipVisionModel): pre-LN blocks, fused qkv projection, post_layernorm on the last hidden state.
// TODO(consolidation): CLIP-like ViT blocks also live in BridgeTower (BtResidualAttention, different names/layout);
// a shared pre-LN ViT block could serve both once BridgeTower's owner is done.
using Vlm.Core;
using Vlm.Nn;

namespace Vlm.Models.Blip;

/// <summary>Patch + class embeddings and (optionally bicubically interpolated) position embeddings.</summary>
public sealed class BlipVisionEmbeddings : Module
{
    private readonly BlipVisionConfig _c;
    public Tensor ClassEmbedding { get; }     // (1, 1, D)
    public Conv2d PatchEmbedding { get; }
    public Tensor PositionEmbedding { get; }  // (1, 1 + N, D)

    public BlipVisionEmbeddings(VarBuilder vb, BlipVisionConfig c, float initRange)
    {
        _c = c;
        int d = c.HiddenSize;
        ClassEmbedding = vb.Param("class_embedding", [1, 1, d], Init.TruncatedNormal(0f, initRange, -2f * initRange, 2f * initRange));
        PatchEmbedding = Add(new Conv2d(3, d, c.PatchSize, vb["patch_embedding"], stride: c.PatchSize, weightInit: Init.Normal(0f, initRange), biasInit: Init.Zeros));
        PositionEmbedding = vb.Param("position_embedding", [1, c.NumPatches + 1, d], Init.TruncatedNormal(0f, initRange, -2f * initRange, 2f * initRange));
        vb.Ignore("position_ids");
    }

    /// <summary>(B, 3, H, W) → (B, 1 + patches, D).</summary>
    public Tensor Forward(Tensor pixels, bool interpolatePosEncoding)
    {
        if (pixels.Rank != 4 || pixels.Size(1) != 3)
            throw new ArgumentException($"pixel_values must be (batch, 3, H, W), got {pixels.ShapeString}");
        int b = pixels.Size(0), h = pixels.Size(2), w = pixels.Size(3), d = _c.HiddenSize;
        if (h < _c.PatchSize || w < _c.PatchSize) throw new ArgumentException($"image {h}x{w} is smaller than one {_c.PatchSize}x{_c.PatchSize} patch");
        var x = pixels.DType == DType.Float32 ? pixels : pixels.To(DType.Float32);
        var patches = PatchEmbedding.Forward(x);                                     // (B, D, gh, gw)
        int gh = patches.Size(2), gw = patches.Size(3);
        var flat = patches.Reshape(b, d, gh * gw);
        var tokens = flat.Transpose(1, 2);                                           // (B, N, D)
        var cls = ClassEmbedding.Expand(b, 1, d);
        var emb = Tensor.Cat([cls, tokens], 1);                                      // (B, 1+N, D)
        Intermediates.FreeAll(patches, flat, tokens, cls);
        Intermediates.Free(x, keep: pixels);
        Tensor pos;
        if (interpolatePosEncoding) pos = Interpolated(gh, gw, h == w);
        else
        {
            int n = emb.Size(1);
            if (n > PositionEmbedding.Size(1))
                throw new ArgumentException($"image {h}x{w} gives {n - 1} patches but vision_config.image_size {_c.ImageSize} has only {PositionEmbedding.Size(1) - 1} position embeddings; pass interpolate_pos_encoding");
            pos = n == PositionEmbedding.Size(1) ? PositionEmbedding : PositionEmbedding.Narrow(1, 0, n);
        }
        var y = emb.Add(pos);
        Intermediates.Free(emb);
        Intermediates.Free(pos, keep: PositionEmbedding);
        return y;
    }

    /// <summary>HF interpolate_pos_encoding: the patch grid of positions resized bicubically (align_corners=False)
    /// to (gh, gw); the class position is kept. Skipped for a square image with the configured patch count.</summary>
    private Tensor Interpolated(int gh, int gw, bool square)
    {
        int n = PositionEmbedding.Size(1) - 1, d = PositionEmbedding.Size(2);
        if (gh * gw == n && square) return PositionEmbedding;
        int s = (int)Math.Sqrt(n);
        if (s * s != n) throw new InvalidOperationException($"position table of {n} patches is not a square grid");
        var grid = PositionEmbedding.Narrow(1, 1, n).Reshape(1, s, s, d).Permute(0, 3, 1, 2);   // (1, D, s, s)
        var resized = F.InterpolateBicubic(grid.Contiguous(), gh, gw, alignCorners: false);      // (1, D, gh, gw)
        var flat = resized.Permute(0, 2, 3, 1).Reshape(1, gh * gw, d);
        return Tensor.Cat([PositionEmbedding.Narrow(1, 0, 1), flat], 1);
    }
}

/// <summary>HF BlipAttention: fused qkv Linear, softmax(q·kᵀ·d^-½), projection.</summary>
public sealed class BlipVisionAttention : Module
{
    private readonly Linear _qkv, _proj;
    private readonly int _heads, _d;
    private readonly Dropout _drop;

    public BlipVisionAttention(VarBuilder vb, BlipVisionConfig c, Initializer init)
    {
        _d = c.HiddenSize; _heads = c.NumAttentionHeads;
        _qkv = Add(new Linear(_d, 3 * _d, vb["qkv"], weightInit: init, biasInit: Init.Zeros));
        _proj = Add(new Linear(_d, _d, vb["projection"], weightInit: init, biasInit: Init.Zeros));
        _drop = Add(new Dropout(c.AttentionDropout, vb));
    }

    public Tensor Forward(Tensor x) // (B, N, D)
    {
        int b = x.Size(0), n = x.Size(1), hd = _d / _heads;
        var fused = _qkv.Forward(x);                                                        // (B, N, 3D)
        var split = fused.Reshape(b, n, 3, _heads, hd);
        var qkv = split.Permute(2, 0, 3, 1, 4);                                              // (3, B, H, N, hd)
        Tensor q = qkv.Select(0, 0), k = qkv.Select(0, 1), v = qkv.Select(0, 2);
        var ctx = AttentionOps.ScaledDotProduct(q, k, v, null, _drop);                     // (B, H, N, hd)
        var merged = AttentionOps.MergeHeads(ctx);                                           // (B, N, D)
        var y = _proj.Forward(merged);
        Intermediates.FreeAll(fused, split, qkv, q, k, v, ctx, merged);
        return y;
    }
}

/// <summary>HF BlipEncoderLayer: x + attn(LN1(x)); then + fc2(act(fc1(LN2(·)))).</summary>
public sealed class BlipVisionLayer : Module
{
    private readonly BlipVisionAttention _attn;
    private readonly LayerNorm _ln1, _ln2;
    private readonly Linear _fc1, _fc2;
    private readonly Func<Tensor, Tensor> _act;
    private readonly Vlm.Core.Kernels.GemmEpilogue? _fusedAct;

    public BlipVisionLayer(VarBuilder vb, BlipVisionConfig c, Initializer init)
    {
        _attn = Add(new BlipVisionAttention(vb["self_attn"], c, init));
        _ln1 = Add(new LayerNorm(c.HiddenSize, vb["layer_norm1"], c.LayerNormEps));
        _fc1 = Add(new Linear(c.HiddenSize, c.IntermediateSize, vb["mlp"]["fc1"], weightInit: init, biasInit: Init.Zeros));
        _fc2 = Add(new Linear(c.IntermediateSize, c.HiddenSize, vb["mlp"]["fc2"], weightInit: init, biasInit: Init.Zeros));
        _ln2 = Add(new LayerNorm(c.HiddenSize, vb["layer_norm2"], c.LayerNormEps));
        _act = Activations.Get(c.HiddenAct, "vision_config.hidden_act");
        _fusedAct = Activations.Epilogue(c.HiddenAct);
    }

    public Tensor Forward(Tensor x)
    {
        var n1 = _ln1.Forward(x);
        var a = _attn.Forward(n1);
        Intermediates.Free(n1);
        var h = x.Add(a);
        Intermediates.Free(a);
        var n2 = _ln2.Forward(h);
        var f = Mlp(n2);
        Intermediates.Free(n2);
        var y = h.Add(f);
        Intermediates.Free(f);
        Intermediates.Free(h);
        return y;
    }

    /// <summary>fc2(act(fc1(x))), the activation in fc1's GEMM epilogue when it has one.</summary>
    private Tensor Mlp(Tensor x)
    {
        var g = _fc1.Forward(x, _act, _fusedAct);
        var y = _fc2.Forward(g);
        Intermediates.Free(g);
        return y;
    }
}

/// <summary>HF BlipVisionModel (under `vision_model`): embeddings, encoder.layers, post_layernorm.</summary>
public sealed class BlipVisionModel : Module
{
    public BlipVisionConfig Config { get; }
    public BlipVisionEmbeddings Embeddings { get; }
    public IReadOnlyList<BlipVisionLayer> Layers { get; }
    private readonly LayerNorm _post;

    public BlipVisionModel(VarBuilder vb, BlipVisionConfig c, float initRange)
    {
        Config = c;
        var init = Init.Normal(0f, initRange);
        Embeddings = Add(new BlipVisionEmbeddings(vb["embeddings"], c, initRange));
        Layers = Enumerable.Range(0, c.NumHiddenLayers).Select(i => Add(new BlipVisionLayer(vb["encoder"]["layers"][i], c, init))).ToList();
        _post = Add(new LayerNorm(c.HiddenSize, vb["post_layernorm"], c.LayerNormEps));
    }

    /// <summary>last_hidden_state after post_layernorm: (B, 1 + patches, D).</summary>
    public Tensor Forward(Tensor pixels, bool interpolatePosEncoding = false)
    {
        var h = Embeddings.Forward(pixels, interpolatePosEncoding);
        foreach (var l in Layers)
        {
            var next = l.Forward(h);
            Intermediates.Free(h);
            h = next;
        }
        var y = _post.Forward(h);
        Intermediates.Free(h);
        return y;
    }
}
