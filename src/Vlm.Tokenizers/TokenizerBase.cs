using Vlm.Core;
using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers;

/// <summary>Names of the special tokens of a tokenizer (HF <c>SPECIAL_TOKENS_ATTRIBUTES</c>).</summary>
public sealed class SpecialTokens
{
    public string? Bos { get; set; }
    public string? Eos { get; set; }
    public string? Unk { get; set; }
    public string? Sep { get; set; }
    public string? Pad { get; set; }
    public string? Cls { get; set; }
    public string? Mask { get; set; }
    public List<string> Additional { get; } = [];

    /// <summary>HF <c>all_special_tokens</c> order: bos, eos, unk, sep, pad, cls, mask, additional; no duplicates.</summary>
    public List<string> All()
    {
        var list = new List<string>();
        foreach (var t in new[] { Bos, Eos, Unk, Sep, Pad, Cls, Mask }.Concat(Additional))
            if (t != null && !list.Contains(t)) list.Add(t);
        return list;
    }
}

/// <summary>
/// HF slow-tokenizer pipeline shared by BPE and WordPiece (transformers 4.47 <c>PreTrainedTokenizer</c>):
/// pre-process, split on added tokens (longest match, leftmost first, with lstrip/rstrip/single_word), run the
/// model on the text pieces, then truncate, add the template special tokens and pad.
/// </summary>
public abstract class TokenizerBase : ITokenizer
{
    private readonly Dictionary<string, AddedToken> _addedByContent = new(StringComparer.Ordinal);
    private readonly Dictionary<int, AddedToken> _addedById = [];
    private readonly bool[] _addedFirstChar = new bool[65536];
    private Dictionary<char, AddedToken[]> _addedByFirst = [];
    private HashSet<int> _specialIds = [];
    private HashSet<string> _specialTokens = new(StringComparer.Ordinal);

    protected TokenizerBase(SpecialTokens specials) => Specials = specials;

    public SpecialTokens Specials { get; }
    public bool CleanUpTokenizationSpaces { get; set; }
    /// <summary>HF <c>model_max_length</c>, used when truncation is requested without a max length.</summary>
    public int ModelMaxLength { get; set; } = int.MaxValue;
    public IReadOnlyCollection<AddedToken> AddedTokens => _addedById.Values;

    /// <summary>Size of the base vocabulary (HF <c>vocab_size</c>).</summary>
    public abstract int VocabSize { get; }
    /// <summary>Number of ids including added tokens (HF <c>len(tokenizer)</c>; max id + 1).</summary>
    public int TotalSize => Math.Max(VocabSize, _addedById.Count == 0 ? 0 : _addedById.Keys.Max() + 1);

    public int PadId => TokenToId(Specials.Pad ?? "") ?? 0;
    public int UnkId => TokenToId(Specials.Unk ?? "") ?? throw new InvalidOperationException("tokenizer has no unk token");
    public int? MaskId => Specials.Mask == null ? null : TokenToId(Specials.Mask);
    public int? ClsId => Specials.Cls == null ? null : TokenToId(Specials.Cls);
    public int? SepId => Specials.Sep == null ? null : TokenToId(Specials.Sep);
    public int? BosId => Specials.Bos == null ? null : TokenToId(Specials.Bos);
    public int? EosId => Specials.Eos == null ? null : TokenToId(Specials.Eos);
    public string? PadToken => Specials.Pad;
    public string? MaskToken => Specials.Mask;

    /// <summary>HF <c>all_special_ids</c>.</summary>
    public IReadOnlySet<int> SpecialIds => _specialIds;

    // ---- model hooks -------------------------------------------------------------------------------------

    /// <summary>Id of a token of the base vocabulary, or -1.</summary>
    protected abstract int VocabLookup(string token);
    /// <summary>Token of a base-vocabulary id, or null.</summary>
    protected abstract string? VocabToken(int id);
    /// <summary>HF <c>_tokenize</c> on one text piece; appends tokens with original offsets.</summary>
    protected abstract void TokenizeSegment(Segment seg, List<Token> output);
    /// <summary>HF <c>convert_tokens_to_string</c>.</summary>
    protected abstract string ConvertTokensToString(List<string> tokens);
    /// <summary>HF <c>prepare_for_tokenization</c> and the lower-casing of <c>tokenize()</c>.</summary>
    protected virtual Segment Preprocess(string text) => new(text, 0);
    /// <summary>Template tokens: prefix, middle (between A and B) and suffix with their type id for pairs.</summary>
    protected abstract (string[] Prefix, string[] Middle, string[] Suffix, string[] SingleSuffix, bool PairTypeIdsOne) Template { get; }
    /// <summary>Token string of an id outside the vocabulary (HF behaviour differs per tokenizer).</summary>
    protected abstract string UnknownIdToken(int id);

