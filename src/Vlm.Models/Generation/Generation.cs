// Model-agnostic autoregressive decoding with the semantics of HF transformers v4.47.1 `GenerationMixin`
// (greedy `_sample`, `_beam_search` with `BeamSearchScorer`, multinomial sampling) and its logits processors
// (repetition penalty, min length, temperature, top-k, top-p). Any decoder that can run a step on a KV cache
// (<see cref="IIncrementalDecoder"/>) can use it: BLIP here; CoCa / VLMo decoders later.
using Vlm.Core;

namespace Vlm.Models.Generation;

/// <summary>A decoder with a key/value cache over the tokens it has been fed so far.</summary>
public interface IIncrementalDecoder
{
    /// <summary>Feeds <paramref name="newIds"/> (B, T) int64 after the cached prefix, with the keep-mask over the
    /// whole sequence so far (B, past + T); returns the logits of the last position (B, V).</summary>
    Tensor Step(Tensor newIds, Tensor attentionMask);

    /// <summary>Tokens held in the cache.</summary>
    int CachedLength { get; }

    /// <summary>Drops the cache (the next <see cref="Step"/> starts from an empty prefix).</summary>
    void Reset();

    /// <summary>Row i of the new batch is old row <paramref name="rows"/>[i] (cache and per-row encoder states):
    /// beam expansion and beam reordering.</summary>
    void Reorder(int[] rows);
}

public enum EarlyStopping { False, True, Never }

/// <summary>The decoding settings (HF `GenerationConfig` field names in the comments).</summary>
public sealed record GenerationOptions
{
    /// <summary>max_new_tokens; when null, <see cref="MaxLength"/> applies.</summary>
    public int? MaxNewTokens { get; init; }
    /// <summary>max_length: prompt + generated (HF default 20).</summary>
    public int MaxLength { get; init; } = 20;
    /// <summary>min_length (counts the prompt, as HF): the stop tokens are masked before it.</summary>
    public int MinLength { get; init; }
    /// <summary>min_new_tokens: the stop tokens are masked for this many generated tokens.</summary>
    public int MinNewTokens { get; init; }
    public bool DoSample { get; init; }
    public int NumBeams { get; init; } = 1;
    public float Temperature { get; init; } = 1f;
    /// <summary>top_k (HF default 50; 0 disables). Only used when sampling.</summary>
    public int TopK { get; init; } = 50;
    /// <summary>top_p (1 disables). Only used when sampling.</summary>
    public float TopP { get; init; } = 1f;
    public float RepetitionPenalty { get; init; } = 1f;
    public float LengthPenalty { get; init; } = 1f;
    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.False;
    /// <summary>Ids that end a row (BLIP: sep_token_id).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int PadTokenId { get; init; }
    /// <summary>Seed of the sampling stream (deterministic given the seed).</summary>
    public ulong Seed { get; init; }
    /// <summary>False: re-run the whole sequence every step (the reference for the cached path).</summary>
    public bool UseCache { get; init; } = true;

    public int EffectiveMaxLength(int promptLength) => MaxNewTokens is int n ? promptLength + n : MaxLength;
}

/// <summary>Decoded sequences (B, prompt + steps) and the per-step processed scores (B·beams, V) as HF's
/// `output_scores` (for greedy decoding with no active processor: the raw logits of the last position).</summary>
public sealed record GenerationResult(Tensor Sequences, IReadOnlyList<Tensor> Scores, float[]? SequenceScores);

/// <summary>HF logits processors on one row of scores, in HF's order.</summary>
public static class LogitsProcessing
{
    /// <summary>RepetitionPenaltyLogitsProcessor: every token already in the row (prompt included) has its score
    /// divided by the penalty when positive, multiplied when negative.</summary>
    public static void RepetitionPenalty(Span<float> scores, ReadOnlySpan<long> previous, float penalty)
    {
        if (penalty == 1f) return;
        var seen = new HashSet<long>();
        foreach (var t in previous)
        {
            if (!seen.Add(t) || t < 0 || t >= scores.Length) continue;
            float s = scores[(int)t];
            scores[(int)t] = s < 0 ? s * penalty : s / penalty;
        }
    }

    /// <summary>MinLength / MinNewTokens processors: stop ids get −∞ while the row is too short.</summary>
    public static void SuppressStop(Span<float> scores, IReadOnlyList<int> eos)
    {
        foreach (var e in eos) if (e >= 0 && e < scores.Length) scores[e] = float.NegativeInfinity;
    }

    public static void Temperature(Span<float> scores, float t)
    {
        if (t == 1f) return;
        for (int i = 0; i < scores.Length; i++) scores[i] /= t;
    }

    /// <summary>TopKLogitsWarper: scores below the k-th largest become −∞ (ties with it stay).</summary>
    public static void TopK(Span<float> scores, int k)
    {
        if (k <= 0 || k >= scores.Length) return;
        var sorted = scores.ToArray();
        Array.Sort(sorted);
        float kth = sorted[^k];
        for (int i = 0; i < scores.Length; i++) if (scores[i] < kth) scores[i] = float.NegativeInfinity;
    }

    /// <summary>TopPLogitsWarper: sort ascending, drop the tokens whose cumulative probability is ≤ 1 − p,
    /// always keeping the most likely <paramref name="minKeep"/>.</summary>
    public static void TopP(Span<float> scores, float p, int minKeep = 1)
    {
        if (p >= 1f) return;
        int n = scores.Length;
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        var copy = scores.ToArray();
        // Stable ascending sort by score (torch.sort is not guaranteed stable; ties are rare in float logits).
        Array.Sort(idx, (a, b) => copy[a] != copy[b] ? copy[a].CompareTo(copy[b]) : a.CompareTo(b));
        var probs = Softmax(copy);
        double cum = 0;
        for (int r = 0; r < n; r++)
        {
            cum += probs[idx[r]];
            bool remove = cum <= 1.0 - p && r < n - minKeep;
            if (remove) scores[idx[r]] = float.NegativeInfinity;
        }
    }

    public static float[] Softmax(ReadOnlySpan<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (var v in x) if (v > max) max = v;
        var r = new float[x.Length];
        double sum = 0;
        for (int i = 0; i < x.Length; i++) { r[i] = float.IsNegativeInfinity(x[i]) ? 0f : MathF.Exp(x[i] - max); sum += r[i]; }
        for (int i = 0; i < r.Length; i++) r[i] = (float)(r[i] / sum);
        return r;
    }

    public static float[] LogSoftmax(ReadOnlySpan<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (var v in x) if (v > max) max = v;
        double sum = 0;
        foreach (var v in x) sum += Math.Exp(v - max);
        float lse = max + (float)Math.Log(sum);
        var r = new float[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = x[i] - lse;
        return r;
    }
}
