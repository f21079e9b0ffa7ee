using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers;

/// <summary>
/// Hand-written scanner equivalent to the GPT-2 pattern
/// <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c> of the Python <c>regex</c>
/// module (<c>\s</c> = White_Space property), on code points; unpaired surrogates count as U+FFFD (class "other").
/// </summary>
public static class Gpt2PreTokenizer
{
    private const byte Letter = 0, Number = 1, Space = 2, Other = 3;
    private static readonly byte[] Ascii = BuildAscii();

    private static byte[] BuildAscii()
    {
        var a = new byte[128];
        for (int c = 0; c < 128; c++) a[c] = ClassifySlow(c);
        return a;
    }

    private static byte ClassifySlow(int cp)
    {
        if (UnicodeInfo.IsWhiteSpaceProperty(cp)) return Space;
        if (UnicodeInfo.IsLetter(cp)) return Letter;
        if (UnicodeInfo.IsNumber(cp)) return Number;
        return Other;
    }

    private static byte Classify(string s, int i, out int width)
    {
        char c = s[i];
        if (c < 128) { width = 1; return Ascii[c]; }
        return ClassifySlow(UnicodeInfo.CodePointAt(s, i, out width));
    }

    /// <summary>Appends the [start, end) UTF-16 spans of the pre-tokens of <c>s[from..to)</c>.</summary>
    public static void Split(string s, int from, int to, List<(int Start, int End)> spans)
    {
        int i = from;
        while (i < to)
        {
            char c = s[i];
            if (c == '\'' && i + 1 < to)
            {
                char d = s[i + 1];
                int len = d is 's' or 't' or 'm' or 'd' ? 2
                    : i + 2 < to && ((d == 'r' && s[i + 2] == 'e') || (d == 'v' && s[i + 2] == 'e') || (d == 'l' && s[i + 2] == 'l')) ? 3 : 0;
                if (len > 0) { spans.Add((i, i + len)); i += len; continue; }
            }
            byte cls = Classify(s, i, out int w);
            if (c == ' ' && i + 1 < to)
            {
                byte next = Classify(s, i + 1, out int w2);
                if (next != Space)
                {
                    int j = Run(s, i + 1 + w2, to, next);
                    spans.Add((i, j));
                    i = j;
                    continue;
                }
            }
            if (cls != Space)
            {
                int j = Run(s, i + w, to, cls);
                spans.Add((i, j));
                i = j;
                continue;
            }
            // whitespace: \s+(?!\S) keeps the last space for the next word unless the run reaches the end
            int k = Run(s, i + 1, to, Space); // every White_Space character is a single UTF-16 unit
            if (k < to && k - i >= 2) k--;
            spans.Add((i, k));
            i = k;
        }
    }

    private static int Run(string s, int j, int to, byte cls)
    {
        while (j < to)
        {
            if (Classify(s, j, out int w) != cls) break;
            j += w;
        }
        return j;
    }

    /// <summary>Pre-token strings of <paramref name="s"/> (convenience for tests and the trainer).</summary>
    public static List<string> Split(string s)
    {
        var spans = new List<(int, int)>();
        Split(s, 0, s.Length, spans);
        return spans.Select(p => s[p.Item1..p.Item2]).ToList();
    }
}
