// Building blocks of BridgeTower (arXiv 2206.08657) with the parameter names of HF transformers v4.47.1
// `modeling_bridgetower.py`: RoBERTa text layers, BERT-style cross-modal layers (self-attention, cross-attention,
// FFN, post-LN), the CLIP ViT residual blocks (nn.MultiheadAttention + QuickGELU) and the bridge ("link tower")
// layers. Semantics follow HF exactly; see BridgeTowerModel for how they are wired.
using Vlm.Core;
using Vlm.Nn;

namespace Vlm.Models.BridgeTower;

/// <summary>
/// Where parameters come from: a <see cref="VarBuilder"/> (load or initialise), or a dry run that only records
/// names and shapes (the weight-structure check builds full-size models this way without allocating them:
/// a dry parameter is a zero-stride view of one float).
/// </summary>
public sealed class BtVars
{
    private readonly VarBuilder? _vb;
    private readonly List<KeyValuePair<string, int[]>>? _dry;
    private readonly string _prefix;

    private BtVars(VarBuilder? vb, List<KeyValuePair<string, int[]>>? dry, string prefix) { _vb = vb; _dry = dry; _prefix = prefix; }

    public static BtVars From(VarBuilder vb) => new(vb, null, "");

    /// <summary>A dry builder: parameters are recorded into <paramref name="sink"/>, no memory is allocated.</summary>
    public static BtVars Dry(List<KeyValuePair<string, int[]>> sink) => new(null, sink, "");

    public bool IsDry => _dry != null;
    public bool IsLoading => _vb?.IsLoading ?? false;
    public VarBuilder? Builder => _vb;

    public BtVars this[string name] => new(_vb?[name], _dry, Join(name));
    public BtVars this[int index] => this[index.ToString(System.Globalization.CultureInfo.InvariantCulture)];

    private string Join(string name) => _prefix.Length == 0 ? name : _prefix + "." + name;

    /// <summary>True when the checkpoint holds this key (false when initialising or dry).</summary>
    public bool Has(string name) => _vb?.Has(name) ?? false;

    public Tensor Param(string name, int[] shape, Initializer init)
    {
        if (_dry != null)
        {
            _dry.Add(new(Join(name), (int[])shape.Clone()));
            return Tensor.Zeros(Enumerable.Repeat(1, shape.Length).ToArray()).Expand(shape);
        }
        return _vb!.Param(name, shape, init);
    }

    public Tensor Tie(string name, Tensor existing)
    {
        if (_dry != null)
        {
            _dry.Add(new(Join(name), existing.ShapeArray()));
            return existing;
        }
        return _vb!.Tie(name, existing);
    }

    public void Ignore(string name) => _vb?.Ignore(name);
}

/// <summary>Per-model state the layers share: the dropout stream.</summary>
public sealed class BtContext
{
    public Rng DropoutRng { get; set; } = new(0x5eed);
}

/// <summary>HF ACT2FN names used by BridgeTower configs.</summary>
public static class BridgeTowerActivations
{
    public static readonly string[] Known = ["gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "silu", "swish", "tanh"];

    public static bool IsKnown(string name) => Known.Contains(name);

    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "gelu" => x.Gelu(),
        "relu" => x.Relu(),
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => x.GeluTanh(),
        "quick_gelu" => x.QuickGelu(),
        "silu" or "swish" => x.Silu(),
        "tanh" => x.Tanh(),
        _ => throw new ArgumentException($"unsupported activation '{name}'"),
    };
}

internal static class BtInit
{
    /// <summary>HF BridgeTower `_init_weights`: Linear / Conv / Embedding weights N(0, 0.05·factor).</summary>
    public static Initializer Weight(float factor) => Init.Normal(0f, 0.05f * factor);

    /// <summary>Applies view ops in turn, disposing the in-between views (the result keeps the storage alive).</summary>
    public static Tensor Chain(Tensor x, params Func<Tensor, Tensor>[] ops)
    {
        var cur = x;
        foreach (var op in ops)
        {
            var next = op(cur);
            if (!ReferenceEquals(cur, x) && !ReferenceEquals(next, cur)) Free(cur);
            cur = next;
        }
        return cur;
    }

    /// <summary>Disposes an intermediate in no-grad inference (a no-op for tensors the graph keeps).</summary>
    public static void Free(Tensor? t) => Intermediates.Free(t);
}

