// User-facing BridgeTower tasks (arXiv 2206.08657) over tokenised text and preprocessed pixels: image-text
// matching scores, separate contrastive embeddings, retrieval (contrastive top-k, then ITM re-ranking), fill-mask
// and VQA answers. Text comes in as (ids, mask) from the RoBERTa tokenizer, images as BridgeTowerImageProcessor
// pixel_values; every call runs in no-grad eval mode.
using Vlm.Core;

namespace Vlm.Models.BridgeTower;

public readonly record struct ItmScore(float MatchLogit, float NoMatchLogit, float MatchProbability);

public readonly record struct RetrievalHit(int Index, float ContrastiveScore, float? ItmProbability);

public readonly record struct TokenPrediction(int TokenId, float Probability);

public readonly record struct AnswerPrediction(int Index, string? Answer, float Score);

public static class BridgeTowerTasks
{
    private static T Eval<T>(Nn.Module m, Func<T> f)
    {
        bool was = m.Training;
        m.Eval();
        try { using (Tensor.Inference()) return f(); }
        finally { m.Train(was); }
    }

    /// <summary>ITM for row-aligned pairs (text i with image i): logits and softmax probability of "match".</summary>
    public static ItmScore[] ItmScores(this BridgeTowerForImageAndTextRetrieval model, Tensor inputIds, Tensor? attentionMask, Tensor pixelValues,
        bool interpolatePosEncoding = false) => Eval(model, () =>
    {
        var logits = model.Forward(inputIds, attentionMask, pixelValues, options: new BridgeTowerForwardOptions { InterpolatePosEncoding = interpolatePosEncoding }).Logits;
        var probs = F.Softmax(logits, -1);
        var res = new ItmScore[logits.Size(0)];
        for (int i = 0; i < res.Length; i++) res[i] = new ItmScore(logits[i, 1], logits[i, 0], probs[i, 1]);
        return res;
    });

    /// <summary>L2-normalised contrastive text embeddings (B, c) from the text tower alone.</summary>
    public static Tensor EmbedTexts(this BridgeTowerForContrastiveLearning model, Tensor inputIds, Tensor? attentionMask) =>
        Eval(model, () => model.EmbedText(inputIds, attentionMask));

    /// <summary>L2-normalised contrastive image embeddings (B, c) from the vision tower alone.</summary>
    public static Tensor EmbedImages(this BridgeTowerForContrastiveLearning model, Tensor pixelValues, bool interpolatePosEncoding = false) =>
        Eval(model, () => model.EmbedImage(pixelValues, interpolatePosEncoding));

    /// <summary>
    /// Text-to-image retrieval for one query: cosine scores against precomputed image embeddings (N, c), the
    /// top <paramref name="k"/> kept, then (when an ITM model is given) re-ranked by ITM match probability on the
    /// query paired with each candidate's pixels.
    /// </summary>
    public static RetrievalHit[] Retrieve(BridgeTowerForContrastiveLearning itc, Tensor queryIds, Tensor? queryMask, Tensor imageEmbeddings, int k,
        BridgeTowerForImageAndTextRetrieval? itm = null, Func<int, Tensor>? candidatePixels = null)
    {
        if (queryIds.Size(0) != 1) throw new ArgumentException("Retrieve takes one query (batch 1)");
        var q = itc.EmbedTexts(queryIds, queryMask);                                         // (1, c)
        float[] sims;
        using (Tensor.NoGrad()) sims = q.MatMul(imageEmbeddings.T).ToArray();
        var top = sims.Select((s, i) => (s, i)).OrderByDescending(p => p.s).ThenBy(p => p.i).Take(Math.Max(0, k)).ToList();
        if (itm is null) return top.Select(p => new RetrievalHit(p.i, p.s, null)).ToArray();
        if (candidatePixels is null) throw new ArgumentNullException(nameof(candidatePixels), "ITM re-ranking needs the candidates' pixel values");
        var hits = new List<RetrievalHit>();
        foreach (var (s, i) in top)
        {
            var px = candidatePixels(i);
            var score = itm.ItmScores(queryIds, queryMask, px.Rank == 3 ? px.Unsqueeze(0) : px)[0];
            hits.Add(new RetrievalHit(i, s, score.MatchProbability));
        }
        return hits.OrderByDescending(h => h.ItmProbability).ThenBy(h => h.Index).ToArray();
    }

    /// <summary>Top-k vocabulary predictions at every position of row 0 holding <paramref name="maskTokenId"/>.</summary>
    public static Dictionary<int, TokenPrediction[]> FillMask(this BridgeTowerForMaskedLM model, Tensor inputIds, Tensor? attentionMask, Tensor pixelValues,
        int maskTokenId, int k = 5) => Eval(model, () =>
    {
        var logits = model.Forward(inputIds, attentionMask, pixelValues).Logits;            // (B, L, V)
        var ids = inputIds.ToInt64Array();
        int l = inputIds.Size(1);
        var result = new Dictionary<int, TokenPrediction[]>();
        for (int j = 0; j < l; j++)
        {
            if (ids[j] != maskTokenId) continue;
            var p = F.Softmax(logits.Select(0, 0).Select(0, j).Unsqueeze(0), -1).ToArray();
            result[j] = p.Select((v, t) => new TokenPrediction(t, v)).OrderByDescending(x => x.Probability).ThenBy(x => x.TokenId).Take(k).ToArray();
        }
        return result;
    });

    /// <summary>VQA: the top-k answers of row 0 by sigmoid score (answers named from config id2label when present).</summary>
    public static AnswerPrediction[] AnswerQuestion(this BridgeTowerForVqa model, Tensor inputIds, Tensor? attentionMask, Tensor pixelValues, int k = 5) => Eval(model, () =>
    {
        var logits = model.Forward(inputIds, attentionMask, pixelValues).Logits.Select(0, 0).ToArray();
        var labels = model.Config.Id2Label;
        return logits.Select((v, i) => new AnswerPrediction(i, labels != null && i < labels.Count ? labels[i] : null, 1f / (1f + MathF.Exp(-v))))
            .OrderByDescending(a => a.Score).ThenBy(a => a.Index).Take(k).ToArray();
    });
}
