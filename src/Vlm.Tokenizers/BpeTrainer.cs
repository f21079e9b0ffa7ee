using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vlm.Tokenizers;

/// <summary>A trained byte-level BPE model: vocabulary (token -> id) and ordered merges.</summary>
public sealed class BpeModel
{
    public required Dictionary<string, int> Vocab { get; init; }
    public required List<(string Left, string Right)> Merges { get; init; }
    public required IReadOnlyList<string> SpecialTokens { get; init; }

    /// <summary>
    /// Writes HF <c>vocab.json</c> and <c>merges.txt</c> (with the <c>#version: 0.2</c> header); with
    /// <paramref name="roles"/> also a <c>tokenizer_config.json</c> (RoBERTa template) so that
    /// <see cref="AutoTokenizer.FromFolder"/> and HF's <c>RobertaTokenizer</c> load the folder.
    /// </summary>
    public void Save(string dir, SpecialTokens? roles = null, bool addPrefixSpace = false)
    {
        Directory.CreateDirectory(dir);
        var vocab = new JsonObject();
        foreach (var kv in Vocab.OrderBy(kv => kv.Value)) vocab[kv.Key] = kv.Value;
        var opts = new JsonSerializerOptions { WriteIndented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(dir, "vocab.json"), vocab.ToJsonString(opts), new UTF8Encoding(false));
        var sb = new StringBuilder("#version: 0.2\n");
        foreach (var (l, r) in Merges) sb.Append(l).Append(' ').Append(r).Append('\n');
        File.WriteAllText(Path.Combine(dir, "merges.txt"), sb.ToString(), new UTF8Encoding(false));
        if (roles == null) return;
        var cfg = new JsonObject
        {
            ["tokenizer_class"] = roles.Cls != null ? "RobertaTokenizer" : "GPT2Tokenizer",
            ["add_prefix_space"] = addPrefixSpace,
            ["clean_up_tokenization_spaces"] = false,
            ["errors"] = "replace",
        };
        void Role(string key, string? v) { if (v != null) cfg[key] = v; }
        Role("bos_token", roles.Bos); Role("eos_token", roles.Eos); Role("unk_token", roles.Unk); Role("sep_token", roles.Sep);
        Role("pad_token", roles.Pad); Role("cls_token", roles.Cls); Role("mask_token", roles.Mask);
        var dec = new JsonObject();
        foreach (var s in SpecialTokens)
        {
            dec[Vocab[s].ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = s, ["lstrip"] = s == roles.Mask, ["normalized"] = false, ["rstrip"] = false,
                ["single_word"] = false, ["special"] = true,
            };
        }
        cfg["added_tokens_decoder"] = dec;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), cfg.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
    }

    /// <summary>A tokenizer on this model (RoBERTa template when <paramref name="roles"/> has cls/sep).</summary>
    public ByteLevelBpeTokenizer ToTokenizer(SpecialTokens? roles = null, bool addPrefixSpace = false)
    {
        var r = roles ?? new SpecialTokens();
        var added = SpecialTokens.Select(s => new AddedToken(s, Vocab[s], LStrip: s == r.Mask));
        return new ByteLevelBpeTokenizer(Vocab, Merges, r, added, addPrefixSpace, r.Cls != null && r.Sep != null ? "roberta" : "none");
    }
}

