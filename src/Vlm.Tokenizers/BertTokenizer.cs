using System.Text;
using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers;

/// <summary>Options of HF <c>BertTokenizer</c> / <c>BasicTokenizer</c>.</summary>
public sealed class BertOptions
{
    public bool DoLowerCase { get; set; } = true;
    public bool DoBasicTokenize { get; set; } = true;
    /// <summary>null: follow <see cref="DoLowerCase"/>; true/false force accent stripping on/off.</summary>
    public bool? StripAccents { get; set; }
    public bool TokenizeChineseChars { get; set; } = true;
    public bool DoSplitOnPunc { get; set; } = true;
    public List<string> NeverSplit { get; } = [];
    public int MaxInputCharsPerWord { get; set; } = 100;
    public string ContinuingSubwordPrefix { get; set; } = "##";
}

/// <summary>
/// BERT WordPiece (Devlin et al. 2019; HF <c>BertTokenizer</c>, slow): BasicTokenizer (clean text, CJK split,
/// NFC, lower case + NFD accent stripping, punctuation split) then greedy longest-match-first WordPiece.
/// </summary>
public sealed class BertTokenizer : TokenizerBase
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _contLookup;
    private readonly Dictionary<int, string> _idToToken = [];
    private readonly HashSet<string> _neverSplitConfig;

    /// <param name="vocab">token to id (HF keeps the LAST id of a duplicated token, the id map keeps every line).</param>
    public BertTokenizer(IReadOnlyDictionary<string, int> vocab, SpecialTokens specials, BertOptions? options = null,
        IEnumerable<AddedToken>? addedTokens = null, IReadOnlyDictionary<int, string>? idToToken = null)
        : base(specials)
    {
        Options = options ?? new BertOptions();
        _vocab = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        _lookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        // continuation pieces keyed without their "##", so lookups need no string building
        var cont = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var kv in _vocab)
            if (kv.Key.StartsWith(Options.ContinuingSubwordPrefix, StringComparison.Ordinal)) cont[kv.Key[Options.ContinuingSubwordPrefix.Length..]] = kv.Value;
        _contLookup = cont.GetAlternateLookup<ReadOnlySpan<char>>();
        if (idToToken != null) foreach (var kv in idToToken) _idToToken[kv.Key] = kv.Value;
        else foreach (var kv in _vocab) _idToToken[kv.Value] = kv.Key;
        _neverSplitConfig = new HashSet<string>(Options.NeverSplit, StringComparer.Ordinal);
        CleanUpTokenizationSpaces = true;
        var added = (addedTokens ?? []).ToList();
        int next = Math.Max(_vocab.Count == 0 ? 0 : _vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
        foreach (var s in specials.All())
        {
            if (added.Any(t => t.Content == s)) continue;
            added.Add(_vocab.TryGetValue(s, out int id) ? new AddedToken(s, id) : new AddedToken(s, next++));
        }
        AddTokens(added);
    }

    public BertOptions Options { get; }
    public override int VocabSize => _vocab.Count;
    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    protected override int VocabLookup(string token) => _vocab.TryGetValue(token, out int id) ? id : -1;
    protected override string? VocabToken(int id) => _idToToken.TryGetValue(id, out var t) ? t : null;
    protected override string UnknownIdToken(int id) => Specials.Unk ?? throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is not in the vocabulary");

    protected override (string[] Prefix, string[] Middle, string[] Suffix, string[] SingleSuffix, bool PairTypeIdsOne) Template =>
        Specials.Cls != null && Specials.Sep != null
            ? ([Specials.Cls], [Specials.Sep], [Specials.Sep], [Specials.Sep], true)
            : ([], [], [], [], true);

    /// <summary>
    /// HF <c>tokenize()</c> lower-cases every character outside the special tokens one at a time (regex
    /// <c>(special)|(.+?)</c>, so no context-dependent final sigma and '\n' untouched) before splitting.
    /// </summary>
    protected override Segment Preprocess(string text)
    {
        if (!Options.DoLowerCase) return new Segment(text, 0);
        var specials = Specials.All().Where(s => s.Length > 0).ToList();
        foreach (var t in AddedTokens) if (!t.Special && t.Normalized && !specials.Contains(t.Content)) specials.Add(t.Content);
        var sb = new StringBuilder(text.Length);
        var st = new List<int>(text.Length);
        var en = new List<int>(text.Length);
        var low = new List<int>(2);
        for (int i = 0; i < text.Length;)
        {
            string? sp = null;
            foreach (var s in specials) if (string.CompareOrdinal(text, i, s, 0, s.Length) == 0 && i + s.Length <= text.Length) { sp = s; break; }
            if (sp != null)
            {
                for (int k = 0; k < sp.Length; k++) { sb.Append(text[i + k]); st.Add(i + k); en.Add(i + k + 1); }
                i += sp.Length;
                continue;
            }
            int cp = UnicodeInfo.CodePointAt(text, i, out int w);
            low.Clear();
            if (cp == '\n') low.Add(cp); else UnicodeInfo.AppendLower(cp, low);
            foreach (var c in low)
            {
                int n0 = sb.Length;
                UnicodeInfo.AppendCodePoint(sb, c);
                for (int k = n0; k < sb.Length; k++) { st.Add(i); en.Add(i + w); }
            }
            i += w;
        }
        return new Segment(sb.ToString(), 0, [.. st], [.. en]);
    }

    protected override void TokenizeSegment(Segment seg, List<Token> output)
    {
        if (!Options.DoBasicTokenize)
        {
            foreach (var word in WhitespaceSplit(ToAligned(seg))) WordPiece(word, output);
            return;
        }
        foreach (var word in BasicTokenize(seg))
        {
            if (_neverSplitConfig.Contains(word.ToString()))
            {
                var s = word.ToString();
                output.Add(new Token(s, ConvertTokenToId(s), word.Starts.Min(), word.Ends.Max()));
            }
            else WordPiece(word, output);
        }
    }

    private static AlignedText ToAligned(Segment seg)
    {
        var t = new AlignedText();
        string s = seg.Text;
        for (int i = 0; i < s.Length;)
        {
            int cp = UnicodeInfo.CodePointAt(s, i, out int w);
            var (a, b) = seg.Span(i, i + w);
            t.Add(cp, a, b);
            i += w;
        }
        return t;
    }

    /// <summary>HF <c>BasicTokenizer.tokenize</c> with <c>never_split = all special tokens</c>.</summary>
    public List<AlignedText> BasicTokenize(Segment seg)
    {
        var src = ToAligned(seg);
        // _clean_text and _tokenize_chinese_chars
        var t = new AlignedText();
        for (int i = 0; i < src.Count; i++)
        {
            int cp = src.Cps[i];
            if (cp == 0 || cp == 0xFFFD || IsControl(cp)) continue;
            if (IsBertWhitespace(cp)) { t.Add(' ', src.Starts[i], src.Ends[i]); continue; }
            if (Options.TokenizeChineseChars && IsChineseChar(cp))
            {
                t.Add(' ', src.Starts[i], src.Starts[i]);
                t.Add(cp, src.Starts[i], src.Ends[i]);
                t.Add(' ', src.Ends[i], src.Ends[i]);
                continue;
            }
            t.Add(cp, src.Starts[i], src.Ends[i]);
        }
        UnicodeInfo.Nfc(t);
        var neverSplit = new HashSet<string>(_neverSplitConfig, StringComparer.Ordinal);
        foreach (var s in Specials.All()) neverSplit.Add(s);
        var result = new List<AlignedText>();
        foreach (var word in WhitespaceSplit(t))
        {
            var w = word;
            bool never = neverSplit.Contains(w.ToString());
            if (!never)
            {
                if (Options.DoLowerCase)
                {
                    w = Lower(w);
                    if (Options.StripAccents != false) w = StripAccents(w);
                }
                else if (Options.StripAccents == true) w = StripAccents(w);
            }
            if (never || !Options.DoSplitOnPunc) { if (w.Count > 0) result.Add(w); continue; }
            // _run_split_on_punc
            AlignedText? cur = null;
            for (int i = 0; i < w.Count; i++)
            {
                int cp = w.Cps[i];
                if (IsPunctuation(cp))
                {
                    var p = new AlignedText();
                    p.Add(cp, w.Starts[i], w.Ends[i]);
                    result.Add(p);
                    cur = null;
                }
                else
                {
                    if (cur == null) { cur = new AlignedText(); result.Add(cur); }
                    cur.Add(cp, w.Starts[i], w.Ends[i]);
                }
            }
        }
        return result;
    }

    private static AlignedText Lower(AlignedText w)
    {
        var r = new AlignedText();
        var tmp = new List<int>(2);
        for (int i = 0; i < w.Count; i++)
        {
            tmp.Clear();
            UnicodeInfo.AppendLower(w.Cps[i], tmp);
            foreach (var c in tmp) r.Add(c, w.Starts[i], w.Ends[i]);
        }
        return r;
    }

    private static AlignedText StripAccents(AlignedText w)
    {
        UnicodeInfo.Nfd(w);
        var r = new AlignedText();
        for (int i = 0; i < w.Count; i++)
            if (UnicodeInfo.Category(w.Cps[i]) != UCat.Mn) r.Add(w.Cps[i], w.Starts[i], w.Ends[i]);
        return r;
    }

    /// <summary>Python <c>str.split()</c>: runs of <c>isspace()</c> separate words.</summary>
    private static List<AlignedText> WhitespaceSplit(AlignedText t)
    {
        var words = new List<AlignedText>();
        AlignedText? cur = null;
        for (int i = 0; i < t.Count; i++)
        {
            if (UnicodeInfo.IsPythonSpace(t.Cps[i])) { cur = null; continue; }
            if (cur == null) { cur = new AlignedText(); words.Add(cur); }
            cur.Add(t.Cps[i], t.Starts[i], t.Ends[i]);
        }
        return words;
    }

    /// <summary>HF <c>WordpieceTokenizer.tokenize</c> for one word (greedy longest match first).</summary>
    private void WordPiece(AlignedText word, List<Token> output)
    {
        if (word.Count == 0) return;
        string unk = Specials.Unk ?? "[UNK]";
        if (word.Count > Options.MaxInputCharsPerWord)
        {
            output.Add(new Token(unk, ConvertTokenToId(unk), word.Starts.Min(), word.Ends.Max()));
            return;
        }
        // UTF-16 form of the word with the unit index of every code point
        var sb = new StringBuilder(word.Count * 2);
        var unitAt = new int[word.Count + 1];
        for (int i = 0; i < word.Count; i++) { unitAt[i] = sb.Length; UnicodeInfo.AppendCodePoint(sb, word.Cps[i]); }
        unitAt[word.Count] = sb.Length;
        var chars = sb.ToString().AsSpan();
        int n0 = output.Count;
        int start = 0;
        while (start < word.Count)
        {
            int end = word.Count, found = -1;
            while (start < end)
            {
                var piece = chars[unitAt[start]..unitAt[end]];
                if ((start > 0 ? _contLookup : _lookup).TryGetValue(piece, out int id)) { found = id; break; }
                end--;
            }
            if (found < 0)
            {
                output.RemoveRange(n0, output.Count - n0);
                output.Add(new Token(unk, ConvertTokenToId(unk), word.Starts.Min(), word.Ends.Max()));
                return;
            }
            int s0 = int.MaxValue, e0 = int.MinValue;
            for (int k = start; k < end; k++) { s0 = Math.Min(s0, word.Starts[k]); e0 = Math.Max(e0, word.Ends[k]); }
            output.Add(new Token(_idToToken.TryGetValue(found, out var txt) ? txt : "", found, s0, e0));
            start = end;
        }
    }

    protected override string ConvertTokensToString(List<string> tokens)
        => PyStrip(string.Join(" ", tokens).Replace(" " + Options.ContinuingSubwordPrefix, ""));

    private static bool IsBertWhitespace(int cp) => cp is ' ' or '\t' or '\n' or '\r' || UnicodeInfo.Category(cp) == UCat.Zs;

    private static bool IsControl(int cp)
    {
        if (cp is '\t' or '\n' or '\r') return false;
        return UnicodeInfo.Category(cp) is UCat.Cc or UCat.Cf or UCat.Cn or UCat.Co or UCat.Cs;
    }

    /// <summary>BERT punctuation: all non-alphanumeric ASCII plus Unicode P*.</summary>
    public static bool IsPunctuation(int cp)
    {
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return UnicodeInfo.Category(cp) is UCat.Pc or UCat.Pd or UCat.Ps or UCat.Pe or UCat.Pi or UCat.Pf or UCat.Po;
    }

    public static bool IsChineseChar(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