/// <summary>nn.Linear: y = x Wᵀ + b, W (out, in).</summary>
public sealed class BtLinear : Module
{
    public Tensor Weight { get; }
    public Tensor? Bias { get; }

    public BtLinear(BtVars vb, int inFeatures, int outFeatures, bool bias = true, Initializer? init = null)
    {
        Weight = vb.Param("weight", [outFeatures, inFeatures], init ?? BtInit.Weight(1f));
        Bias = bias ? vb.Param("bias", [outFeatures], Init.Zeros) : null;
    }

    // One GEMM with the bias added in its epilogue (no second pass, no temporary).
    public Tensor Forward(Tensor x) => F.Linear(x, Weight, Bias);

    /// <summary>gelu(Forward(x)) (exact erf GELU), fused into the GEMM epilogue in no-grad inference.</summary>
    public Tensor ForwardGelu(Tensor x) => F.Linear(x, Weight, Bias, gelu: true);

    /// <summary>quick_gelu(Forward(x)) (CLIP's x·σ(1.702x)), fused into the GEMM epilogue in no-grad inference.</summary>
    public Tensor ForwardQuickGelu(Tensor x) => F.Linear(x, Weight, Bias, Vlm.Core.Kernels.GemmEpilogue.QuickGelu);
}

/// <summary>nn.LayerNorm over the last dim.</summary>
public sealed class BtLayerNorm : Module
{
    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public float Eps { get; }
    private readonly int _n;

    public BtLayerNorm(BtVars vb, int n, float eps)
    {
        _n = n; Eps = eps;
        Weight = vb.Param("weight", [n], Init.Ones);
        Bias = vb.Param("bias", [n], Init.Zeros);
    }

    public Tensor Forward(Tensor x) => F.LayerNorm(x, [_n], Weight, Bias, Eps);
}

/// <summary>
/// BERT/RoBERTa multi-head attention (HF `BridgeTowerSelfAttention`): self-attention, or cross-attention when
/// <c>encoderHidden</c> is given (keys/values from it, mask = the encoder mask). Optional BERT relative-position
/// terms (`distance_embedding`) for relative_key / relative_key_query, applied in cross-attention too, as HF does.
/// </summary>
public sealed class BtSelfAttention : Module
{
    private readonly BtLinear _query, _key, _value;
    private readonly Tensor? _distance;
    private readonly int _heads, _headDim, _maxPos;
    private readonly TextPositionEmbedding _posType;
    private readonly float _dropout;
    private readonly BtContext _ctx;

    public BtSelfAttention(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        _ctx = ctx;
        _heads = c.NumAttentionHeads; _headDim = c.HiddenSize / c.NumAttentionHeads;
        var init = BtInit.Weight(c.InitializerFactor);
        _query = Add(new BtLinear(vb["query"], c.HiddenSize, c.HiddenSize, init: init));
        _key = Add(new BtLinear(vb["key"], c.HiddenSize, c.HiddenSize, init: init));
        _value = Add(new BtLinear(vb["value"], c.HiddenSize, c.HiddenSize, init: init));
        _posType = c.PositionEmbeddingType;
        _maxPos = c.MaxPositionEmbeddings;
        if (_posType != TextPositionEmbedding.Absolute)
            _distance = vb["distance_embedding"].Param("weight", [2 * c.MaxPositionEmbeddings - 1, _headDim], init);
        _dropout = c.AttentionProbsDropoutProb;
    }

    private Tensor Heads(Tensor x) // (B, L, H·d) → (B, H, L, d)
    {
        int b = x.Size(0), l = x.Size(1);
        return BtInit.Chain(x, t => t.Reshape(b, l, _heads, _headDim), t => t.Permute(0, 2, 1, 3));
    }

