namespace Vlm.Tokenizers.Text;

/// <summary>Unicode general categories in the order of <c>gen_unicode_tables.py</c>.</summary>
public enum UCat : byte
{
    Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe,
    Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co,
}

/// <summary>
/// Character properties and normalisation exactly as CPython 3.11 (Unicode 14.0) sees them, from generated
/// tables: .NET in invariant-globalisation mode cannot normalise, and its case mapping is the simple one.
/// </summary>
public static class UnicodeInfo
{
    private static readonly UCat[] Latin1 = BuildLatin1();
    private static readonly Dictionary<int, int> DecompIndex = BuildIndex(UnicodeTables.DecompositionKeys);
    private static readonly Dictionary<int, int> LowerIndex = BuildIndex(UnicodeTables.LowerKeys);
    private static readonly Dictionary<long, int> Compose = BuildCompose();
    private static readonly HashSet<int> PySpace = [.. UnicodeTables.PythonSpace];

    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    public static string Version => UnicodeTables.UnicodeVersion;

    public static UCat Category(int cp)
    {
        if ((uint)cp < 256) return Latin1[cp];
        if ((uint)cp > 0x10FFFF) return UCat.Cn;
        return (UCat)UnicodeTables.CategoryRunValues[RunIndex(UnicodeTables.CategoryRunStarts, cp)];
    }

    public static int CombiningClass(int cp)
    {
        if (cp < 0x300 || cp > 0x10FFFF) return 0;
        return UnicodeTables.CombiningRunValues[RunIndex(UnicodeTables.CombiningRunStarts, cp)];
    }

    public static bool IsLetter(int cp) => Category(cp) is UCat.Lu or UCat.Ll or UCat.Lt or UCat.Lm or UCat.Lo;
    public static bool IsNumber(int cp) => Category(cp) is UCat.Nd or UCat.Nl or UCat.No;

    /// <summary>Regex <c>\s</c> of the Python <c>regex</c> module: the Unicode White_Space property.</summary>
    public static bool IsWhiteSpaceProperty(int cp) => cp switch
    {
        >= 9 and <= 13 => true,
        32 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>Python <c>str.isspace()</c> (also what <c>str.split()</c> / <c>strip()</c> use).</summary>
    public static bool IsPythonSpace(int cp) => cp < 128 ? (cp == 32 || (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x1F)) : PySpace.Contains(cp);

    /// <summary>Python <c>str.lower()</c> of one code point (full mapping: U+0130 gives two code points).</summary>
    public static void AppendLower(int cp, List<int> dst)
    {
        if (cp < 128)
        {
            dst.Add(cp is >= 'A' and <= 'Z' ? cp + 32 : cp);
            return;
        }
        if (LowerIndex.TryGetValue(cp, out int k))
        {
            for (int i = UnicodeTables.LowerOffsets[k]; i < UnicodeTables.LowerOffsets[k + 1]; i++) dst.Add(UnicodeTables.LowerData[i]);
        }
        else dst.Add(cp);
    }

    /// <summary>Full canonical decomposition of one code point (Hangul algorithmically).</summary>
    public static void AppendDecomposition(int cp, List<int> dst)
    {
        int s = cp - SBase;
        if ((uint)s < SCount)
        {
            dst.Add(LBase + s / NCount);
            dst.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) dst.Add(TBase + s % TCount);
            return;
        }
        if (cp >= 0xC0 && DecompIndex.TryGetValue(cp, out int k))
        {
            for (int i = UnicodeTables.DecompositionOffsets[k]; i < UnicodeTables.DecompositionOffsets[k + 1]; i++) dst.Add(UnicodeTables.DecompositionData[i]);
        }
        else dst.Add(cp);
    }

    /// <summary>Primary composite of a pair, or -1.</summary>
    public static int ComposePair(int a, int b)
    {
        int li = a - LBase, vi = b - VBase;
        if ((uint)li < LCount && (uint)vi < VCount) return SBase + (li * VCount + vi) * TCount;
        int si = a - SBase, ti = b - TBase;
        if ((uint)si < SCount && si % TCount == 0 && ti > 0 && ti < TCount) return a + ti;
        return Compose.TryGetValue(((long)a << 21) | (uint)b, out int c) ? c : -1;
    }