/// <summary>
/// Byte-level BPE training (Sennrich et al. 2016, GPT-2 byte alphabet): words from the GPT-2 pre-tokenizer,
/// all 256 byte symbols in the initial vocabulary (so every text is encodable), then repeatedly the most frequent
/// adjacent pair is merged. Deterministic: ties go to the ordinally smallest (left, right) pair, and no result
/// depends on hash order.
/// </summary>
public static class BpeTrainer
{
    public static BpeModel Train(IEnumerable<string> texts, int vocabSize, int minFrequency = 2,
        IReadOnlyList<string>? specialTokens = null, bool addPrefixSpace = false)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var specials = (specialTokens ?? []).Distinct().ToList();
        if (vocabSize < specials.Count + 256)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), $"vocabSize {vocabSize} is smaller than {specials.Count} special tokens + 256 byte symbols");
        if (minFrequency < 1) throw new ArgumentOutOfRangeException(nameof(minFrequency), "minFrequency must be >= 1");

        // 1. word frequencies (special-token occurrences are cut out of the training text)
        var wordFreq = new Dictionary<string, long>(StringComparer.Ordinal);
        var spans = new List<(int Start, int End)>();
        foreach (var raw in texts)
        {
            if (string.IsNullOrEmpty(raw)) continue;
            var text = addPrefixSpace && !char.IsWhiteSpace(raw[0]) ? " " + raw : raw;
            foreach (var piece in CutSpecials(text, specials))
            {
                spans.Clear();
                Gpt2PreTokenizer.Split(piece, 0, piece.Length, spans);
                foreach (var (s, e) in spans)
                {
                    var w = piece.Substring(s, e - s);
                    wordFreq[w] = wordFreq.GetValueOrDefault(w) + 1;
                }
            }
        }

        // 2. symbols: specials, then the byte alphabet in byte order, then merge results
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var symStr = new List<string>();
        int AddSym(string s)
        {
            if (vocab.TryGetValue(s, out int id)) return id;
            id = symStr.Count;
            vocab[s] = id;
            symStr.Add(s);
            return id;
        }
        foreach (var s in specials) AddSym(s);
        for (int b = 0; b < 256; b++) AddSym(ByteLevel.ByteToChar[b].ToString());

        var keys = wordFreq.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var words = new List<int>[keys.Length];
        var freq = new long[keys.Length];
        var bytes = new List<byte>();
        for (int i = 0; i < keys.Length; i++)
        {
            bytes.Clear();
            var k = keys[i];
            for (int j = 0; j < k.Length;)
            {
                ByteLevel.AppendUtf8(Text.UnicodeInfo.CodePointAt(k, j, out int w), bytes);
                j += w;
            }
            words[i] = bytes.Select(b => vocab[ByteLevel.ByteToChar[b].ToString()]).ToList();
            freq[i] = wordFreq[k];
        }

        // 3. pair statistics
        var counts = new Dictionary<long, long>(PairComparer.Instance);
        var where = new Dictionary<long, HashSet<int>>(PairComparer.Instance);
        static long Key(int a, int b) => ((long)a << 32) | (uint)b;
        void AddWord(int wi, long sign, HashSet<long>? changed)
        {
            var w = words[wi];
            for (int j = 0; j + 1 < w.Count; j++)
            {
                long k = Key(w[j], w[j + 1]);
                counts[k] = counts.GetValueOrDefault(k) + sign * freq[wi];
                if (sign > 0)
                {
                    if (!where.TryGetValue(k, out var set)) where[k] = set = [];
                    set.Add(wi);
                }
                changed?.Add(k);
            }
        }
        for (int i = 0; i < words.Length; i++) AddWord(i, 1, null);

        var heap = new PriorityQueue<long, (long Count, string Left, string Right)>(Comparer<(long Count, string Left, string Right)>.Create((x, y) =>
        {
            int c = y.Count.CompareTo(x.Count); // larger count first
            if (c != 0) return c;
            c = string.CompareOrdinal(x.Left, y.Left);
            return c != 0 ? c : string.CompareOrdinal(x.Right, y.Right);
        }));
        void Push(long k)
        {
            long c = counts.GetValueOrDefault(k);
            if (c > 0) heap.Enqueue(k, (c, symStr[(int)(k >> 32)], symStr[(int)(uint)k]));
        }
        foreach (var k in counts.Keys.OrderBy(k => k)) Push(k);

        // 4. merge loop
        var merges = new List<(string, string)>();
        var changed = new HashSet<long>(PairComparer.Instance);
        while (vocab.Count < vocabSize && heap.TryDequeue(out long best, out var pri))
        {
            if (counts.GetValueOrDefault(best) != pri.Count) continue; // stale heap entry
            if (pri.Count < minFrequency) break;
            int a = (int)(best >> 32), b = (int)(uint)best;
            merges.Add((symStr[a], symStr[b]));
            int m = AddSym(symStr[a] + symStr[b]);
            changed.Clear();
            var affected = where[best].OrderBy(x => x).ToArray();
            foreach (int wi in affected)
            {
                AddWord(wi, -1, changed);
                var w = words[wi];
                var nw = new List<int>(w.Count);
                for (int j = 0; j < w.Count;)
                {
                    if (j + 1 < w.Count && w[j] == a && w[j + 1] == b) { nw.Add(m); j += 2; }
                    else nw.Add(w[j++]);
                }
                words[wi] = nw;
                AddWord(wi, 1, changed);
            }
            counts.Remove(best);
            where.Remove(best);
            foreach (var k in changed.OrderBy(k => k)) if (k != best) Push(k);
        }
        return new BpeModel { Vocab = vocab, Merges = merges, SpecialTokens = specials };
    }

    private static IEnumerable<string> CutSpecials(string text, List<string> specials)
    {
        if (specials.Count == 0) { yield return text; yield break; }
        int last = 0;
        for (int i = 0; i < text.Length; i++)
        {
            foreach (var s in specials)
            {
                if (s.Length == 0 || i + s.Length > text.Length || string.CompareOrdinal(text, i, s, 0, s.Length) != 0) continue;
                if (i > last) yield return text[last..i];
                last = i + s.Length;
                i = last - 1;
                break;
            }
        }
        if (last < text.Length) yield return text[last..];
    }
}
