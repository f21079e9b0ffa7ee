using System.Collections.Concurrent;
using System.Text;
using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers;

/// <summary>
/// GPT-2 byte-level BPE (Radford et al. 2019; HF <c>GPT2Tokenizer</c> / <c>RobertaTokenizer</c>, slow): GPT-2
/// pre-tokenisation, UTF-8 bytes mapped to printable characters (<see cref="ByteLevel"/>), then merges by rank.
/// Merging follows HF's <c>bpe()</c> exactly: repeatedly take the lowest-ranked adjacent pair and merge all of
/// its occurrences left to right.
/// </summary>
public sealed class ByteLevelBpeTokenizer : TokenizerBase
{
    private readonly Dictionary<string, int> _encoder;
    private readonly Dictionary<int, string> _decoder;
    // Symbols: every string BPE can produce (vocab entries plus merge results missing from the vocab).
    private readonly List<string> _symStr = [];
    private readonly Dictionary<string, int> _symId = new(StringComparer.Ordinal);
    private int[] _symToken = [];
    private readonly Dictionary<long, long> _merges = new(PairComparer.Instance); // (left sym << 32 | right sym) -> (rank << 32 | merged sym)
    private readonly int[] _byteSym = new int[256];
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private const int CacheLimit = 100_000;
    private int _cacheCount;
    private const int SimpleBpeMaxLength = 48;

    /// <summary>
    /// Builds the tokenizer from a vocabulary and the ordered merge list. <paramref name="template"/> selects the
    /// special-token template: "roberta" (&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;) or "none" (GPT-2).
    /// </summary>
    public ByteLevelBpeTokenizer(IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges,
        SpecialTokens specials, IEnumerable<AddedToken>? addedTokens = null, bool addPrefixSpace = false, string template = "roberta")
        : base(specials)
    {
        _encoder = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        _decoder = [];
        foreach (var kv in _encoder) _decoder[kv.Value] = kv.Key;
        AddPrefixSpace = addPrefixSpace;
        TemplateName = template;
        foreach (var kv in _encoder.OrderBy(kv => kv.Value)) Sym(kv.Key);
        for (int b = 0; b < 256; b++) _byteSym[b] = Sym(ByteLevel.ByteToChar[b].ToString());
        for (int r = 0; r < merges.Count; r++)
        {
            var (l, rt) = merges[r];
            int a = Sym(l), bb = Sym(rt), m = Sym(l + rt);
            _merges[((long)a << 32) | (uint)bb] = ((long)r << 32) | (uint)m; // a repeated pair keeps its last rank, as in HF
        }
        _symToken = new int[_symStr.Count];
        for (int i = 0; i < _symStr.Count; i++) _symToken[i] = _encoder.TryGetValue(_symStr[i], out int id) ? id : -1;
        var added = (addedTokens ?? []).ToList();
        // special tokens missing from both the vocab and the added tokens get the next free ids, as HF adds them
        int next = Math.Max(_encoder.Count == 0 ? 0 : _encoder.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
        foreach (var s in specials.All())
            if (!_encoder.ContainsKey(s) && added.All(t => t.Content != s)) added.Add(new AddedToken(s, next++));
        AddTokens(added);
    }

    public bool AddPrefixSpace { get; set; }
    public string TemplateName { get; }
    public override int VocabSize => _encoder.Count;
    public IReadOnlyDictionary<string, int> Vocab => _encoder;
    public int MergeCount => _merges.Count;

    private int Sym(string s)
    {
        if (_symId.TryGetValue(s, out int id)) return id;
        id = _symStr.Count;
        _symStr.Add(s);
        _symId[s] = id;
        return id;
    }

    protected override int VocabLookup(string token) => _encoder.TryGetValue(token, out int id) ? id : -1;
    protected override string? VocabToken(int id) => _decoder.TryGetValue(id, out var t) ? t : null;
    protected override string UnknownIdToken(int id) => throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is not in the vocabulary (size {TotalSize})");

    protected override (string[] Prefix, string[] Middle, string[] Suffix, string[] SingleSuffix, bool PairTypeIdsOne) Template =>
        TemplateName == "roberta" && Specials.Cls != null && Specials.Sep != null
            ? ([Specials.Cls], [Specials.Sep, Specials.Sep], [Specials.Sep], [Specials.Sep], false)
            : ([], [], [], [], false);

    /// <summary>HF <c>prepare_for_tokenization</c>: optional leading space (mapped to an empty span at 0).</summary>
    protected override Segment Preprocess(string text)
    {
        if (!AddPrefixSpace || text.Length == 0 || UnicodeInfo.IsPythonSpace(UnicodeInfo.CodePointAt(text, 0, out _))) return new Segment(text, 0);
        var st = new int[text.Length + 1];
        var en = new int[text.Length + 1];
        for (int k = 0; k < text.Length; k++) { st[k + 1] = k; en[k + 1] = k + 1; }
        return new Segment(" " + text, 0, st, en);
    }

    protected override void TokenizeSegment(Segment seg, List<Token> output)
    {
        string s = seg.Text;
        var spans = new List<(int Start, int End)>();
        Gpt2PreTokenizer.Split(s, 0, s.Length, spans);
        var byteChar = new List<int>(64); // per UTF-8 byte of the pre-token: index of its UTF-16 unit start in s
        var charEnd = new List<int>(64);  // per UTF-8 byte: end of that code point in s
        var bytes = new List<byte>(64);
        var cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var (ps, pe) in spans)
        {
            byteChar.Clear(); charEnd.Clear(); bytes.Clear();
            for (int i = ps; i < pe;)
            {
                int cp = UnicodeInfo.CodePointAt(s, i, out int w);
                int n0 = bytes.Count;
                ByteLevel.AppendUtf8(cp, bytes);
                for (int k = n0; k < bytes.Count; k++) { byteChar.Add(i); charEnd.Add(i + w); }
                i += w;
            }
            if (!cacheLookup.TryGetValue(s.AsSpan(ps, pe - ps), out var syms))
            {
                syms = Bpe(bytes);
                // ConcurrentDictionary.Count takes every lock (slow once the table has grown): count ourselves
                if (_cacheCount >= CacheLimit) { _cache.Clear(); _cacheCount = 0; }
                if (_cache.TryAdd(s.Substring(ps, pe - ps), syms)) Interlocked.Increment(ref _cacheCount);
            }
            int pos = 0;
            foreach (int sym in syms)
            {
                string text = _symStr[sym];
                int a = byteChar[pos], b = charEnd[pos + text.Length - 1];
                pos += text.Length;
                var (os, oe) = seg.Span(a, b);
                int id = _symToken[sym];
                output.Add(new Token(text, id >= 0 ? id : UnkId, os, oe));
            }
        }
    }