    /// <param name="mask">additive mask broadcastable to (B, H, Lq, Lk), or null for none</param>
    /// <returns>context (B, Lq, H·d) and, when asked, the attention probabilities (B, H, Lq, Lk)</returns>
    public (Tensor context, Tensor? probs) Forward(Tensor hidden, Tensor? mask, Tensor? encoderHidden, bool wantProbs)
    {
        var src = encoderHidden ?? hidden;
        var ql = _query.Forward(hidden); var kl = _key.Forward(src); var vl = _value.Forward(src);
        var q = Heads(ql);                               // (B, H, Lq, d)
        var k = Heads(kl);                               // (B, H, Lk, d)
        var v = Heads(vl);                               // (B, H, Lk, d)
        // HF: softmax((q·kᵀ + rel) / √d + mask). The fused kernel computes softmax(q·kᵀ/√d + bias), so the
        // relative-position scores join the additive mask as rel / √d.
        Tensor? bias = mask;
        if (_distance != null)
        {
            int lq = q.Size(2), lk = k.Size(2);
            var idx = new long[lq * lk];
            for (int l = 0; l < lq; l++)
                for (int r = 0; r < lk; r++)
                {
                    long id = l - r + _maxPos - 1;
                    if (id < 0 || id >= 2 * _maxPos - 1)
                        throw new ArgumentException($"relative distance {l - r} exceeds text_config.max_position_embeddings ({_maxPos})");
                    idx[l * lk + r] = id;
                }
            var pos = Tensor.Embedding(_distance, Tensor.FromArray(idx, lq, lk)); // (Lq, Lk, d)
            // einsum("bhld,lrd->bhlr", q, pos)
            var rel = q.Unsqueeze(3).MatMul(pos.Transpose(-1, -2)).Squeeze(3);
            if (_posType == TextPositionEmbedding.RelativeKeyQuery)
            {
                // einsum("bhrd,lrd->bhlr", k, pos)
                var rk = k.Unsqueeze(3).MatMul(pos.Permute(1, 2, 0)).Squeeze(3).Transpose(-1, -2);
                rel = rel.Add(rk);
            }
            var relScaled = rel.Div(MathF.Sqrt(_headDim));
            bias = mask is null ? relScaled : relScaled.Add(mask);
        }
        float p = Training ? _dropout : 0f;
        Tensor ctx; Tensor? probs = null;
        if (wantProbs) (ctx, probs) = F.ScaledDotProductAttentionWithProbs(q, k, v, bias, dropoutP: p, rng: _ctx.DropoutRng);
        else ctx = F.ScaledDotProductAttention(q, k, v, bias, dropoutP: p, rng: _ctx.DropoutRng);   // (B, H, Lq, d)
        Intermediates.FreeAll(q, k, v, ql, kl, vl);
        int bsz = ctx.Size(0), len = ctx.Size(2);
        var outT = BtInit.Chain(ctx, t => t.Permute(0, 2, 1, 3), t => t.Reshape(bsz, len, _heads * _headDim));
        BtInit.Free(ctx);
        return (outT, wantProbs ? probs : null);
    }
}

/// <summary>dense → dropout → LayerNorm(x + residual): HF BridgeTowerSelfOutput / BridgeTowerOutput.</summary>
public sealed class BtResidualOutput : Module
{
    private readonly BtLinear _dense;
    private readonly BtLayerNorm _ln;
    private readonly float _dropout;
    private readonly BtContext _ctx;

    public BtResidualOutput(BtVars vb, int inSize, BridgeTowerTextConfig c, BtContext ctx)
    {
        _ctx = ctx;
        _dense = Add(new BtLinear(vb["dense"], inSize, c.HiddenSize, init: BtInit.Weight(c.InitializerFactor)));
        _ln = Add(new BtLayerNorm(vb["LayerNorm"], c.HiddenSize, c.LayerNormEps));
        _dropout = c.HiddenDropoutProb;
    }

    public Tensor Forward(Tensor x, Tensor residual)
    {
        // (F.AddLayerNorm, one pass for the add and the LayerNorm, measured no faster here at batch 8: 2600×768 rows.)
        var d = _dense.Forward(x);
        var h = F.Dropout(d, _dropout, Training, _ctx.DropoutRng);
        Intermediates.Free(d, keep: h);
        var s = h.Add(residual);
        BtInit.Free(h);
        var o = _ln.Forward(s);
        BtInit.Free(s);
        return o;
    }
}

/// <summary>HF BridgeTowerAttention: self (query/key/value) + output (dense, LayerNorm).</summary>
public sealed class BtAttention : Module
{
    public BtSelfAttention Self { get; }
    private readonly BtResidualOutput _output;

    public BtAttention(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        Self = Add(new BtSelfAttention(vb["self"], c, ctx));
        _output = Add(new BtResidualOutput(vb["output"], c.HiddenSize, c, ctx));
    }

