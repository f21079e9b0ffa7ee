// Decoding loops of HF transformers v4.47.1 GenerationMixin: `_sample` (greedy when do_sample is false) and
// `_beam_search` with BeamSearchScorer / BeamHypotheses (length penalty, early stopping True / False / "never").
using Vlm.Core;

namespace Vlm.Models.Generation;

public static class Generator
{
    /// <summary>Decodes from <paramref name="prompt"/> (B, P) int64 with its keep-mask (B, P) (null = all ones).
    /// The decoder must start with an empty cache and B rows.</summary>
    public static GenerationResult Generate(IIncrementalDecoder decoder, Tensor prompt, Tensor? promptMask, GenerationOptions o)
        => Generate(decoder, prompt, promptMask, o, forceBeamSearch: false);

    private static GenerationResult Generate(IIncrementalDecoder decoder, Tensor prompt, Tensor? promptMask, GenerationOptions o, bool forceBeamSearch)
    {
        if (prompt.Rank != 2 || prompt.Size(1) == 0) throw new ArgumentException($"generation prompt must be (batch, len ≥ 1), got {prompt.ShapeString}");
        if (promptMask != null && !promptMask.ShapeArray().SequenceEqual(prompt.ShapeArray()))
            throw new ArgumentException($"prompt attention mask {promptMask.ShapeString} does not match the prompt {prompt.ShapeString}");
        if (o.NumBeams < 1) throw new ArgumentException($"num_beams must be ≥ 1, got {o.NumBeams}");
        if (o.DoSample && o.NumBeams > 1) throw new NotSupportedException("beam sampling (do_sample with num_beams > 1) is not implemented");
        if (o.Temperature <= 0f || float.IsNaN(o.Temperature)) throw new ArgumentException($"temperature must be > 0, got {o.Temperature}");
        if (o.TopP <= 0f || o.TopP > 1f) throw new ArgumentException($"top_p must be in (0, 1], got {o.TopP}");
        if (o.RepetitionPenalty <= 0f) throw new ArgumentException($"repetition_penalty must be > 0, got {o.RepetitionPenalty}");
        int b = prompt.Size(0), p = prompt.Size(1);
        int maxLen = o.EffectiveMaxLength(p);
        if (maxLen <= p) throw new ArgumentException($"nothing to generate: max length {maxLen} ≤ prompt length {p}");
        var ids = new List<long>[b];
        var mask = new List<long>[b];
        var pv = prompt.ToInt64Array();
        var mv = promptMask?.ToInt64Array();
        for (int i = 0; i < b; i++)
        {
            ids[i] = new List<long>(maxLen); mask[i] = new List<long>(maxLen);
            for (int j = 0; j < p; j++) { ids[i].Add(pv[i * p + j]); mask[i].Add(mv == null ? 1 : mv[i * p + j]); }
        }
        return o.NumBeams == 1 && !forceBeamSearch ? Sample(decoder, ids, mask, p, maxLen, o) : BeamSearch(decoder, ids, mask, p, maxLen, o);
    }

    /// <summary>Beam search even for num_beams = 1 (HF routes that to greedy; equal results are expected).</summary>
    public static GenerationResult GenerateBeamSearch(IIncrementalDecoder decoder, Tensor prompt, Tensor? promptMask, GenerationOptions o)
    {
        if (o.DoSample) throw new NotSupportedException("beam sampling (do_sample with beam search) is not implemented");
        return Generate(decoder, prompt, promptMask, o, forceBeamSearch: true);
    }

