// BLIP text transformer (arXiv 2201.12086 §3.1: the image-grounded text encoder and decoder share a BERT layout with
// cross-attention to image features), with the parameter names and semantics of HF transformers v4.47.1
// `modeling_blip_text.py` (BlipTextEmbeddings, BlipTextSelfAttention, BlipTextLayer, BlipTextModel,
// BlipTextLMHeadModel). The decoder keeps a key/value cache: self-attention keys/values grow by the fed tokens,
// cross-attention keys/values over the encoder states are computed once.
// TODO(consolidation): BERT-style post-LN layers also exist in BridgeTower (BtAttention / BtFeedForward).
using Vlm.Core;
using Vlm.Nn;

namespace Vlm.Models.Blip;

/// <summary>Cached keys/values of one layer: self (B, H, past, d), cross (B, H, Lenc, d).</summary>
public sealed class BlipLayerCache
{
    public Tensor? SelfKey, SelfValue, CrossKey, CrossValue;

    public void Reorder(Tensor rows)
    {
        Tensor? sk = SelfKey, sv = SelfValue, ck = CrossKey, cv = CrossValue;
        SelfKey = sk?.IndexSelect(0, rows); SelfValue = sv?.IndexSelect(0, rows);
        CrossKey = ck?.IndexSelect(0, rows); CrossValue = cv?.IndexSelect(0, rows);
        Intermediates.FreeAll(sk, sv, ck, cv);
    }

    /// <summary>Returns the cached keys/values to the buffer pool (no-grad; the cache is empty afterwards).</summary>
    public void Release()
    {
        Intermediates.FreeAll(SelfKey, SelfValue, CrossKey, CrossValue);
        SelfKey = SelfValue = CrossKey = CrossValue = null;
    }
}

/// <summary>The decoder cache: one entry per layer plus the number of cached positions.</summary>
public sealed class BlipKvCache
{
    public BlipLayerCache[] Layers { get; }
    public int Length { get; set; }

    public BlipKvCache(int layers) { Layers = Enumerable.Range(0, layers).Select(_ => new BlipLayerCache()).ToArray(); }

    public void Reorder(int[] rows)
    {
        var t = Tensor.FromArray(rows.Select(r => (long)r).ToArray(), rows.Length);
        foreach (var l in Layers) l.Reorder(t);
    }

    /// <summary>Returns every layer's keys/values to the buffer pool; the cache is empty afterwards.</summary>
    public void Release()
    {
        foreach (var l in Layers) l.Release();
        Length = 0;
    }
}

/// <summary>word + absolute position embeddings (positions continue after the cached prefix), LayerNorm.</summary>
public sealed class BlipTextEmbeddings : Module
{
    private readonly BlipTextConfig _c;
    public Embedding Word { get; }
    private readonly Embedding _pos;
    private readonly LayerNorm _ln;
    private readonly Dropout _drop;

    public BlipTextEmbeddings(VarBuilder vb, BlipTextConfig c)
    {
        _c = c;
        var init = Init.Normal(0f, c.InitializerRange);
        Word = Add(new Embedding(c.VocabSize, c.HiddenSize, vb["word_embeddings"], init: init));
        _pos = Add(new Embedding(c.MaxPositionEmbeddings, c.HiddenSize, vb["position_embeddings"], init: init));
        _ln = Add(new LayerNorm(c.HiddenSize, vb["LayerNorm"], c.LayerNormEps));
        _drop = Add(new Dropout(c.HiddenDropoutProb, vb));
        vb.Ignore("position_ids");
    }

    public Tensor Forward(Tensor ids, int past) // (B, T) → (B, T, D)
    {
        int t = ids.Size(1);
        if (past + t > _c.MaxPositionEmbeddings)
            throw new ArgumentException($"text of {past + t} positions exceeds text_config.max_position_embeddings ({_c.MaxPositionEmbeddings})");
        var ia = ids.ToInt64Array();
        foreach (var id in ia)
            if (id < 0 || id >= _c.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary (text_config.vocab_size {_c.VocabSize})");
        var positions = Tensor.FromArray(Enumerable.Range(past, t).Select(i => (long)i).ToArray(), 1, t);
        Tensor w = Word.Forward(ids), p = _pos.Forward(positions);
        var sum = w.Add(p);
        var normed = _ln.Forward(sum);
        var y = _drop.Forward(normed);
        Intermediates.FreeAll(w, p, sum);
        Intermediates.Free(normed, keep: y);
        return y;
    }
}

/// <summary>HF BlipTextSelfAttention (+ BlipTextSelfOutput as `output`): BERT attention with post-LN residual.</summary>
public sealed class BlipTextAttention : Module
{
    private readonly Linear _q, _k, _v, _dense;
    private readonly LayerNorm _ln;
    private readonly Dropout _attnDrop, _hiddenDrop;
    private readonly int _heads;
    private readonly bool _cross;

