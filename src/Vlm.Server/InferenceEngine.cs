using System.Collections.Concurrent;
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Models.Retrieval;
using Vlm.Vision;

namespace Vlm.Server;

/// <summary>ITM logits of one pair; <see cref="Probability"/> = softmax(logits)[1] (match).</summary>
public readonly record struct ItmResult(float NoMatchLogit, float MatchLogit, float Probability);

/// <summary>One text paired with one preprocessed image (1, 3, H, W).</summary>
public sealed record TextImage(string Text, Tensor Pixels);

public sealed record FillMaskInput(string Text, Tensor Pixels, int TopK);

/// <summary>Per mask token (in text order): the top predictions as (token id, probability).</summary>
public sealed record FillMaskResult(long[] InputIds, int[] MaskPositions, (int TokenId, float Probability)[][] Predictions);

/// <summary>Cross-modal attention of each text token over the image patches, grid_h × grid_w, scaled to [0, 1].</summary>
public sealed record AttentionResult(int GridW, int GridH, string[] Tokens, float[][] Cls, float[][][] PerToken);

public sealed record CaptionInput(Image Image, string? Prompt, int MaxNewTokens);

public sealed record RetrievalResult(IndexEntry Entry, int Index, float Score, float? ItmScore);

/// <summary>
/// The loaded models and one <see cref="MicroBatcher{TIn,TOut}"/> per task kind. Every head present in the folder is
/// built once at start-up; each batched call holds its head's lock, so two kinds sharing a head (ITM and attention
/// maps) never run it concurrently, while different heads may.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly ServerOptions _options;
    private readonly ConcurrentDictionary<int, Tensor> _indexPixels = new();
    private const int IndexPixelCacheLimit = 1024;
    private readonly List<IDisposable> _batchers = new();

    public BridgeTowerFolder Folder { get; }
    public VectorIndex? Index { get; }
    public BlipCaptioner? Captioner { get; }
    public Metrics Metrics { get; }
    /// <summary>Longest tokenised text (RoBERTa positions start after the pad id).</summary>
    public int MaxTokens { get; }

    public MicroBatcher<TextImage, ItmResult>? Itm { get; }
    public MicroBatcher<TextImage, AttentionResult>? Attention { get; }
    public MicroBatcher<TextImage, float[]>? Vqa { get; }
    public MicroBatcher<FillMaskInput, FillMaskResult>? FillMask { get; }
    public MicroBatcher<string, float[]>? EmbedText { get; }
    public MicroBatcher<Tensor, float[]>? EmbedImage { get; }
    public MicroBatcher<CaptionInput, string>? Caption { get; }

    public InferenceEngine(ServerOptions options, Metrics metrics)
    {
        options.Validate();
        _options = options;
        Metrics = metrics;
        Folder = BridgeTowerFolder.Open(options.ModelPath);
        try
        {
            var tc = Folder.Config.TextConfig;
            MaxTokens = Math.Max(2, tc.MaxPositionEmbeddings - tc.PadTokenId - 1);
            if (options.IndexPath != null)
            {
                Index = VectorIndex.Load(options.IndexPath);
                if (!Folder.HasContrastive)
                    throw new InvalidDataException($"{options.ModelPath}: an index needs the contrastive heads (itc_*), which the checkpoint lacks");
                if (Folder.Config.ContrastiveHiddenSize != Index.Dim)
                    throw new InvalidDataException($"{options.IndexPath}: the index has {Index.Dim} dims but the model embeds {Folder.Config.ContrastiveHiddenSize}");
            }
            if (options.BlipModelPath != null) Captioner = BlipCaptioner.Open(options.BlipModelPath);

            var window = TimeSpan.FromMilliseconds(options.BatchWindowMs);
            MicroBatcher<TI, TO> Make<TI, TO>(string kind, Func<IReadOnlyList<TI>, TO[]> run, int? maxBatch = null)
            {
                var b = new MicroBatcher<TI, TO>(kind, run, maxBatch ?? options.MaxBatch, options.QueueCapacity, window, metrics);
                _batchers.Add(b);
                return b;
            }
            // Build each head now, so the first request does not pay for loading and a bad checkpoint fails at start.
            if (Folder.HasItm)
            {
                var itm = Folder.Itm;
                Itm = Make<TextImage, ItmResult>("itm", xs => RunItm(itm, xs));
                Attention = Make<TextImage, AttentionResult>("attention", xs => RunAttention(itm, xs));
            }
            if (Folder.HasVqa) { var vqa = Folder.Vqa; Vqa = Make<TextImage, float[]>("vqa", xs => RunVqa(vqa, xs)); }
            if (Folder.HasMlm) { var mlm = Folder.Mlm; FillMask = Make<FillMaskInput, FillMaskResult>("fill-mask", xs => RunFillMask(mlm, xs)); }
            if (Folder.HasContrastive)
            {
                var itc = Folder.Contrastive;
                EmbedText = Make<string, float[]>("embed-text", xs => RunEmbedText(itc, xs));
                EmbedImage = Make<Tensor, float[]>("embed-image", xs => RunEmbedImage(itc, xs));
            }
            // Generation is not batched: one caption per call, queued like the rest.
            if (Captioner != null) Caption = Make<CaptionInput, string>("caption", xs => xs.Select(x => Captioner.Caption(x.Image, x.Prompt, x.MaxNewTokens)).ToArray(), 1);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public TimeSpan Timeout => TimeSpan.FromMilliseconds(_options.TimeoutMs);

    /// <summary>pixel_values (1, 3, H, W) of one RGB image; an image the processor cannot take is a 400.</summary>
    public Tensor Preprocess(Image rgb) => PreprocessWithRegion(rgb).Pixels;

    /// <summary>pixel_values plus the part of the source image they show (x, y, width, height in source pixels):
    /// the processor resizes the shortest edge and centre-crops a square, so a heat map belongs over that square.</summary>
    public (Tensor Pixels, float[] Region) PreprocessWithRegion(Image rgb)
    {
        Vision.Processing.ProcessorOutput r;
        try { r = Folder.Processor.ImageProcessor.Preprocess([rgb], doCenterCrop: true); }
        catch (ArgumentException e) { throw ApiException.BadRequest($"'image' cannot be preprocessed: {e.Message}"); }
        float sx = 1, sy = 1; int rw = rgb.Width, rh = rgb.Height;
        if (r.Resized.Count == 1) { rw = r.Resized[0].Width; rh = r.Resized[0].Height; sx = (float)rgb.Width / rw; sy = (float)rgb.Height / rh; }
        int cw = r.PixelValues.Size(3), ch = r.PixelValues.Size(2);
        float x = Math.Max(0, (rw - cw) / 2) * sx, y = Math.Max(0, (rh - ch) / 2) * sy;
        return (r.PixelValues, [x, y, Math.Min(cw, rw) * sx, Math.Min(ch, rh) * sy]);
    }

    private (Tensor Ids, Tensor Mask) Encode(IReadOnlyList<string> texts) => Folder.Processor.EncodeTexts(texts, MaxTokens);

    private static Tensor Stack(IReadOnlyList<Tensor> pixels) => pixels.Count == 1 ? pixels[0] : Tensor.Cat(pixels, 0);

    private static T Locked<T>(Nn.Module model, Func<T> f)
    {
        lock (model)
        {
            model.Eval();
            using (Tensor.Inference()) return f();
        }
    }

    private ItmResult[] RunItm(BridgeTowerForImageAndTextRetrieval model, IReadOnlyList<TextImage> xs)
    {
        var (ids, mask) = Encode(xs.Select(x => x.Text).ToList());
        var px = Stack(xs.Select(x => x.Pixels).ToList());
        return Locked(model, () => model.ItmScores(ids, mask, px).Select(s => new ItmResult(s.NoMatchLogit, s.MatchLogit, s.MatchProbability)).ToArray());
    }

    private float[][] RunVqa(BridgeTowerForVqa model, IReadOnlyList<TextImage> xs)
    {
        var (ids, mask) = Encode(xs.Select(x => x.Text).ToList());
        var px = Stack(xs.Select(x => x.Pixels).ToList());
        var logits = Locked(model, () => model.Forward(ids, mask, px).Logits);       // (B, answers)
        return Enumerable.Range(0, xs.Count).Select(i => logits.Select(0, i).ToArray()).ToArray();
    }

    private FillMaskResult[] RunFillMask(BridgeTowerForMaskedLM model, IReadOnlyList<FillMaskInput> xs)
    {
        int maskId = Folder.Processor.Tokenizer.MaskId ?? throw new InvalidOperationException("the tokenizer has no mask token");
        var (ids, mask) = Encode(xs.Select(x => x.Text).ToList());
        var px = Stack(xs.Select(x => x.Pixels).ToList());
        var logits = Locked(model, () => model.Forward(ids, mask, px).Logits);       // (B, L, V)
        var allIds = ids.ToInt64Array();
        var allMask = mask.ToInt64Array();
        int l = ids.Size(1);
        var res = new FillMaskResult[xs.Count];
        for (int b = 0; b < xs.Count; b++)
        {
            var rowIds = allIds.AsSpan(b * l, l).ToArray();
            int len = allMask.AsSpan(b * l, l).ToArray().Count(v => v != 0);
            var positions = Enumerable.Range(0, len).Where(j => rowIds[j] == maskId).ToArray();
            var preds = positions.Select(j =>
            {
                var p = F.Softmax(logits.Select(0, b).Select(0, j), -1).ToArray();
                return p.Select((v, t) => (t, v)).OrderByDescending(x => x.v).ThenBy(x => x.t).Take(xs[b].TopK).ToArray();
            }).ToArray();
            res[b] = new FillMaskResult(rowIds[..len], positions, preds);
        }
        return res;
    }

    private float[][] RunEmbedText(BridgeTowerForContrastiveLearning model, IReadOnlyList<string> xs)
    {
        var (ids, mask) = Encode(xs);
        var e = Locked(model, () => model.EmbedTexts(ids, mask));                      // (B, c)
        return Enumerable.Range(0, xs.Count).Select(i => e.Select(0, i).ToArray()).ToArray();
    }

    private static float[][] RunEmbedImage(BridgeTowerForContrastiveLearning model, IReadOnlyList<Tensor> xs)
    {
        var px = Stack(xs);
        var e = Locked(model, () => model.EmbedImages(px));                             // (B, c)
        return Enumerable.Range(0, xs.Count).Select(i => e.Select(0, i).ToArray()).ToArray();
    }

    private AttentionResult[] RunAttention(BridgeTowerForImageAndTextRetrieval model, IReadOnlyList<TextImage> xs)
    {
        var (ids, mask) = Encode(xs.Select(x => x.Text).ToList());
        var px = Stack(xs.Select(x => x.Pixels).ToList());
        int patch = Folder.Config.VisionConfig.PatchSize;
        int gh = px.Size(2) / patch, gw = px.Size(3) / patch;
        var opts = new BridgeTowerForwardOptions { OutputCrossAttentions = true };
        var probs = Locked(model, () => model.Forward(ids, mask, px, options: opts).Base.CrossAttentions![^1].TextToImage); // (B, H, L, N)
        int heads = probs.Size(1), l = probs.Size(2), n = probs.Size(3);
        if (n != 1 + gh * gw) throw new InvalidOperationException($"attention covers {n} image tokens, expected 1 + {gh}×{gw}");
        var p = probs.Contiguous().ToArray();
        var allIds = ids.ToInt64Array();
        var allMask = mask.ToInt64Array();
        var tok = Folder.Processor.Tokenizer;
        var res = new AttentionResult[xs.Count];
        for (int b = 0; b < xs.Count; b++)
        {
            int len = allMask.AsSpan(b * l, l).ToArray().Count(v => v != 0);
            var tokens = Enumerable.Range(0, len).Select(j => tok.Decode([allIds[b * l + j]])).ToArray();
            var maps = new float[len][][];
            for (int t = 0; t < len; t++)
            {
                var avg = new float[gh * gw];                                            // head mean, image CLS dropped
                for (int h = 0; h < heads; h++)
                {
                    int off = ((b * heads + h) * l + t) * n + 1;
                    for (int k = 0; k < avg.Length; k++) avg[k] += p[off + k] / heads;
                }
                maps[t] = Grid(Normalise(avg), gh, gw);
            }
            res[b] = new AttentionResult(gw, gh, tokens, maps[0], maps);
        }
        return res;
    }

    /// <summary>Min-max scaling to [0, 1]; a flat map becomes all zeros.</summary>
    public static float[] Normalise(float[] v)
    {
        float lo = v.Min(), hi = v.Max();
        return v.Select(x => hi > lo ? (x - lo) / (hi - lo) : 0f).ToArray();
    }

    private static float[][] Grid(float[] v, int gh, int gw) => Enumerable.Range(0, gh).Select(r => v.AsSpan(r * gw, gw).ToArray()).ToArray();

    /// <summary>pixel_values of index entry <paramref name="i"/> (an image file), cached for re-ranking.</summary>
    public Tensor IndexPixels(int i)
    {
        if (_indexPixels.TryGetValue(i, out var t)) return t;
        var entry = Index!.Entries[i];
        t = Preprocess(ImageDecoder.Decode(entry.Source, new Vision.Codecs.DecodeOptions { MaxPixels = _options.MaxPixels }).ToRgb());
        if (_indexPixels.Count < IndexPixelCacheLimit) _indexPixels[i] = t;
        return t;
    }

    /// <summary>Contrastive top-k of an index for a text or image query, re-ranked by ITM when asked and possible.</summary>
    public async Task<List<RetrievalResult>> RetrieveAsync(string? text, Tensor? pixels, int k, bool rerank, CancellationToken ct)
    {
        var index = Index ?? throw ApiException.NotImplemented("no index is loaded; start the server with --index <file from 'vlm index build'>");
        float[] q = text != null
            ? await EmbedText!.SubmitAsync(text, Timeout, ct)
            : await EmbedImage!.SubmitAsync(pixels!, Timeout, ct);
        var hits = index.Search(q, k);
        var rows = hits.Select(h => new RetrievalResult(h.Entry, h.Index, h.Score, null)).ToList();
        if (!rerank || Itm is null || rows.Count == 0) return rows;
        // All candidates go into the ITM queue at once, so they share batched forwards.
        var scored = await Task.WhenAll(rows.Select(async r =>
        {
            TextImage pair;
            if (r.Entry.Kind == "image")
            {
                if (text is null) return r;      // image query against an image index: nothing to pair
                Tensor px;
                try { px = IndexPixels(r.Index); }
                catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or UnauthorizedAccessException)
                {
                    return r;                    // the file moved since indexing: keep the contrastive score only
                }
                pair = new TextImage(text, px);
            }
            else
            {
                if (pixels is null) return r;
                pair = new TextImage(r.Entry.Source, pixels);
            }
            var s = await Itm.SubmitAsync(pair, Timeout, ct);
            return r with { ItmScore = s.Probability };
        }));
        return scored.OrderByDescending(r => r.ItmScore ?? float.NegativeInfinity).ThenByDescending(r => r.Score).ThenBy(r => r.Index).ToList();
    }

    public void Dispose()
    {
        foreach (var b in _batchers) b.Dispose();
        Folder.Dispose();
    }
}
