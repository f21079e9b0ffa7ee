using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers;

/// <summary>
/// A piece of (pre-processed) text plus the map from each of its UTF-16 units back to a span of the original
/// input; without maps the piece is the original substring starting at <see cref="Base"/>.
/// </summary>
public sealed class Segment
{
    public Segment(string text, int baseOffset, int[]? starts = null, int[]? ends = null)
    {
        Text = text;
        Base = baseOffset;
        Starts = starts;
        Ends = ends;
    }

    public string Text { get; }
    public int Base { get; }
    public int[]? Starts { get; }
    public int[]? Ends { get; }
    /// <summary>Id of the added token this segment is, or -1 for ordinary text.</summary>
    public int AddedId { get; set; } = -1;

    public int SrcStart(int k) => Starts?[k] ?? Base + k;
    public int SrcEnd(int k) => Ends?[k] ?? Base + k + 1;

    /// <summary>Original span of the UTF-16 units [from, to) (empty span at the start when from == to).</summary>
    public (int Start, int End) Span(int from, int to)
    {
        if (to <= from) return from < Text.Length ? (SrcStart(from), SrcStart(from)) : (End(), End());
        if (Starts == null) return (Base + from, Base + to);
        int s = int.MaxValue, e = int.MinValue;
        for (int k = from; k < to; k++) { s = Math.Min(s, Starts[k]); e = Math.Max(e, Ends![k]); }
        return (s, e);
    }

    private int End() => Text.Length == 0 ? Base : SrcEnd(Text.Length - 1);

    public Segment Slice(int from, int to)
    {
        if (from == 0 && to == Text.Length) return this;
        var text = Text[from..to];
        return Starts == null ? new Segment(text, Base + from) : new Segment(text, 0, Starts[from..to], Ends![from..to]);
    }

    public static Segment Concat(Segment a, Segment b)
    {
        int n = a.Text.Length + b.Text.Length;
        var st = new int[n];
        var en = new int[n];
        for (int k = 0; k < a.Text.Length; k++) { st[k] = a.SrcStart(k); en[k] = a.SrcEnd(k); }
        for (int k = 0; k < b.Text.Length; k++) { st[a.Text.Length + k] = b.SrcStart(k); en[a.Text.Length + k] = b.SrcEnd(k); }
        return new Segment(a.Text + b.Text, 0, st, en);
    }

    /// <summary>Python <c>str.lstrip()</c> (all <c>isspace()</c> characters).</summary>
    public Segment PyLStrip()
    {
        int i = 0;
        while (i < Text.Length && UnicodeInfo.IsPythonSpace(Text[i])) i++;
        return Slice(i, Text.Length);
    }

    /// <summary>Python <c>str.rstrip()</c>.</summary>
    public Segment PyRStrip()
    {
        int j = Text.Length;
        while (j > 0 && UnicodeInfo.IsPythonSpace(Text[j - 1])) j--;
        return Slice(0, j);
    }
}