    public BlipTextAttention(VarBuilder vb, BlipTextConfig c, bool cross)
    {
        _cross = cross; _heads = c.NumAttentionHeads;
        var init = Init.Normal(0f, c.InitializerRange);
        int kv = cross ? c.EncoderHiddenSize : c.HiddenSize;
        var s = vb["self"];
        _q = Add(new Linear(c.HiddenSize, c.HiddenSize, s["query"], weightInit: init, biasInit: Init.Zeros));
        _k = Add(new Linear(kv, c.HiddenSize, s["key"], weightInit: init, biasInit: Init.Zeros));
        _v = Add(new Linear(kv, c.HiddenSize, s["value"], weightInit: init, biasInit: Init.Zeros));
        _attnDrop = Add(new Dropout(c.AttentionProbsDropoutProb, vb));
        _dense = Add(new Linear(c.HiddenSize, c.HiddenSize, vb["output"]["dense"], weightInit: init, biasInit: Init.Zeros));
        _ln = Add(new LayerNorm(c.HiddenSize, vb["output"]["LayerNorm"], c.LayerNormEps));
        _hiddenDrop = Add(new Dropout(c.HiddenDropoutProb, vb));
    }

    /// <param name="hidden">(B, T, D)</param>
    /// <param name="mask">additive mask broadcastable to (B, H, T, Tk)</param>
    /// <param name="encoder">(B, Lenc, E) for cross-attention</param>
    /// <param name="cache">the layer cache (decoding), or null</param>
    public Tensor Forward(Tensor hidden, Tensor? mask, Tensor? encoder, BlipLayerCache? cache)
    {
        var qp = _q.Forward(hidden);
        var q = AttentionOps.SplitHeads(qp, _heads);                                   // (B, H, T, d)
        Tensor k, v;
        Tensor? kp = null, vp = null, kNew = null, vNew = null;
        if (_cross)
        {
            if (encoder is null) throw new InvalidOperationException("cross-attention needs encoder states");
            if (cache?.CrossKey is { } ck) { k = ck; v = cache.CrossValue!; }
            else
            {
                kp = _k.Forward(encoder); vp = _v.Forward(encoder);
                k = AttentionOps.SplitHeads(kp, _heads);
                v = AttentionOps.SplitHeads(vp, _heads);
                if (cache != null) { cache.CrossKey = k; cache.CrossValue = v; }
            }
        }
        else
        {
            kp = _k.Forward(hidden); vp = _v.Forward(hidden);
            k = AttentionOps.SplitHeads(kp, _heads);
            v = AttentionOps.SplitHeads(vp, _heads);
            if (cache != null)
            {
                Tensor? oldK = cache.SelfKey, oldV = cache.SelfValue;
                if (oldK != null)
                {
                    (kNew, vNew) = (k, v);
                    k = Tensor.Cat([oldK, k], 2); v = Tensor.Cat([oldV!, v], 2);
                }
                cache.SelfKey = k.Contiguous(); cache.SelfValue = v.Contiguous();
                // The grown copies replace the old prefix.
                Intermediates.FreeAll(oldK, oldV);
            }
        }
        var ctx = AttentionOps.ScaledDotProduct(q, k, v, mask, _attnDrop);             // (B, H, T, d)
        var merged = AttentionOps.MergeHeads(ctx);
        var dense = _dense.Forward(merged);
        var o = _hiddenDrop.Forward(dense);
        var sum = o.Add(hidden);
        var y = _ln.Forward(sum);
        // Keys/values the cache now holds stay; everything else of this call is dead.
        Intermediates.FreeAll(qp, q, kp, vp, kNew, vNew, ctx, merged, o, sum);
        Intermediates.Free(dense, keep: o);
        if (cache is null || !(ReferenceEquals(k, cache.SelfKey) || ReferenceEquals(k, cache.CrossKey))) Intermediates.Free(k);
        if (cache is null || !(ReferenceEquals(v, cache.SelfValue) || ReferenceEquals(v, cache.CrossValue))) Intermediates.Free(v);
        return y;
    }
}

/// <summary>HF BlipTextLayer: self-attention, cross-attention (only when encoder states are given), FFN.</summary>
public sealed class BlipTextLayer : Module
{
    private readonly BlipTextAttention _self;
    private readonly BlipTextAttention? _cross;
    private readonly Linear _inter, _out;
    private readonly LayerNorm _ln;
    private readonly Dropout _drop;
    private readonly Func<Tensor, Tensor> _act;
    private readonly Vlm.Core.Kernels.GemmEpilogue? _fusedAct;