    public (Tensor output, Tensor? probs) Forward(Tensor hidden, Tensor? mask, Tensor? encoderHidden, bool wantProbs)
    {
        var (ctxT, probs) = Self.Forward(hidden, mask, encoderHidden, wantProbs);
        var o = _output.Forward(ctxT, hidden);
        BtInit.Free(ctxT);
        return (o, probs);
    }
}

/// <summary>Feed-forward half of a BERT layer: intermediate (dense + act) and output (dense, LayerNorm).</summary>
public sealed class BtFeedForward : Module
{
    private readonly BtLinear _intermediate;
    private readonly BtResidualOutput _output;
    private readonly string _act;

    public BtFeedForward(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        _act = c.HiddenAct;
        _intermediate = Add(new BtLinear(vb["intermediate"]["dense"], c.HiddenSize, c.IntermediateSize, init: BtInit.Weight(c.InitializerFactor)));
        _output = Add(new BtResidualOutput(vb["output"], c.IntermediateSize, c, ctx));
    }

    public Tensor Forward(Tensor x)
    {
        Tensor a;
        if (_act == "gelu") a = _intermediate.ForwardGelu(x);
        else
        {
            var h = _intermediate.Forward(x);
            a = BridgeTowerActivations.Apply(_act, h);
            BtInit.Free(h);
        }
        var o = _output.Forward(a, x);
        BtInit.Free(a);
        return o;
    }
}

/// <summary>RoBERTa encoder layer (HF BridgeTowerTextLayer, encoder use: no cross-attention).</summary>
public sealed class BtTextLayer : Module
{
    private readonly BtAttention _attention;
    private readonly BtFeedForward _ffn;

    public BtTextLayer(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        _attention = Add(new BtAttention(vb["attention"], c, ctx));
        _ffn = Add(new BtFeedForward(vb, c, ctx));
    }

    public Tensor Forward(Tensor hidden, Tensor? mask)
    {
        var (a, _) = _attention.Forward(hidden, mask, null, false);
        var o = _ffn.Forward(a);
        BtInit.Free(a);
        return o;
    }
}

/// <summary>
/// Cross-modal layer (HF BridgeTowerBertCrossLayer): self-attention over its own modality, cross-attention to the
/// other modality, FFN. Returns the self-attention probabilities when asked (what HF reports as `attentions`).
/// </summary>
public sealed class BtCrossLayer : Module
{
    private readonly BtAttention _attention, _cross;
    private readonly BtFeedForward _ffn;

    public BtCrossLayer(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        _attention = Add(new BtAttention(vb["attention"], c, ctx));
        _cross = Add(new BtAttention(vb["crossattention"], c, ctx));
        _ffn = Add(new BtFeedForward(vb, c, ctx));
    }

    public (Tensor output, Tensor? selfProbs) Forward(Tensor hidden, Tensor encoderHidden, Tensor? selfMask, Tensor? encoderMask, bool wantProbs)
    {
        var (o, probs, _) = Forward(hidden, encoderHidden, selfMask, encoderMask, wantProbs, false);
        return (o, probs);
    }

    /// <summary>As above, plus (when <paramref name="wantCrossProbs"/>) the cross-attention probabilities
    /// (B, heads, L, L_other): how each token of this modality attends to the other one (attention maps).</summary>
    public (Tensor output, Tensor? selfProbs, Tensor? crossProbs) Forward(Tensor hidden, Tensor encoderHidden, Tensor? selfMask, Tensor? encoderMask,
        bool wantProbs, bool wantCrossProbs)
    {
        var (a, probs) = _attention.Forward(hidden, selfMask, null, wantProbs);
        var (c, crossProbs) = _cross.Forward(a, encoderMask, encoderHidden, wantCrossProbs);
        BtInit.Free(a);
        var o = _ffn.Forward(c);
        BtInit.Free(c);
        return (o, probs, crossProbs);
    }
}

/// <summary>RoBERTa embeddings (HF BridgeTowerTextEmbeddings): word + token type + (absolute) position, LayerNorm.
/// Positions count real tokens from pad_token_id + 1; padding keeps position pad_token_id.</summary>
public sealed class BtTextEmbeddings : Module
{
    public Tensor WordEmbeddings { get; }
    private readonly Tensor _position, _tokenType;
    private readonly BtLayerNorm _ln;
    private readonly BridgeTowerTextConfig _c;
    private readonly BtContext _ctx;