    /// <summary>BPE of one pre-token's bytes; returns symbol ids (each symbol's string length = its byte count).</summary>
    internal int[] Bpe(List<byte> bytes)
    {
        var word = new int[bytes.Count];
        for (int i = 0; i < word.Length; i++) word[i] = _byteSym[bytes[i]];
        return word.Length <= SimpleBpeMaxLength ? BpeSimple(word) : BpeHeap(word);
    }

    internal int[] BpeSymbols(byte[] bytes, bool heap)
    {
        var word = new int[bytes.Length];
        for (int i = 0; i < word.Length; i++) word[i] = _byteSym[bytes[i]];
        return heap ? BpeHeap(word) : BpeSimple(word);
    }

    internal string SymbolString(int sym) => _symStr[sym];

    /// <summary>HF <c>bpe()</c> literally: O(n^2) per word, the reference for short words.</summary>
    private int[] BpeSimple(int[] word)
    {
        int n = word.Length;
        var buf = new int[n];
        while (n > 1)
        {
            long best = long.MaxValue;
            int a = -1, b = -1;
            for (int i = 0; i + 1 < n; i++)
            {
                if (_merges.TryGetValue(((long)word[i] << 32) | (uint)word[i + 1], out long v) && v < best)
                {
                    best = v;
                    a = word[i];
                    b = word[i + 1];
                }
            }
            if (best == long.MaxValue) break;
            int merged = (int)best;
            int m = 0;
            for (int i = 0; i < n;)
            {
                if (i + 1 < n && word[i] == a && word[i + 1] == b) { buf[m++] = merged; i += 2; }
                else buf[m++] = word[i++];
            }
            (word, buf) = (buf, word);
            n = m;
        }
        return word.AsSpan(0, n).ToArray();
    }