    // ---- added tokens ------------------------------------------------------------------------------------

    /// <summary>Registers added tokens (special or not) and refreshes the special-id sets.</summary>
    public void AddTokens(IEnumerable<AddedToken> tokens)
    {
        foreach (var t in tokens)
        {
            if (t.Content.Length == 0) continue;
            if (_addedById.TryGetValue(t.Id, out var old)) _addedByContent.Remove(old.Content);
            _addedByContent[t.Content] = t;
            _addedById[t.Id] = t;
        }
        Array.Clear(_addedFirstChar);
        _addedByFirst = _addedByContent.Values.GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ThenBy(t => t.Content, StringComparer.Ordinal).ToArray());
        foreach (var c in _addedByFirst.Keys) _addedFirstChar[c] = true;
        RefreshSpecials();
    }

    protected void RefreshSpecials()
    {
        _specialTokens = new HashSet<string>(Specials.All(), StringComparer.Ordinal);
        _specialIds = [];
        foreach (var t in _specialTokens) if (TokenToId(t) is int id) _specialIds.Add(id);
    }

    public int? TokenToId(string token)
    {
        if (_addedByContent.TryGetValue(token, out var a)) return a.Id;
        int id = VocabLookup(token);
        return id >= 0 ? id : null;
    }

    public string? IdToToken(int id) => _addedById.TryGetValue(id, out var a) ? a.Content : VocabToken(id);

    /// <summary>HF <c>convert_tokens_to_ids</c>: unknown tokens give the unk id.</summary>
    public int ConvertTokenToId(string token) => TokenToId(token) ?? UnkId;

    // ---- tokenize ----------------------------------------------------------------------------------------

    public IReadOnlyList<string> Tokenize(string text) => TokenizeWithOffsets(text).Select(t => t.Text).ToList();

    public IReadOnlyList<Token> TokenizeWithOffsets(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<Token>();
        foreach (var seg in SplitOnAddedTokens(Preprocess(text)))
        {
            if (seg.Text.Length == 0) continue;
            if (seg.AddedId >= 0)
            {
                var (s, e) = seg.Span(0, seg.Text.Length);
                output.Add(new Token(seg.Text, seg.AddedId, s, e));
            }
            else TokenizeSegment(seg, output);
        }
        return output;
    }

    /// <summary>HF <c>tokens_trie.split</c> plus the lstrip / rstrip / single_word handling of <c>tokenize()</c>.</summary>
    private List<Segment> SplitOnAddedTokens(Segment text)
    {
        var parts = new List<Segment>();
        string s = text.Text;
        if (_addedByContent.Count == 0) { parts.Add(text); return parts; }
        int last = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (!_addedFirstChar[s[i]]) continue;
            foreach (var t in _addedByFirst[s[i]])
            {
                if (string.CompareOrdinal(s, i, t.Content, 0, t.Content.Length) != 0 || i + t.Content.Length > s.Length) continue;
                parts.Add(text.Slice(last, i));
                var tok = text.Slice(i, i + t.Content.Length);
                tok.AddedId = t.Id;
                parts.Add(tok);
                last = i + t.Content.Length;
                i = last - 1;
                break;
            }
        }
        parts.Add(text.Slice(last, s.Length));

        for (int i = 0; i < parts.Count; i++)
        {
            var p = parts[i];
            if (p.AddedId < 0) continue;
            var t = _addedById[p.AddedId];
            Segment? left = i > 0 ? parts[i - 1] : null, right = i < parts.Count - 1 ? parts[i + 1] : null;
            if (t.RStrip && right is { Text.Length: > 0 }) parts[i + 1] = right = Keep(right, right.PyLStrip());
            if (t.LStrip && left is { Text.Length: > 0 }) parts[i - 1] = left = Keep(left, left.PyRStrip());
            if (t.SingleWord && left is { Text.Length: > 0 } && left.Text[^1] != ' ')
            {
                parts[i - 1] = Segment.Concat(left, p);
                parts[i] = new Segment("", 0);
            }
            else if (t.SingleWord && right is { Text.Length: > 0 } && right.Text[0] != ' ')
            {
                // HF glues the right neighbour onto the token, which makes the whole piece ordinary text
                parts[i] = Segment.Concat(p, right);
                parts[i + 1] = new Segment("", 0);
            }
        }
        return parts;

        static Segment Keep(Segment original, Segment stripped)
        {
            stripped.AddedId = original.AddedId;
            return stripped;
        }
    }

    // ---- encode ------------------------------------------------------------------------------------------

    public int NumSpecialTokensToAdd(bool pair)
    {
        var t = Template;
        return t.Prefix.Length + (pair ? t.Middle.Length + t.Suffix.Length : t.SingleSuffix.Length);
    }

    public Encoding Encode(string text, string? pair = null, bool addSpecialTokens = true, int? maxLength = null,
        Truncation truncation = Truncation.None, Padding padding = Padding.None)
    {
        var a = TokenizeWithOffsets(text).ToList();
        var b = pair == null ? null : TokenizeWithOffsets(pair).ToList();
        if (truncation != Truncation.None)
        {
            int ml = maxLength ?? ModelMaxLength;
            int total = a.Count + (b?.Count ?? 0) + (addSpecialTokens ? NumSpecialTokensToAdd(b != null) : 0);
            if (total > ml) Truncate(a, b, total - ml, truncation);
        }
        var enc = Build(a, b, addSpecialTokens);
        if (padding == Padding.MaxLength && maxLength is int target && enc.Length < target) enc = Pad(enc, target);
        return enc;
    }

    /// <summary>
    /// Encodes raw UTF-8 bytes: every maximal invalid subsequence becomes one U+FFFD first (the same rule as
    /// Python's <c>bytes.decode("utf-8", errors="replace")</c>), so malformed input never throws.
    /// </summary>
    public Encoding EncodeUtf8(ReadOnlySpan<byte> utf8, bool addSpecialTokens = true, int? maxLength = null,
        Truncation truncation = Truncation.None, Padding padding = Padding.None)
        => Encode(Utf8Replacing.GetString(utf8), null, addSpecialTokens, maxLength, truncation, padding);

    private static readonly System.Text.UTF8Encoding Utf8Replacing = new(false, false);

    /// <summary>HF <c>truncate_sequences</c> (right side, stride 0); impossible requests leave the input as is, as HF does.</summary>
    private static void Truncate(List<Token> a, List<Token>? b, int remove, Truncation strategy)
    {
        if (strategy == Truncation.OnlyFirst || (strategy == Truncation.LongestFirst && b == null))
        {
            if (a.Count > remove) a.RemoveRange(a.Count - remove, remove);
        }
        else if (strategy == Truncation.LongestFirst)
        {
            for (int k = 0; k < remove; k++)
            {
                if (a.Count > b!.Count) a.RemoveAt(a.Count - 1);
                else if (b.Count > 0) b.RemoveAt(b.Count - 1);
            }
        }
        else if (strategy == Truncation.OnlySecond && b != null)
        {
            if (b.Count > remove) b.RemoveRange(b.Count - remove, remove);
        }
    }

    private Encoding Build(List<Token> a, List<Token>? b, bool addSpecial)
    {
        var ids = new List<long>(); var toks = new List<string>(); var types = new List<long>();
        var special = new List<long>(); var offs = new List<(int, int)>(); var seq = new List<int>();
        var tpl = Template;
        void AddSpecial(string t, long type)
        {
            ids.Add(ConvertTokenToId(t)); toks.Add(t); types.Add(type); special.Add(1); offs.Add((0, 0)); seq.Add(-1);
        }
        void AddSeq(List<Token> s, long type, int seqId)
        {
            foreach (var t in s) { ids.Add(t.Id); toks.Add(t.Text); types.Add(type); special.Add(0); offs.Add((t.Start, t.End)); seq.Add(seqId); }
        }
        long bType = tpl.PairTypeIdsOne ? 1 : 0;
        if (addSpecial) foreach (var t in tpl.Prefix) AddSpecial(t, 0);
        AddSeq(a, 0, 0);
        if (b == null)
        {
            if (addSpecial) foreach (var t in tpl.SingleSuffix) AddSpecial(t, 0);
        }
        else
        {
            if (addSpecial) foreach (var t in tpl.Middle) AddSpecial(t, 0);
            AddSeq(b, bType, 1);
            if (addSpecial) foreach (var t in tpl.Suffix) AddSpecial(t, bType);
        }
        return new Encoding
        {
            Ids = [.. ids], Tokens = [.. toks], AttentionMask = Enumerable.Repeat(1L, ids.Count).ToArray(), TypeIds = [.. types],
            SpecialTokensMask = [.. special], Offsets = [.. offs], SequenceIds = [.. seq],
        };
    }

    private Encoding Pad(Encoding e, int target)
    {
        int n = target - e.Length;
        if (n <= 0) return e;
        string padTok = Specials.Pad ?? throw new InvalidOperationException("padding requested but the tokenizer has no pad token");
        long padId = PadId;
        return new Encoding
        {
            Ids = [.. e.Ids, .. Enumerable.Repeat(padId, n)],
            Tokens = [.. e.Tokens, .. Enumerable.Repeat(padTok, n)],
            AttentionMask = [.. e.AttentionMask, .. new long[n]],
            TypeIds = [.. e.TypeIds, .. new long[n]],
            SpecialTokensMask = [.. e.SpecialTokensMask, .. Enumerable.Repeat(1L, n)],
            Offsets = [.. e.Offsets, .. new (int, int)[n]],
            SequenceIds = [.. e.SequenceIds, .. Enumerable.Repeat(-1, n)],
        };
    }

    public BatchEncoding EncodeBatch(IReadOnlyList<string> texts, IReadOnlyList<string>? pairs = null, bool addSpecialTokens = true,
        int? maxLength = null, Truncation truncation = Truncation.None, Padding padding = Padding.Longest)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (pairs != null && pairs.Count != texts.Count)
            throw new ArgumentException($"EncodeBatch: {texts.Count} texts but {pairs.Count} pairs");
        var encs = new Encoding[texts.Count];
        for (int i = 0; i < texts.Count; i++)
            encs[i] = Encode(texts[i], pairs?[i], addSpecialTokens, maxLength, truncation, Padding.None);
        int longest = encs.Length == 0 ? 0 : encs.Max(e => e.Length);
        int target = padding switch
        {
            Padding.Longest => longest,
            Padding.MaxLength => maxLength ?? throw new ArgumentException("Padding.MaxLength needs maxLength"),
            _ => longest,
        };
        for (int i = 0; i < encs.Length; i++)
        {
            if (padding != Padding.None) encs[i] = Pad(encs[i], target);
            if (encs[i].Length != target)
                throw new InvalidOperationException(
                    $"EncodeBatch: sequence {i} has {encs[i].Length} tokens but the batch needs {target} " +
                    "(use Padding.Longest, or truncation with maxLength)");
        }
        int bsz = encs.Length;
        var ids = new long[bsz * target]; var mask = new long[bsz * target]; var types = new long[bsz * target];
        for (int i = 0; i < bsz; i++)
        {
            encs[i].Ids.CopyTo(ids, i * target);
            encs[i].AttentionMask.CopyTo(mask, i * target);
            encs[i].TypeIds.CopyTo(types, i * target);
        }
        return new BatchEncoding
        {
            Encodings = encs,
            InputIds = Tensor.FromArray(ids, bsz, target),
            AttentionMask = Tensor.FromArray(mask, bsz, target),
            TokenTypeIds = Tensor.FromArray(types, bsz, target),
        };
    }

    // ---- decode ------------------------------------------------------------------------------------------

    public string Decode(IEnumerable<long> ids, bool skipSpecialTokens = false, bool? cleanUpTokenizationSpaces = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var subTexts = new List<string>();
        var current = new List<string>();
        foreach (long lid in ids)
        {
            if (lid < int.MinValue || lid > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {lid} is out of range");
            int id = (int)lid;
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            string tok = IdToToken(id) ?? UnknownIdToken(id);
            // HF "legacy added tokens": added tokens that are not special are decoded on their own
            if (_addedByContent.ContainsKey(tok) && !_specialTokens.Contains(tok))
            {
                if (current.Count > 0)
                {
                    var str = ConvertTokensToString(current);
                    if (str.Length > 0) subTexts.Add(str);
                    current.Clear();
                }
                subTexts.Add(tok);
            }
            else current.Add(tok);
        }
        if (current.Count > 0) subTexts.Add(ConvertTokensToString(current));
        var text = string.Join(" ", subTexts);
        return cleanUpTokenizationSpaces ?? CleanUpTokenizationSpaces ? CleanUpTokenization(text) : text;
    }

    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false, bool? cleanUpTokenizationSpaces = null)
        => Decode(ids.Select(i => (long)i), skipSpecialTokens, cleanUpTokenizationSpaces);

    /// <summary>HF <c>clean_up_tokenization</c>.</summary>
    public static string CleanUpTokenization(string s) => s
        .Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

    /// <summary>Python <c>str.strip()</c>.</summary>
    protected static string PyStrip(string s)
    {
        int i = 0, j = s.Length;
        while (i < j && UnicodeInfo.IsPythonSpace(s[i])) i++;
        while (j > i && UnicodeInfo.IsPythonSpace(s[j - 1])) j--;
        return s[i..j];
    }
}