    public BtTextEmbeddings(BtVars vb, BridgeTowerTextConfig c, BtContext ctx)
    {
        _c = c; _ctx = ctx;
        var init = BtInit.Weight(c.InitializerFactor);
        WordEmbeddings = vb["word_embeddings"].Param("weight", [c.VocabSize, c.HiddenSize], init);
        _position = vb["position_embeddings"].Param("weight", [c.MaxPositionEmbeddings, c.HiddenSize], init);
        _tokenType = vb["token_type_embeddings"].Param("weight", [c.TypeVocabSize, c.HiddenSize], init);
        _ln = Add(new BtLayerNorm(vb["LayerNorm"], c.HiddenSize, c.LayerNormEps));
        // Buffers older transformers versions saved (non-persistent in v4.47.1).
        vb.Ignore("position_ids");
        vb.Ignore("token_type_ids");
    }

    /// <param name="inputIds">(B, L) int64</param>
    public Tensor Forward(Tensor inputIds)
    {
        if (inputIds.Rank != 2) throw new ArgumentException($"input_ids must be (batch, seq), got {inputIds.ShapeString}");
        int b = inputIds.Size(0), l = inputIds.Size(1);
        var ids = inputIds.ToInt64Array();
        int pad = _c.PadTokenId;
        var pos = new long[ids.Length];
        for (int i = 0; i < b; i++)
        {
            long count = 0;
            for (int j = 0; j < l; j++)
            {
                bool real = ids[i * l + j] != pad;
                if (real) count++;
                pos[i * l + j] = real ? count + pad : pad;
                if (pos[i * l + j] >= _c.MaxPositionEmbeddings)
                    throw new ArgumentException($"text of {count} tokens exceeds text_config.max_position_embeddings ({_c.MaxPositionEmbeddings}) - pad_token_id - 1");
            }
        }
        var words = Tensor.Embedding(WordEmbeddings, inputIds);                     // (B, L, D)
        var types = Tensor.Embedding(_tokenType, Tensor.FromArray(new long[] { 0 }, 1)); // (1, D): token_type_ids are zeros
        var e = words.Add(types);
        BtInit.Free(words);
        if (_c.PositionEmbeddingType == TextPositionEmbedding.Absolute)
        {
            var p = Tensor.Embedding(_position, Tensor.FromArray(pos, b, l));
            var e2 = e.Add(p);
            Intermediates.FreeAll(e, p);
            e = e2;
        }
        var o = _ln.Forward(e);
        BtInit.Free(e);
        var d = F.Dropout(o, _c.HiddenDropoutProb, Training, _ctx.DropoutRng);
        Intermediates.Free(o, keep: d);
        return d;
    }
}

/// <summary>BERT pooler: tanh(dense(x[:, 0])).</summary>
public sealed class BtPooler : Module
{
    private readonly BtLinear _dense;

    public BtPooler(BtVars vb, int hidden, float initFactor)
    {
        _dense = Add(new BtLinear(vb["dense"], hidden, hidden, init: BtInit.Weight(initFactor)));
    }

    public Tensor Forward(Tensor hidden)
    {
        var cls = hidden.Select(1, 0);             // a view: it would keep the whole hidden state's buffer
        var d = _dense.Forward(cls);
        var y = d.Tanh();
        Intermediates.FreeAll(cls, d);
        return y;
    }
}

/// <summary>
/// CLIP ViT residual block (HF BridgeTowerResidualAttention): x + MHA(ln_1(x)); then + c_proj(QuickGELU(c_fc(ln_2(·)))).
/// Works in (batch, seq, dim) layout; the maths equals HF's (seq, batch, dim) nn.MultiheadAttention (which divides q
/// by √head_dim before q·kᵀ).
/// </summary>
public sealed class BtResidualAttention : Module
{
    private readonly Tensor _inW, _inB;
    private readonly BtLinear _outProj, _fc, _proj;
    private readonly BtLayerNorm _ln1, _ln2;
    private readonly int _d, _heads;