    public BlipTextLayer(VarBuilder vb, BlipTextConfig c)
    {
        var init = Init.Normal(0f, c.InitializerRange);
        _self = Add(new BlipTextAttention(vb["attention"], c, cross: false));
        if (c.IsDecoder) _cross = Add(new BlipTextAttention(vb["crossattention"], c, cross: true));
        _inter = Add(new Linear(c.HiddenSize, c.IntermediateSize, vb["intermediate"]["dense"], weightInit: init, biasInit: Init.Zeros));
        _out = Add(new Linear(c.IntermediateSize, c.HiddenSize, vb["output"]["dense"], weightInit: init, biasInit: Init.Zeros));
        _ln = Add(new LayerNorm(c.HiddenSize, vb["output"]["LayerNorm"], c.LayerNormEps));
        _drop = Add(new Dropout(c.HiddenDropoutProb, vb));
        _act = Activations.Get(c.HiddenAct, "text_config.hidden_act");
        _fusedAct = Activations.Epilogue(c.HiddenAct);
    }

    public Tensor Forward(Tensor h, Tensor? selfMask, Tensor? encoder, Tensor? encoderMask, BlipLayerCache? cache)
    {
        var a = _self.Forward(h, selfMask, null, cache);
        if (encoder != null)
        {
            if (_cross is null) throw new InvalidOperationException("encoder states given but text_config.is_decoder is false: the layers have no cross-attention");
            var crossed = _cross.Forward(a, encoderMask, encoder, cache);
            Intermediates.Free(a);
            a = crossed;
        }
        var g = _inter.Forward(a, _act, _fusedAct);
        var o = _out.Forward(g);
        Intermediates.Free(g);
        var f = _drop.Forward(o);
        Intermediates.Free(o, keep: f);
        var sum = f.Add(a);
        Intermediates.Free(f);
        Intermediates.Free(a);
        var y = _ln.Forward(sum);
        Intermediates.Free(sum);
        return y;
    }
}

/// <summary>HF BlipTextModel without pooler (every BLIP head builds it with add_pooling_layer=False).</summary>
public sealed class BlipTextModel : Module
{
    public BlipTextConfig Config { get; }
    public BlipTextEmbeddings Embeddings { get; }
    public IReadOnlyList<BlipTextLayer> Layers { get; }

    /// <summary>Index of the first layer that owns cross-attention (0 for HF BLIP; ALBEF's split text/fusion
    /// encoder uses 6 of 12: layers below it are text-only).</summary>
    public int CrossAttentionFrom { get; }

    /// <param name="crossAttentionFrom">layers [0, this) are built without cross-attention even when
    /// text_config.is_decoder is true (ALBEF, arXiv 2107.07651 §3.1: text layers then fusion layers)</param>
    public BlipTextModel(VarBuilder vb, BlipTextConfig c, int crossAttentionFrom = 0)
    {
        if (crossAttentionFrom < 0 || crossAttentionFrom > c.NumHiddenLayers)
            throw new ArgumentException($"crossAttentionFrom {crossAttentionFrom} is outside [0, text_config.num_hidden_layers {c.NumHiddenLayers}]");
        Config = c;
        CrossAttentionFrom = crossAttentionFrom;
        Embeddings = Add(new BlipTextEmbeddings(vb["embeddings"], c));
        var textOnly = c with { IsDecoder = false };
        Layers = Enumerable.Range(0, c.NumHiddenLayers)
            .Select(i => Add(new BlipTextLayer(vb["encoder"]["layer"][i], i < crossAttentionFrom ? textOnly : c))).ToList();
    }

