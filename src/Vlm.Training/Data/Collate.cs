// Collation for BridgeTower training: texts → right-padded (ids, mask) tensors, images → (B, 3, S, S) pixel tensors
// through BridgeTowerImageProcessor (decoded once and cached), MLM masking (BERT's 15 %, 80/10/10), and per-step
// random streams so a batch depends only on (seed, stage, step) — the data position is the step number, which is
// what makes an interrupted run resume onto exactly the batches it would have seen.
using System.Collections.Concurrent;
using Vlm.Core;
using Vlm.Tokenizers;
using Vlm.Vision;
using Vlm.Vision.Processing;

namespace Vlm.Training.Data;

/// <summary>(B, L) int64 ids, (B, L) float mask (1 = token), and the ids as an array.</summary>
public sealed record TextBatch(Tensor Ids, Tensor Mask, long[] IdArray, int Batch, int Length);

public sealed class TextCollator(ITokenizer tokenizer, int maxLength)
{
    public ITokenizer Tokenizer { get; } = tokenizer;
    public int MaxLength { get; } = maxLength;

    public TextBatch Encode(IReadOnlyList<string> texts)
    {
        var enc = texts.Select(t => Tokenizer.Encode(t, maxLength: MaxLength, truncation: Truncation.LongestFirst)).ToList();
        int l = Math.Max(1, enc.Max(e => e.Length)), b = texts.Count;
        var ids = new long[b * l];
        var mask = new float[b * l];
        Array.Fill(ids, Tokenizer.PadId);
        for (int i = 0; i < b; i++)
            for (int j = 0; j < enc[i].Length; j++) { ids[i * l + j] = enc[i].Ids[j]; mask[i * l + j] = 1f; }
        return new TextBatch(Tensor.FromArray(ids, b, l), Tensor.FromArray(mask, b, l), ids, b, l);
    }

    /// <summary>BERT masking: each real, non-special token is chosen with probability <paramref name="p"/>; a chosen
    /// token becomes &lt;mask&gt; (80 %), a random vocabulary token (10 %) or stays (10 %). Labels are the original
    /// ids at chosen positions and -100 elsewhere. At least one token per batch is chosen (an empty target makes the
    /// mean loss NaN).</summary>
    public (Tensor MaskedIds, Tensor Labels) Mask(TextBatch t, Rng rng, float p = 0.15f)
    {
        int maskId = Tokenizer.MaskId ?? throw new InvalidOperationException("the tokenizer has no mask token");
        var special = new HashSet<long> { Tokenizer.PadId };
        foreach (var s in new[] { Tokenizer.ClsId, Tokenizer.SepId, Tokenizer.BosId, Tokenizer.EosId, Tokenizer.MaskId })
            if (s is int v) special.Add(v);
        int firstOrdinary = 0;
        while (special.Contains(firstOrdinary) || firstOrdinary == Tokenizer.UnkId) firstOrdinary++;
        var (ids, labels) = MlmMasking.Apply(t.IdArray, special, maskId, firstOrdinary, Tokenizer.VocabSize, rng, p);
        return (Tensor.FromArray(ids, t.Batch, t.Length), Tensor.FromArray(labels, t.Batch, t.Length));
    }
}

/// <summary>BERT's MLM corruption over raw ids (used by <see cref="TextCollator.Mask"/> and ALBEF pre-training).</summary>
public static class MlmMasking
{
    /// <summary>Each id not in <paramref name="special"/> is chosen with probability <paramref name="p"/>; a chosen
    /// id becomes <paramref name="maskId"/> (80 %), a random id in [<paramref name="firstOrdinary"/>,
    /// <paramref name="vocab"/>) (10 %) or stays (10 %). Labels are the original ids at chosen positions and −100
    /// elsewhere. At least one id is chosen when any is eligible (an empty target makes the mean loss NaN).</summary>
    public static (long[] Ids, long[] Labels) Apply(long[] source, ISet<long> special, int maskId, int firstOrdinary, int vocab, Rng rng, float p = 0.15f)
    {
        if (firstOrdinary >= vocab) throw new ArgumentException($"no ordinary token id: first ordinary {firstOrdinary} >= vocab {vocab}");
        var ids = (long[])source.Clone();
        var labels = new long[ids.Length];
        Array.Fill(labels, -100L);
        int chosen = 0, firstCandidate = -1;
        for (int i = 0; i < ids.Length; i++)
        {
            if (special.Contains(ids[i])) continue;
            if (firstCandidate < 0) firstCandidate = i;
            if (rng.NextFloat() >= p) continue;
            Replace(i);
        }
        if (chosen == 0 && firstCandidate >= 0) Replace(firstCandidate);
        return (ids, labels);

        void Replace(int i)
        {
            chosen++;
            labels[i] = source[i];
            float r = rng.NextFloat();
            if (r < 0.8f) ids[i] = maskId;
            else if (r < 0.9f) ids[i] = firstOrdinary + rng.NextInt(vocab - firstOrdinary);
        }
    }
}

/// <summary>Decodes and preprocesses images once (thread-safe), then serves their pixel arrays.</summary>
public sealed class PixelCache(BridgeTowerImageProcessor processor)
{
    private readonly ConcurrentDictionary<string, float[]> _cache = new(StringComparer.Ordinal);
    public int Size => processor.CropSize ?? processor.ShortestEdge;

    public float[] Get(string path) => _cache.GetOrAdd(path, p =>
    {
        var img = ImageDecoder.Decode(p);
        if (img.Mode != PixelMode.RGB) img = img.ToRgb();
        var pv = processor.Preprocess([img], doCenterCrop: true).PixelValues;
        if (pv.Size(2) != Size || pv.Size(3) != Size)
            throw new InvalidDataException($"{p}: preprocessed to {pv.ShapeString}, expected {Size}x{Size}");
        return pv.Contiguous().ToArray();
    });

    /// <summary>(B, 3, S, S) pixel values of the images at <paramref name="paths"/>.</summary>
    public Tensor Batch(IReadOnlyList<string> paths)
    {
        int s = Size, n = 3 * s * s;
        var data = new float[paths.Count * n];
        for (int i = 0; i < paths.Count; i++) Get(paths[i]).CopyTo(data, i * n);
        return Tensor.FromArray(data, paths.Count, 3, s, s);
    }
}

public static class StepRng
{
    /// <summary>A random stream that depends only on (seed, stage, step, stream): batches are reproducible after a resume.</summary>
    public static Rng For(ulong seed, string stage, long step, int stream = 0)
    {
        ulong h = 1469598103934665603UL;
        foreach (char c in stage) h = (h ^ c) * 1099511628211UL;
        return new Rng(seed * 0x9E3779B97F4A7C15UL ^ h ^ ((ulong)step << 20) ^ (ulong)stream);
    }
}