    public BtResidualAttention(BtVars vb, BridgeTowerVisionConfig c, Initializer attnInit, Initializer projInit, Initializer fcInit)
    {
        _d = c.HiddenSize; _heads = c.NumHeads;
        var attn = vb["attn"];
        _inW = attn.Param("in_proj_weight", [3 * _d, _d], attnInit);
        _inB = attn.Param("in_proj_bias", [3 * _d], Init.Zeros);
        _outProj = Add(new BtLinear(attn["out_proj"], _d, _d, init: projInit));
        _ln1 = Add(new BtLayerNorm(vb["ln_1"], _d, c.LayerNormEps));
        _fc = Add(new BtLinear(vb["mlp"]["c_fc"], _d, 4 * _d, init: fcInit));
        _proj = Add(new BtLinear(vb["mlp"]["c_proj"], 4 * _d, _d, init: projInit));
        _ln2 = Add(new BtLayerNorm(vb["ln_2"], _d, c.LayerNormEps));
    }

    private Tensor Attention(Tensor x) // (B, N, D)
    {
        int b = x.Size(0), n = x.Size(1), hd = _d / _heads;
        var qkv = F.Linear(x, _inW, _inB);                            // (B, N, 3D)
        Tensor Split(int i) => BtInit.Chain(qkv, t => t.Narrow(-1, i * _d, _d), t => t.Reshape(b, n, _heads, hd), t => t.Permute(0, 2, 1, 3)); // (B, H, N, hd)
        // nn.MultiheadAttention (no masks): softmax(q·kᵀ/√hd)·v per head.
        Tensor q = Split(0), k = Split(1), v = Split(2);
        var ctx = F.ScaledDotProductAttention(q, k, v);                                  // (B, H, N, hd)
        Intermediates.FreeAll(q, k, v);
        var merged = BtInit.Chain(ctx, t => t.Permute(0, 2, 1, 3), t => t.Reshape(b, n, _d));
        var o = _outProj.Forward(merged);
        Intermediates.FreeAll(merged, ctx, qkv);
        return o;
    }

    public Tensor Forward(Tensor x)
    {
        var l1 = _ln1.Forward(x);
        var a = Attention(l1);
        BtInit.Free(l1);
        var r = x.Add(a);
        BtInit.Free(a);
        var l2 = _ln2.Forward(r);
        var g = _fc.ForwardQuickGelu(l2);
        BtInit.Free(l2);
        var p = _proj.Forward(g);
        BtInit.Free(g);
        var o = r.Add(p);
        Intermediates.FreeAll(p, r);
        return o;
    }
}

/// <summary>
/// The CLIP ViT of BridgeTower (HF BridgeTowerVisionTransformer under `vision_model.visual`): patch embedding
/// (stride = kernel, computed as unfold + GEMM), class token, position embeddings (bicubically interpolated for other
/// image sizes on request), ln_pre, resblocks, ln_post, optional per-layer ln_separate.
/// </summary>
public sealed class BtVisionTransformer : Module
{
    public BridgeTowerVisionConfig Config { get; }
    public Tensor ClassEmbedding { get; }
    public Tensor PatchWeight { get; }
    public Tensor PositionEmbedding { get; }
    private readonly BtLayerNorm _lnPre, _lnPost;
    public IReadOnlyList<BtResidualAttention> Blocks { get; }
    public IReadOnlyList<BtLayerNorm>? LnSeparate { get; }