    /// <summary>Runs layers [<paramref name="from"/>, <paramref name="to"/>) on hidden states (B, T, D): ALBEF's
    /// "text" mode is [0, CrossAttentionFrom) without encoder states, its "fusion" mode [CrossAttentionFrom, n)
    /// with them. <paramref name="selfMask"/> is an additive mask from <see cref="SelfMask"/>;
    /// <paramref name="encoderMask"/> a (B, Lenc) keep-mask or null.</summary>
    public Tensor ForwardLayers(Tensor h, Tensor? selfMask, Tensor? encoder, Tensor? encoderMask, int from, int to)
    {
        if (from < 0 || to > Layers.Count || from > to) throw new ArgumentException($"layer range [{from}, {to}) is outside [0, {Layers.Count}]");
        Tensor? encMask = null;
        if (encoder != null && encoderMask != null && encoderMask.ToInt64Array().Any(x => x == 0)) encMask = AttentionOps.ExtendedMask(encoderMask);
        var input = h;
        for (int i = from; i < to; i++)
        {
            var next = Layers[i].Forward(h, selfMask, encoder, encMask, null);
            Intermediates.Free(h, keep: input);   // the caller's states are the caller's
            h = next;
        }
        return h;
    }

    /// <param name="ids">(B, T) int64 new tokens</param>
    /// <param name="mask">(B, past + T) keep-mask, or null for all ones</param>
    /// <param name="encoder">(B, Lenc, E) states to cross-attend, or null (no cross-attention)</param>
    /// <param name="encoderMask">(B, Lenc) keep-mask, or null for all ones</param>
    /// <param name="isDecoder">causal self-attention</param>
    /// <param name="cache">decoder cache (updated), or null</param>
    /// <returns>last hidden state (B, T, D)</returns>
    public Tensor Forward(Tensor ids, Tensor? mask, Tensor? encoder, Tensor? encoderMask, bool isDecoder, BlipKvCache? cache = null)
    {
        if (ids.Rank != 2) throw new ArgumentException($"input_ids must be (batch, seq), got {ids.ShapeString}");
        int b = ids.Size(0), t = ids.Size(1), past = cache?.Length ?? 0;
        if (mask != null && (mask.Rank != 2 || mask.Size(0) != b || mask.Size(1) != past + t))
            throw new ArgumentException($"attention_mask {mask.ShapeString} does not match (batch {b}, {past + t} positions)");
        if (encoder != null && (encoder.Rank != 3 || encoder.Size(0) != b || encoder.Size(2) != Config.EncoderHiddenSize))
            throw new ArgumentException($"encoder states {encoder.ShapeString} are not (batch {b}, len, text_config.encoder_hidden_size {Config.EncoderHiddenSize})");
        var selfMask = SelfMask(mask, b, t, past, isDecoder);
        Tensor? encMask = null;
        if (encoder != null)
        {
            if (encoderMask != null && (encoderMask.Rank != 2 || encoderMask.Size(0) != b || encoderMask.Size(1) != encoder.Size(1)))
                throw new ArgumentException($"encoder attention mask {encoderMask.ShapeString} does not match the encoder states {encoder.ShapeString}");
            // HF invert_attention_mask: (1 - m)·finfo.min; an all-ones mask adds nothing.
            if (encoderMask != null && encoderMask.ToInt64Array().Any(x => x == 0)) encMask = AttentionOps.ExtendedMask(encoderMask);
        }
        var h = Embeddings.Forward(ids, past);
        for (int i = 0; i < Layers.Count; i++)
        {
            var next = Layers[i].Forward(h, selfMask, encoder, encMask, cache?.Layers[i]);
            Intermediates.Free(h);
            h = next;
        }
        if (cache != null) cache.Length = past + t;
        return h;
    }