    private static Tensor NextLogits(IIncrementalDecoder d, List<long>[] ids, List<long>[] mask, bool useCache)
    {
        int b = ids.Length, len = ids[0].Count;
        if (!useCache) d.Reset();
        int past = d.CachedLength;
        int t = len - past;
        var nid = new long[b * t];
        var m = new long[b * len];
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < t; j++) nid[i * t + j] = ids[i][past + j];
            for (int j = 0; j < len; j++) m[i * len + j] = mask[i][j];
        }
        return d.Step(Tensor.FromArray(nid, b, t), Tensor.FromArray(m, b, len));
    }

    private static void Process(Span<float> row, List<long> previous, int promptLen, GenerationOptions o, bool sampling)
    {
        LogitsProcessing.RepetitionPenalty(row, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(previous), o.RepetitionPenalty);
        if (o.EosTokenIds.Count > 0 && (previous.Count < o.MinLength || previous.Count - promptLen < o.MinNewTokens))
            LogitsProcessing.SuppressStop(row, o.EosTokenIds);
        if (sampling)
        {
            LogitsProcessing.Temperature(row, o.Temperature);
            LogitsProcessing.TopK(row, o.TopK);
            LogitsProcessing.TopP(row, o.TopP);
        }
    }

    /// <summary>HF `_sample`: greedy argmax, or multinomial sampling from the warped distribution.</summary>
    private static GenerationResult Sample(IIncrementalDecoder d, List<long>[] ids, List<long>[] mask, int promptLen, int maxLen, GenerationOptions o)
    {
        int b = ids.Length;
        var unfinished = Enumerable.Repeat(true, b).ToArray();
        var scores = new List<Tensor>();
        var rng = new Rng(o.Seed);
        while (ids[0].Count < maxLen)
        {
            var logits = NextLogits(d, ids, mask, o.UseCache);   // (B, V)
            int v = logits.Size(1);
            var all = logits.Contiguous().ToArray();
            for (int i = 0; i < b; i++) Process(all.AsSpan(i * v, v), ids[i], promptLen, o, o.DoSample);
            scores.Add(Tensor.FromArray((float[])all.Clone(), b, v));
            bool any = false;
            for (int i = 0; i < b; i++)
            {
                var row = all.AsSpan(i * v, v);
                long next = o.DoSample ? Draw(row, rng) : ArgMax(row);
                if (!unfinished[i]) next = o.PadTokenId;
                ids[i].Add(next); mask[i].Add(1);
                if (unfinished[i] && o.EosTokenIds.Contains((int)next)) unfinished[i] = false;
                any |= unfinished[i];
            }
            if (!any) break;
        }
        return new GenerationResult(ToTensor(ids), scores, null);
    }

    private static long ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best] || (float.IsNaN(row[i]) && !float.IsNaN(row[best]))) best = i;
        return best;
    }

    /// <summary>torch.multinomial(softmax(row), 1) with our seeded stream (not torch's generator).</summary>
    private static long Draw(ReadOnlySpan<float> row, Rng rng)
    {
        var probs = LogitsProcessing.Softmax(row);
        double u = rng.NextDouble(), cum = 0;
        int last = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] <= 0f) continue;
            last = i;
            cum += probs[i];
            if (u < cum) return i;
        }
        return last;
    }

    private static Tensor ToTensor(List<long>[] ids)
    {
        int b = ids.Length, len = ids.Max(r => r.Count);
        var a = new long[b * len];
        for (int i = 0; i < b; i++) for (int j = 0; j < len; j++) a[i * len + j] = ids[i][j];
        return Tensor.FromArray(a, b, len);
    }

    /// <summary>HF BeamHypotheses: the n best finished hypotheses of one batch row, scored sum_logprobs / len^lp.</summary>
    private sealed class Hypotheses(int numBeams, float lengthPenalty, EarlyStopping early, int maxLength)
    {
        public readonly List<(float score, long[] tokens, float sumLogprobs)> Beams = new();
        private float _worst = 1e9f;

        public void Add(long[] tokens, float sumLogprobs, int generatedLen)
        {
            float score = sumLogprobs / MathF.Pow(generatedLen, lengthPenalty);
            if (Beams.Count < numBeams || score > _worst)
            {
                Beams.Add((score, tokens, sumLogprobs));
                if (Beams.Count > numBeams)
                {
                    int worstIdx = 0;
                    for (int i = 1; i < Beams.Count; i++) if (Beams[i].score < Beams[worstIdx].score) worstIdx = i;
                    Beams.RemoveAt(worstIdx);
                    _worst = Beams.Min(x => x.score);
                }
                else _worst = Math.Min(score, _worst);
            }
        }

        public bool IsDone(float bestSumLogprobs, int curLen, int promptLen)
        {
            if (Beams.Count < numBeams) return false;
            if (early == EarlyStopping.True) return true;
            float highest = early == EarlyStopping.Never && lengthPenalty > 0f
                ? bestSumLogprobs / MathF.Pow(maxLength - promptLen, lengthPenalty)
                : bestSumLogprobs / MathF.Pow(curLen - promptLen, lengthPenalty);
            return _worst >= highest;
        }
    }

    /// <summary>HF `_beam_search` + BeamSearchScorer (one returned sequence per row).</summary>
    private static GenerationResult BeamSearch(IIncrementalDecoder d, List<long>[] ids0, List<long>[] mask0, int promptLen, int maxLen, GenerationOptions o)
    {
        int b = ids0.Length, nb = o.NumBeams, bb = b * nb;
        var expand = new int[bb];
        var ids = new List<long>[bb]; var mask = new List<long>[bb];
        for (int i = 0; i < bb; i++) { expand[i] = i / nb; ids[i] = new List<long>(ids0[i / nb]); mask[i] = new List<long>(mask0[i / nb]); }
        d.Reorder(expand);
        var beamScores = new float[bb];
        for (int i = 0; i < bb; i++) beamScores[i] = i % nb == 0 ? 0f : -1e9f;
        var hyps = Enumerable.Range(0, b).Select(_ => new Hypotheses(nb, o.LengthPenalty, o.EarlyStopping, maxLen)).ToArray();
        var done = new bool[b];
        var scores = new List<Tensor>();
        var eos = o.EosTokenIds;
        int nKeep = Math.Max(2, 1 + eos.Count) * nb;
        while (true)
        {
            var logits = NextLogits(d, ids, mask, o.UseCache);   // (B·nb, V)
            int v = logits.Size(1);
            var raw = logits.Contiguous().ToArray();
            var processed = new float[bb * v];
            for (int r = 0; r < bb; r++)
            {
                var ls = LogitsProcessing.LogSoftmax(raw.AsSpan(r * v, v));
                Process(ls, ids[r], promptLen, o, sampling: false);
                ls.CopyTo(processed, r * v);
            }
            scores.Add(Tensor.FromArray((float[])processed.Clone(), bb, v));
            int curLen = ids[0].Count + 1;
            var nextRows = new int[bb]; var nextTokens = new long[bb]; var nextScores = new float[bb];
            for (int bi = 0; bi < b; bi++)
            {
                if (done[bi])
                {
                    for (int k = 0; k < nb; k++) { nextRows[bi * nb + k] = bi * nb; nextTokens[bi * nb + k] = o.PadTokenId; nextScores[bi * nb + k] = 0f; }
                    continue;
                }
                // top-(nKeep) over (beam, token) of processed + beam score, sorted descending (ties: lower index first).
                var cand = new List<(float s, int beam, int tok)>(nb * v);
                for (int k = 0; k < nb; k++)
                {
                    int r = bi * nb + k;
                    for (int t = 0; t < v; t++) cand.Add((processed[r * v + t] + beamScores[r], k, t));
                }
                cand.Sort((x, y) => x.s != y.s ? y.s.CompareTo(x.s) : (x.beam * v + x.tok).CompareTo(y.beam * v + y.tok));
                int take = Math.Min(nKeep, cand.Count);
                int filled = 0;
                for (int rank = 0; rank < take && filled < nb; rank++)
                {
                    var (s, k, tok) = cand[rank];
                    int row = bi * nb + k;
                    if (eos.Contains(tok))
                    {
                        if (rank >= nb) continue;
                        hyps[bi].Add(ids[row].ToArray(), s, curLen - promptLen);
                    }
                    else
                    {
                        nextRows[bi * nb + filled] = row; nextTokens[bi * nb + filled] = tok; nextScores[bi * nb + filled] = s;
                        filled++;
                    }
                }
                if (filled < nb) throw new InvalidOperationException($"beam search: batch row {bi} has fewer than {nb} live beams (more stop ids than candidates)");
                done[bi] = done[bi] || hyps[bi].IsDone(cand[0].s, curLen, promptLen);
            }
            var newIds = new List<long>[bb]; var newMask = new List<long>[bb];
            for (int r = 0; r < bb; r++)
            {
                newIds[r] = new List<long>(ids[nextRows[r]]) { nextTokens[r] };
                newMask[r] = new List<long>(mask[nextRows[r]]) { 1 };
            }
            ids = newIds; mask = newMask; beamScores = nextScores;
            d.Reorder(nextRows);
            bool allEos = eos.Count > 0 && ids.All(r => eos.Contains((int)r[^1]));
            if (done.All(x => x) || ids[0].Count >= maxLen || allEos) break;
        }
        // finalize: unfinished rows add every live beam, then take the best hypothesis.
        var best = new long[b][];
        var bestScores = new float[b];
        for (int bi = 0; bi < b; bi++)
        {
            if (!done[bi])
                for (int k = 0; k < nb; k++)
                {
                    int r = bi * nb + k;
                    hyps[bi].Add(ids[r].ToArray(), beamScores[r], ids[r].Count - promptLen);
                }
            // python sorted() is stable and pop() takes the last: among equal scores the latest added wins.
            var h = hyps[bi].Beams;
            int bestIdx = 0;
            for (int i = 1; i < h.Count; i++) if (h[i].score >= h[bestIdx].score) bestIdx = i;
            best[bi] = h[bestIdx].tokens; bestScores[bi] = h[bestIdx].score;
        }
        int maxSent = best.Max(x => x.Length) + 1;
        int sentLen = Math.Min(maxSent, maxLen);
        var outIds = new long[b * sentLen];
        for (int bi = 0; bi < b; bi++)
        {
            for (int j = 0; j < sentLen; j++) outIds[bi * sentLen + j] = j < best[bi].Length ? best[bi][j] : o.PadTokenId;
            if (best[bi].Length < sentLen && eos.Count > 0) outIds[bi * sentLen + best[bi].Length] = eos[0];
        }
        return new GenerationResult(Tensor.FromArray(outIds, b, sentLen), scores, bestScores);
    }
}