    public BtVisionTransformer(BtVars vb, BridgeTowerVisionConfig c, bool initLnSeparateFromLnPost)
    {
        Config = c;
        int d = c.HiddenSize, grid = c.ImageSize / c.PatchSize;
        float f = c.InitializerFactor;
        // HF _init_weights for the vision tower.
        float attnStd = MathF.Pow(d, -0.5f), projStd = attnStd * MathF.Pow(2 * c.NumHiddenLayers, -0.5f), fcStd = MathF.Pow(2 * d, -0.5f);
        var emb = vb["embeddings"];
        ClassEmbedding = emb.Param("class_embedding", [d], Init.Normal(0f, attnStd * f));
        PatchWeight = emb["patch_embedding"].Param("weight", [d, c.NumChannels, c.PatchSize, c.PatchSize], BtInit.Weight(f));
        PositionEmbedding = emb["position_embedding"].Param("weight", [grid * grid + 1, d], Init.Normal(0f, attnStd * f));
        emb.Ignore("position_ids");
        _lnPre = Add(new BtLayerNorm(vb["ln_pre"], d, c.LayerNormEps));
        var blocks = new List<BtResidualAttention>();
        for (int i = 0; i < c.NumBlocks; i++)
            blocks.Add(Add(new BtResidualAttention(vb["transformer"]["resblocks"][i], c,
                Init.Normal(0f, attnStd * f), Init.Normal(0f, projStd * f), Init.Normal(0f, fcStd * f))));
        Blocks = blocks;
        _lnPost = Add(new BtLayerNorm(vb["ln_post"], d, c.LayerNormEps));
        if (!c.ShareLayernorm)
        {
            var seps = new List<BtLayerNorm>();
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                var ln = Add(new BtLayerNorm(vb["ln_separate"][i], d, c.LayerNormEps));
                // init_layernorm_from_vision_encoder: fresh separate LayerNorms start as copies of ln_post (a
                // checkpoint lacking them gets the same through BridgeTowerWeights.Adapt).
                if (initLnSeparateFromLnPost && !vb.IsDry && !vb.IsLoading)
                    using (Tensor.NoGrad())
                    {
                        ln.Weight.CopyFrom(_lnPost.Weight.Detach());
                        ln.Bias.CopyFrom(_lnPost.Bias.Detach());
                    }
                seps.Add(ln);
            }
            LnSeparate = seps;
        }
    }

    /// <summary>Embeddings + ln_pre: (B, 3, H, W) → (B, 1 + patches, D).</summary>
    public Tensor ForwardPre(Tensor pixels, bool interpolatePosEncoding)
    {
        var c = Config;
        if (pixels.Rank != 4 || pixels.Size(1) != c.NumChannels)
            throw new ArgumentException($"pixel_values must be (batch, {c.NumChannels}, H, W), got {pixels.ShapeString}");
        int b = pixels.Size(0), h = pixels.Size(2), w = pixels.Size(3), p = c.PatchSize, d = c.HiddenSize;
        if (!interpolatePosEncoding && (h != c.ImageSize || w != c.ImageSize))
            throw new ArgumentException($"Input image size ({h}*{w}) doesn't match model ({c.ImageSize}*{c.ImageSize}); pass interpolatePosEncoding to use other sizes");
        int gh = h / p, gw = w / p;
        if (gh == 0 || gw == 0) throw new ArgumentException($"image {h}x{w} is smaller than one {p}x{p} patch");
        // Conv2d with stride = kernel and no padding: unfold patches (rows/cols past the last whole patch are
        // dropped, as the convolution drops them) and multiply by the flattened kernel.
        var x = pixels.DType == DType.Float32 ? pixels : pixels.To(DType.Float32);
        if (gh * p != h) x = x.Narrow(2, 0, gh * p);
        if (gw * p != w) x = x.Narrow(3, 0, gw * p);
        var patches = x.Reshape(b, c.NumChannels, gh, p, gw, p).Permute(0, 2, 4, 1, 3, 5).Reshape(b, gh * gw, c.NumChannels * p * p);
        var patchEmb = patches.MatMul(PatchWeight.Reshape(d, c.NumChannels * p * p).T);   // (B, N, D)
        BtInit.Free(patches);
        var cls = ClassEmbedding.Reshape(1, 1, d).Expand(b, 1, d);
        var tokens = Tensor.Cat([cls, patchEmb], 1);                                      // (B, 1+N, D)
        BtInit.Free(patchEmb);
        var pos = interpolatePosEncoding ? InterpolatedPositions(gh, gw, h == w) : PositionEmbedding;
        var e = tokens.Add(pos);
        BtInit.Free(tokens);
        var o = _lnPre.Forward(e);
        BtInit.Free(e);
        return o;
    }

    /// <summary>HF interpolate_pos_encoding: the patch grid of position embeddings resized with bicubic
    /// (align_corners=False, A = -0.75) to (gh, gw); the class position is kept. Written as a linear map
    /// (kron of the per-axis interpolation matrices) so gradients reach the table.</summary>
    private Tensor InterpolatedPositions(int gh, int gw, bool square)
    {
        int n = PositionEmbedding.Size(0) - 1, d = PositionEmbedding.Size(1);
        if (n == gh * gw && square) return PositionEmbedding;
        int s = (int)Math.Sqrt(n);
        if (s * s != n) throw new InvalidOperationException($"position table of {n} patches is not a square grid");
        var mh = BicubicMatrix(s, gh); var mw = BicubicMatrix(s, gw);
        var k = new float[gh * gw * n];
        for (int i = 0; i < gh; i++)
            for (int j = 0; j < gw; j++)
                for (int a = 0; a < s; a++)
                {
                    float wa = mh[i, a];
                    if (wa == 0f) continue;
                    for (int bcol = 0; bcol < s; bcol++) k[(i * gw + j) * n + a * s + bcol] = wa * mw[j, bcol];
                }
        var patchPos = PositionEmbedding.Narrow(0, 1, n);                                // (S·S, D)
        var resized = Tensor.FromArray(k, gh * gw, n).MatMul(patchPos);                  // (gh·gw, D)
        return Tensor.Cat([PositionEmbedding.Narrow(0, 0, 1), resized], 0);
    }

    /// <summary>Row i holds the weights PyTorch's upsample_bicubic2d gives input pixels for output pixel i.</summary>
    public static float[,] BicubicMatrix(int inSize, int outSize)
    {
        const float A = -0.75f;
        static float C1(float x) => ((A + 2) * x - (A + 3)) * x * x + 1;
        static float C2(float x) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
        var m = new float[outSize, inSize];
        float scale = (float)inSize / outSize;
        for (int o = 0; o < outSize; o++)
        {
            float real = scale * (o + 0.5f) - 0.5f;
            int idx = Math.Min((int)MathF.Floor(real), inSize - 1);
            float t = Math.Min(Math.Max(real - idx, 0f), 1f);
            float[] coeffs = [C2(t + 1), C1(t), C1(1 - t), C2(2 - t)];
            for (int j = 0; j < 4; j++)
                m[o, Math.Clamp(idx - 1 + j, 0, inSize - 1)] += coeffs[j];
        }
        return m;
    }

    /// <summary>ln_post (HF forward_post, in batch-first layout).</summary>
    public Tensor ForwardPost(Tensor hidden) => _lnPost.Forward(hidden);

    /// <summary>HF BridgeTowerVisionTransformer.forward: every block's output after ln_post (or its own ln_separate),
    /// detached when stop_gradient; (layers, B, 1 + patches, D). Not used by BridgeTowerModel.</summary>
    public Tensor ForwardAllLayers(Tensor pixels, bool interpolatePosEncoding = false)
    {
        var h = ForwardPre(pixels, interpolatePosEncoding);
        var outs = new List<Tensor>();
        for (int i = 0; i < Blocks.Count; i++)
        {
            h = Blocks[i].Forward(h);
            var kept = Config.StopGradient ? h.Detach() : h;
            outs.Add(LnSeparate is null ? _lnPost.Forward(kept) : LnSeparate[i].Forward(kept));
        }
        return Tensor.Stack(outs.ToArray(), 0);
    }
}

