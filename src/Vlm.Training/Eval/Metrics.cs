using System.Text.RegularExpressions;

namespace Vlm.Training.Eval;

/// <summary>
/// VQA accuracy as the official VQAv2 evaluation computes it: answers normalised (punctuation, number words,
/// articles, contractions), then for each of the 10 leave-one-out subsets of human answers
/// acc = min(1, #matches / 3), averaged.
/// </summary>
public static partial class VqaScore
{
    public static double Accuracy(string predicted, IReadOnlyList<string> humanAnswers)
    {
        if (humanAnswers.Count == 0) return 0;
        static string Clean(string x) => x.Replace('\n', ' ').Replace('\t', ' ').Trim();
        var gts = humanAnswers.Select(Clean).ToList();
        var p = Clean(predicted);
        // The official script normalises only when the annotators disagree; otherwise it compares raw strings.
        if (gts.Distinct().Count() > 1)
        {
            gts = gts.Select(Normalize).ToList();
            p = Normalize(p);
        }
        double sum = 0;
        for (int i = 0; i < gts.Count; i++)
        {
            int matches = 0;
            for (int j = 0; j < gts.Count; j++) if (j != i && gts[j] == p) matches++;
            sum += Math.Min(1.0, matches / 3.0);
        }
        return sum / gts.Count;
    }

    /// <summary>Training targets as ViLT/METER/BridgeTower build them: score(count) = min(1, 0.3·count), i.e.
    /// 0.3, 0.6, 0.9, 1.0 for 1, 2, 3, ≥4 annotators.</summary>
    public static Dictionary<string, float> SoftScores(IEnumerable<string> humanAnswers)
    {
        var counts = new Dictionary<string, int>();
        foreach (var a in humanAnswers.Select(Normalize)) counts[a] = counts.GetValueOrDefault(a) + 1;
        return counts.ToDictionary(kv => kv.Key, kv => kv.Value >= 4 ? 1f : 0.3f * kv.Value);
    }

    private static readonly Dictionary<string, string> NumberWords = new()
    {
        ["none"] = "0", ["zero"] = "0", ["one"] = "1", ["two"] = "2", ["three"] = "3", ["four"] = "4", ["five"] = "5",
        ["six"] = "6", ["seven"] = "7", ["eight"] = "8", ["nine"] = "9", ["ten"] = "10",
    };

    private static readonly HashSet<string> Articles = ["a", "an", "the"];

    private static readonly Dictionary<string, string> Contractions = new()
    {
        ["dont"] = "don't", ["doesnt"] = "doesn't", ["isnt"] = "isn't", ["arent"] = "aren't", ["cant"] = "can't",
        ["wont"] = "won't", ["wasnt"] = "wasn't", ["werent"] = "weren't", ["didnt"] = "didn't", ["couldnt"] = "couldn't",
        ["shouldnt"] = "shouldn't", ["wouldnt"] = "wouldn't", ["hasnt"] = "hasn't", ["havent"] = "haven't", ["im"] = "i'm",
        ["ive"] = "i've", ["youre"] = "you're", ["theyre"] = "they're", ["whats"] = "what's", ["thats"] = "that's",
    };

    [GeneratedRegex(@"(?!<=\d)(\.)(?!\d)")]
    private static partial Regex PeriodStrip();

    [GeneratedRegex(@"(\d)(,)(\d)")]
    private static partial Regex CommaDigits();

    private const string Punct = ";/[]\"{}()=+\\_-><@`,?!";

    /// <summary>The official evaluation's processPunctuation + processDigitArticle.</summary>
    public static string Normalize(string answer)
    {
        var a = answer;
        bool commaDigits = CommaDigits().IsMatch(a);
        foreach (char p in Punct)
        {
            // Punctuation touching a space (or any answer with a 1,000-style number) is dropped; otherwise it
            // becomes a space.
            bool drop = answer.Contains(p + " ") || answer.Contains(" " + p) || commaDigits;
            a = a.Replace(p.ToString(), drop ? "" : " ");
        }
        a = PeriodStrip().Replace(a, "");
        var words = new List<string>();
        foreach (var w0 in a.ToLowerInvariant().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var w = NumberWords.GetValueOrDefault(w0, w0);
            if (Articles.Contains(w)) continue;
            words.Add(Contractions.GetValueOrDefault(w, w));
        }
        return string.Join(' ', words);
    }
}

/// <summary>Retrieval recall as the paper evaluates it, both directions.</summary>
public static class Recall
{
    /// <summary>Text→image R@K: fraction of texts whose own image is among the K most similar images.
    /// <paramref name="sim"/> is (texts × images), row-major; <paramref name="textToImage"/> gives each text's image.</summary>
    public static double TextToImage(float[] sim, int texts, int images, IReadOnlyList<int> textToImage, int k)
    {
        if (sim.Length != texts * images) throw new ArgumentException("similarity matrix size does not match texts × images");
        int hits = 0;
        for (int t = 0; t < texts; t++)
        {
            float own = sim[t * images + textToImage[t]];
            int better = 0;
            for (int i = 0; i < images; i++) if (sim[t * images + i] > own) better++;
            if (better < k) hits++;
        }
        return texts == 0 ? 0 : hits / (double)texts;
    }

    /// <summary>Image→text R@K: fraction of images with at least one of their captions among the K most similar texts.</summary>
    public static double ImageToText(float[] sim, int texts, int images, IReadOnlyList<int> textToImage, int k)
    {
        if (sim.Length != texts * images) throw new ArgumentException("similarity matrix size does not match texts × images");
        int hits = 0;
        var col = new float[texts];
        for (int i = 0; i < images; i++)
        {
            for (int t = 0; t < texts; t++) col[t] = sim[t * images + i];
            float bestOwn = float.NegativeInfinity;
            for (int t = 0; t < texts; t++) if (textToImage[t] == i) bestOwn = Math.Max(bestOwn, col[t]);
            if (float.IsNegativeInfinity(bestOwn)) continue;
            int better = 0;
            for (int t = 0; t < texts; t++) if (col[t] > bestOwn) better++;
            if (better < k) hits++;
        }
        return images == 0 ? 0 : hits / (double)images;
    }
}