    /// <summary>
    /// Same result as <see cref="BpeSimple"/> in O(n log n) for long words: a heap of (rank, position) over a
    /// linked list; all occurrences of the lowest pair are merged in one left-to-right pass before the pairs
    /// that pass creates are queued, which is what HF's loop does.
    /// </summary>
    private int[] BpeHeap(int[] word)
    {
        int n = word.Length;
        var sym = (int[])word.Clone();
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var heap = new PriorityQueue<int, long>();
        void Push(int p)
        {
            int q = next[p];
            if (q >= 0 && _merges.TryGetValue(((long)sym[p] << 32) | (uint)sym[q], out long v))
                heap.Enqueue(p, (v & ~0xFFFFFFFFL) | (uint)p);
        }
        for (int i = 0; i + 1 < n; i++) Push(i);
        var created = new List<int>();
        while (heap.TryPeek(out _, out long pri))
        {
            long rank = pri >> 32;
            created.Clear();
            while (heap.TryPeek(out int p, out long pr) && pr >> 32 == rank)
            {
                heap.Dequeue();
                if (!alive[p] || next[p] < 0) continue;
                int q = next[p];
                if (!_merges.TryGetValue(((long)sym[p] << 32) | (uint)sym[q], out long v) || v >> 32 != rank) continue;
                sym[p] = (int)v;
                alive[q] = false;
                next[p] = next[q];
                if (next[q] >= 0) prev[next[q]] = p;
                created.Add(p);
            }
            foreach (int p in created)
            {
                if (!alive[p]) continue;
                if (prev[p] >= 0) Push(prev[p]);
                Push(p);
            }
        }
        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i]) result.Add(sym[i]);
        return [.. result];
    }

    protected override string ConvertTokensToString(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens)
            foreach (char c in t)
            {
                if (ByteLevel.CharToByte.TryGetValue(c, out byte b)) bytes.Add(b);
                else ByteLevel.AppendUtf8(c, bytes); // not a byte-level character (e.g. a hand-added token): keep it
            }
        return ByteLevel.DecodeUtf8(bytes);
    }
}

/// <summary>
/// Hash for packed (left, right) pairs: <c>long.GetHashCode</c> is <c>left ^ right</c>, which collides massively
/// for small symbol ids and made merge lookups ~50x slower.
/// </summary>
internal sealed class PairComparer : IEqualityComparer<long>
{
    public static readonly PairComparer Instance = new();
    public bool Equals(long x, long y) => x == y;
    public int GetHashCode(long x) => (int)(((ulong)x * 0x9E3779B97F4A7C15UL) >> 32);
}

/// <summary>GPT-2's reversible byte &lt;-&gt; printable-character map (<c>bytes_to_unicode</c>) and UTF-8 helpers.</summary>
public static class ByteLevel
{
    public static readonly char[] ByteToChar = Build();
    public static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);
    private static readonly UTF8Encoding Utf8Replace = new(false, false);

    private static char[] Build()
    {
        var map = new char[256];
        var isPrintable = new bool[256];
        for (int b = '!'; b <= '~'; b++) isPrintable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) isPrintable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) isPrintable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = isPrintable[b] ? (char)b : (char)(256 + n++);
        return map;
    }

    public static void AppendUtf8(int cp, List<byte> dst)
    {
        if (cp < 0x80) dst.Add((byte)cp);
        else if (cp < 0x800) { dst.Add((byte)(0xC0 | (cp >> 6))); dst.Add((byte)(0x80 | (cp & 0x3F))); }
        else if (cp < 0x10000)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) cp = 0xFFFD;
            dst.Add((byte)(0xE0 | (cp >> 12))); dst.Add((byte)(0x80 | ((cp >> 6) & 0x3F))); dst.Add((byte)(0x80 | (cp & 0x3F)));
        }
        else
        {
            dst.Add((byte)(0xF0 | (cp >> 18))); dst.Add((byte)(0x80 | ((cp >> 12) & 0x3F)));
            dst.Add((byte)(0x80 | ((cp >> 6) & 0x3F))); dst.Add((byte)(0x80 | (cp & 0x3F)));
        }
    }

    /// <summary>UTF-8 to string; each maximal invalid subsequence becomes one U+FFFD (Python <c>errors="replace"</c>).</summary>
    public static string DecodeUtf8(IReadOnlyList<byte> bytes) => Utf8Replace.GetString(bytes is byte[] a ? a : bytes.ToArray());

    /// <summary>Byte-level string of raw bytes (what BPE sees).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        foreach (var b in bytes) sb.Append(ByteToChar[b]);
        return sb.ToString();
    }
}