/// <summary>Bridge layer (HF BridgeTowerLinkTower): LayerNorm of add / scaled_add / interpolate of the uni-modal
/// representation and the previous cross-modal output.</summary>
public sealed class BtLinkTower : Module
{
    private readonly LinkTowerType _type;
    private readonly Tensor? _scaled, _beta;
    private readonly BtLayerNorm _ln;

    public BtLinkTower(BtVars vb, BridgeTowerConfig c)
    {
        _type = c.LinkTowerType;
        if (_type == LinkTowerType.ScaledAdd) _scaled = vb.Param("scaled_factor", [], Init.Constant(1f));
        if (_type == LinkTowerType.Interpolate) _beta = vb.Param("beta", [], Init.Constant(0.5f));
        _ln = Add(new BtLayerNorm(vb["LayerNorm"], c.HiddenSize, c.LayerNormEps));
    }

    public Tensor Forward(Tensor hidden, Tensor crossHidden)
    {
        Tensor mixed = _type switch
        {
            LinkTowerType.Add => hidden.Add(crossHidden),
            LinkTowerType.ScaledAdd => hidden.Mul(_scaled!).Add(crossHidden),
            _ => hidden.Mul(1f - _beta!).Add(crossHidden.Mul(_beta!)),
        };
        var o = _ln.Forward(mixed);
        BtInit.Free(mixed);
        return o;
    }
}