    /// <summary>
    /// NFD of a code-point sequence, carrying per-code-point (start, end) spans of the original text: a
    /// decomposed code point's pieces all inherit its span.
    /// </summary>
    public static void Nfd(AlignedText t)
    {
        if (AllBelow(t, 0xC0)) return; // nothing below U+00C0 decomposes or reorders
        var cps = new List<int>(t.Count + 8);
        var starts = new List<int>(t.Count + 8);
        var ends = new List<int>(t.Count + 8);
        var tmp = new List<int>(4);
        for (int i = 0; i < t.Count; i++)
        {
            tmp.Clear();
            AppendDecomposition(t.Cps[i], tmp);
            foreach (var c in tmp) { cps.Add(c); starts.Add(t.Starts[i]); ends.Add(t.Ends[i]); }
        }
        // canonical ordering: stable insertion sort of each run of non-starters by combining class
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0)
            {
                int pc = CombiningClass(cps[j - 1]);
                if (pc <= cc) break;
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                (starts[j - 1], starts[j]) = (starts[j], starts[j - 1]);
                (ends[j - 1], ends[j]) = (ends[j], ends[j - 1]);
                j--;
            }
        }
        t.Replace(cps, starts, ends);
    }

    /// <summary>NFC (NFD + canonical composition, UAX #15); a composite's span is the union of its parts.</summary>
    public static void Nfc(AlignedText t)
    {
        // below U+0300 nothing decomposes differently under NFC and nothing combines: already NFC
        if (AllBelow(t, 0x300)) return;
        Nfd(t);
        int n = t.Count;
        if (n == 0) return;
        var cps = t.Cps; var st = t.Starts; var en = t.Ends;
        int starter = 0;
        int lastClass = CombiningClass(cps[0]);
        if (lastClass != 0) lastClass = 256; // a leading non-starter blocks composition with it
        int w = 1;
        for (int i = 1; i < n; i++)
        {
            int ch = cps[i];
            int cc = CombiningClass(ch);
            int comp = lastClass < cc || lastClass == 0 ? ComposePair(cps[starter], ch) : -1;
            if (comp >= 0)
            {
                cps[starter] = comp;
                st[starter] = Math.Min(st[starter], st[i]);
                en[starter] = Math.Max(en[starter], en[i]);
                continue;
            }
            if (cc == 0) starter = w;
            lastClass = cc;
            cps[w] = ch; st[w] = st[i]; en[w] = en[i];
            w++;
        }
        t.Truncate(w);
    }

    private static bool AllBelow(AlignedText t, int limit)
    {
        foreach (int c in t.Cps) if (c >= limit) return false;
        return true;
    }

    /// <summary>NFC / NFD of a plain string (surrogate-correct).</summary>
    public static string Normalize(string s, bool compose)
    {
        var t = AlignedText.FromString(s);
        if (compose) Nfc(t); else Nfd(t);
        return t.ToString();
    }

    /// <summary>
    /// Code point at <paramref name="i"/>; an unpaired surrogate yields U+FFFD (our defined replacement) and
    /// width 1.
    /// </summary>
    public static int CodePointAt(string s, int i, out int width)
    {
        char c = s[i];
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            width = 2;
            return char.ConvertToUtf32(c, s[i + 1]);
        }
        width = 1;
        return char.IsSurrogate(c) ? 0xFFFD : c;
    }

    public static void AppendCodePoint(System.Text.StringBuilder sb, int cp)
    {
        if (cp < 0x10000) sb.Append((char)cp);
        else
        {
            cp -= 0x10000;
            sb.Append((char)(0xD800 + (cp >> 10)));
            sb.Append((char)(0xDC00 + (cp & 0x3FF)));
        }
    }

    private static int RunIndex(int[] starts, int cp)
    {
        int lo = 0, hi = starts.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (starts[mid] <= cp) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    private static UCat[] BuildLatin1()
    {
        var a = new UCat[256];
        for (int i = 0; i < 256; i++) a[i] = (UCat)UnicodeTables.CategoryRunValues[RunIndex(UnicodeTables.CategoryRunStarts, i)];
        return a;
    }

    private static Dictionary<int, int> BuildIndex(int[] keys)
    {
        var d = new Dictionary<int, int>(keys.Length);
        for (int i = 0; i < keys.Length; i++) d[keys[i]] = i;
        return d;
    }

    private static Dictionary<long, int> BuildCompose()
    {
        var d = new Dictionary<long, int>(UnicodeTables.CompositionResult.Length);
        for (int i = 0; i < UnicodeTables.CompositionResult.Length; i++)
            d[((long)UnicodeTables.CompositionFirst[i] << 21) | (uint)UnicodeTables.CompositionSecond[i]] = UnicodeTables.CompositionResult[i];
        return d;
    }
}

/// <summary>
/// A code-point sequence where every code point remembers the UTF-16 span [start, end) of the original
/// string it came from, so that normalisation steps keep token offsets.
/// </summary>
public sealed class AlignedText
{
    public List<int> Cps { get; private set; } = [];
    public List<int> Starts { get; private set; } = [];
    public List<int> Ends { get; private set; } = [];
    public int Count => Cps.Count;

    public void Add(int cp, int start, int end) { Cps.Add(cp); Starts.Add(start); Ends.Add(end); }

    internal void Replace(List<int> cps, List<int> starts, List<int> ends) { Cps = cps; Starts = starts; Ends = ends; }

    internal void Truncate(int n)
    {
        Cps.RemoveRange(n, Cps.Count - n);
        Starts.RemoveRange(n, Starts.Count - n);
        Ends.RemoveRange(n, Ends.Count - n);
    }

    /// <summary>Code points of <paramref name="s"/> from <paramref name="from"/> to <paramref name="to"/>, spans offset by <paramref name="baseOffset"/>.</summary>
    public static AlignedText FromString(string s, int from = 0, int to = -1, int baseOffset = 0)
    {
        if (to < 0) to = s.Length;
        var t = new AlignedText();
        for (int i = from; i < to;)
        {
            int cp = UnicodeInfo.CodePointAt(s, i, out int w);
            t.Add(cp, baseOffset + i, baseOffset + i + w);
            i += w;
        }
        return t;
    }

    public override string ToString()
    {
        var sb = new System.Text.StringBuilder(Cps.Count);
        foreach (var c in Cps) UnicodeInfo.AppendCodePoint(sb, c);
        return sb.ToString();
    }
}