    /// <summary>BLIP's own get_extended_attention_mask: (1 − causal·mask)·(−10000), causal with the cached prefix
    /// fully visible; encoders use the padding mask only. (B, 1, T, past+T) or (B, 1, 1, T).</summary>
    public static Tensor? SelfMask(Tensor? mask, int b, int t, int past, bool isDecoder)
    {
        int total = past + t;
        var m = mask?.ToInt64Array();
        if (!isDecoder)
        {
            if (m == null) return null;
            var r = new float[b * total];
            for (int i = 0; i < r.Length; i++) r[i] = (1f - m[i]) * -10000f;
            return Tensor.FromArray(r, b, 1, 1, total);
        }
        var o = new float[b * t * total];
        for (int bi = 0; bi < b; bi++)
            for (int i = 0; i < t; i++)
                for (int j = 0; j < total; j++)
                {
                    float keep = j <= past + i ? (m == null ? 1f : m[bi * total + j]) : 0f;
                    o[(bi * t + i) * total + j] = (1f - keep) * -10000f;
                }
        return Tensor.FromArray(o, b, 1, t, total);
    }
}

/// <summary>HF BlipTextLMHeadModel: `bert` + `cls.predictions` (transform dense/act/LayerNorm, decoder with the
/// shared `bias`; `decoder.weight` is its own tensor, not tied to the word embeddings).</summary>
public sealed class BlipTextLMHeadModel : Module
{
    public BlipTextConfig Config { get; }
    public BlipTextModel Bert { get; }
    private readonly Linear _transform;
    private readonly LayerNorm _ln;
    private readonly Func<Tensor, Tensor> _act;
    private readonly Vlm.Core.Kernels.GemmEpilogue? _fusedAct;
    public Tensor DecoderWeight { get; }   // (V, D)
    public Tensor Bias { get; }            // (V)

    public BlipTextLMHeadModel(VarBuilder vb, BlipTextConfig c, int crossAttentionFrom = 0)
    {
        Config = c;
        var init = Init.Normal(0f, c.InitializerRange);
        Bert = Add(new BlipTextModel(vb["bert"], c, crossAttentionFrom));
        var p = vb["cls"]["predictions"];
        _transform = Add(new Linear(c.HiddenSize, c.HiddenSize, p["transform"]["dense"], weightInit: init, biasInit: Init.Zeros));
        _ln = Add(new LayerNorm(c.HiddenSize, p["transform"]["LayerNorm"], c.LayerNormEps));
        _act = Activations.Get(c.HiddenAct, "text_config.hidden_act");
        _fusedAct = Activations.Epilogue(c.HiddenAct);
        DecoderWeight = p["decoder"].Param("weight", [c.VocabSize, c.HiddenSize], init);
        Bias = p.Param("bias", [c.VocabSize], Init.Zeros);
        p["decoder"].Tie("bias", Bias);
    }

    /// <summary>Prediction scores (B, T, V) of hidden states (B, T, D).</summary>
    public Tensor Head(Tensor h)
    {
        var a = _transform.Forward(h, _act, _fusedAct);
        var normed = _ln.Forward(a);
        Intermediates.Free(a);
        // One GEMM with the bias in its epilogue; in inference the 30524×768 decoder weight is packed once
        // (PackedWeights) instead of on every decoding step.
        var logits = F.Linear(normed, DecoderWeight, Bias);
        Intermediates.Free(normed);
        return logits;
    }

    /// <summary>Teacher-forced logits (B, T, V) for every input position.</summary>
    public Tensor Forward(Tensor ids, Tensor? mask, Tensor encoder, Tensor? encoderMask, BlipKvCache? cache = null)
    {
        var h = Bert.Forward(ids, mask, encoder, encoderMask, isDecoder: true, cache);
        var logits = Head(h);
        Intermediates.Free(h);
        return logits;
    }

    /// <summary>HF's shifted LM loss: CE(logits[:, :-1], labels[:, 1:]), ignore_index −100, mean, with
    /// text_config.label_smoothing.</summary>
    public Tensor Loss(Tensor logits, Tensor labels) => ShiftedLmLoss(logits, labels, Config.LabelSmoothing);

    /// <summary>Shifted LM loss: CE(logits[:, :-1], labels[:, 1:]), −100 ignored, mean over the counted tokens, with
    /// <paramref name="labelSmoothing"/> (the decoder's loss; BLIP pre-training uses it with 0.1).</summary>
    public static Tensor ShiftedLmLoss(Tensor logits, Tensor labels, float labelSmoothing)
    {
        int b = logits.Size(0), t = logits.Size(1), v = logits.Size(2);
        if (labels.Rank != 2 || labels.Size(0) != b || labels.Size(1) != t)
            throw new ArgumentException($"labels {labels.ShapeString} do not match the logits (batch {b}, {t} positions)");
        if (t < 2) throw new ArgumentException("the shifted LM loss needs at least 2 positions");
        var shifted = logits.Narrow(1, 0, t - 1).Contiguous().Reshape(-1, v);
        var targets = labels.Narrow(1, 1, t - 1).Contiguous().Reshape(-1);
        return F.CrossEntropy(shifted, targets, ignoreIndex: -100, labelSmoothing: labelSmoothing);
    }
}
