// Simulated web noise for CapFilt (BLIP, arXiv 2201.12086 §3.3): a fraction of a pair list's captions is replaced by
// captions of other images. Which pairs were corrupted is recorded beside each pair (an extra "corrupted" field in
// the JSONL pairs, which the standard readers ignore), so the filter's precision and recall at rejecting them can
// be measured; CapFilt itself never reads the record.
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core;
using Vlm.Training.Data;
using Vlm.Training.World;

namespace Vlm.Training.CapFilt;

/// <summary>A pair after corruption: <see cref="Caption"/> is what the noisy dataset says; when
/// <see cref="Corrupted"/>, it was taken from image <see cref="SourceImageId"/> and <see cref="OriginalCaption"/> is
/// the caption it replaced.</summary>
public sealed record NoisyPair(int ImageId, string Image, string Caption, bool Corrupted, int SourceImageId, string OriginalCaption);

public static class Corruption
{
    /// <summary>Replaces exactly round(<paramref name="fraction"/>·n) captions, chosen uniformly without replacement,
    /// each by a caption of a different image that is not also a true caption of this image (the world repeats short
    /// captions across scenes, and such a replacement would not be noise). <paramref name="pairs"/> carry image paths
    /// relative to the dataset root.</summary>
    public static List<NoisyPair> Corrupt(IReadOnlyList<ImageCaption> pairs, double fraction, Rng rng)
    {
        if (!(fraction >= 0 && fraction <= 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the corrupted fraction must be in [0, 1]");
        int n = pairs.Count, k = (int)Math.Round(fraction * n);
        var trueCaptions = pairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.Select(p => p.Caption).ToHashSet(StringComparer.Ordinal));
        if (k > 0 && trueCaptions.Count < 2) throw new ArgumentException("corruption needs pairs of at least two images");
        // Fisher–Yates prefix: the first k positions of a random permutation are the corrupted pairs.
        var order = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++) { int j = i + rng.NextInt(n - i); (order[i], order[j]) = (order[j], order[i]); }
        var corrupt = new HashSet<int>(order.Take(k));
        var res = new List<NoisyPair>(n);
        for (int i = 0; i < n; i++)
        {
            var p = pairs[i];
            if (!corrupt.Contains(i)) { res.Add(new NoisyPair(p.ImageId, p.ImagePath, p.Caption, false, p.ImageId, p.Caption)); continue; }
            ImageCaption? donor = null;
            for (int attempt = 0; attempt < 1000 && donor is null; attempt++)
            {
                var d = pairs[rng.NextInt(n)];
                if (d.ImageId != p.ImageId && !trueCaptions[p.ImageId].Contains(d.Caption)) donor = d;
            }
            if (donor is null) throw new InvalidOperationException($"no caption of another image that is false for image {p.ImageId} in 1000 draws");
            res.Add(new NoisyPair(p.ImageId, p.ImagePath, donor.Caption, true, donor.ImageId, p.Caption));
        }
        return res;
    }

    /// <summary>JSONL pairs in the standard format (image, caption, image_id) plus the corruption record
    /// (corrupted, source_image_id, original_caption).</summary>
    public static void WriteJsonl(string path, IEnumerable<NoisyPair> pairs) =>
        AtomicFile.WriteAllText(path, string.Concat(pairs.Select(p => JsonSerializer.Serialize(new
        {
            image = p.Image, caption = p.Caption, image_id = p.ImageId,
            corrupted = p.Corrupted, source_image_id = p.SourceImageId, original_caption = p.OriginalCaption,
        }) + "\n")));

    /// <summary>The corruption record of a JSONL pairs file, one entry per non-blank line (null where a line has
    /// no "corrupted" field, i.e. the truth is unknown).</summary>
    public static List<bool?> ReadFlags(string path)
    {
        var res = new List<bool?>();
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(l); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{line}: not valid JSON ({e.Message})"); }
            var c = node?["corrupted"];
            if (c is null) { res.Add(null); continue; }
            if (c.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                throw new InvalidDataException($"{path}:{line}: \"corrupted\" must be true or false, got {c.ToJsonString()}");
            res.Add(c.GetValue<bool>());
        }
        return res;
    }
}

/// <summary>The filter's quality at rejecting corrupted pairs: a rejected corrupted pair is a true positive.</summary>
public sealed record FilterQuality(int Pairs, int Corrupted, int Rejected, int TruePositives)
{
    /// <summary>Of the rejected pairs, the fraction that were corrupted (NaN when nothing was rejected).</summary>
    public double Precision => Rejected == 0 ? double.NaN : TruePositives / (double)Rejected;
    /// <summary>Of the corrupted pairs, the fraction rejected (NaN when nothing was corrupted).</summary>
    public double Recall => Corrupted == 0 ? double.NaN : TruePositives / (double)Corrupted;
    public double F1 => Precision + Recall is var s && s > 0 ? 2 * Precision * Recall / s : double.NaN;
    /// <summary>Fraction of clean pairs kept.</summary>
    public double CleanKept => Pairs - Corrupted == 0 ? double.NaN : (Pairs - Corrupted - (Rejected - TruePositives)) / (double)(Pairs - Corrupted);
    /// <summary>Fraction of corrupted pairs among those kept.</summary>
    public double NoiseAfter => Pairs - Rejected == 0 ? double.NaN : (Corrupted - TruePositives) / (double)(Pairs - Rejected);

    public static FilterQuality Of(IReadOnlyList<bool> corrupted, IReadOnlyList<bool> rejected)
    {
        if (corrupted.Count != rejected.Count) throw new ArgumentException($"{corrupted.Count} corruption flags but {rejected.Count} filter decisions");
        int c = 0, r = 0, tp = 0;
        for (int i = 0; i < corrupted.Count; i++)
        {
            if (corrupted[i]) c++;
            if (rejected[i]) r++;
            if (corrupted[i] && rejected[i]) tp++;
        }
        return new FilterQuality(corrupted.Count, c, r, tp);
    }
}
