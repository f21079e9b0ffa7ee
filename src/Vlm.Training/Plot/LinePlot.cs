using System.Globalization;

namespace Vlm.Training.Plot;

public sealed record Series(string Name, IReadOnlyList<(double x, double y)> Points, (byte r, byte g, byte b) Colour);

/// <summary>
/// A small line-chart rasteriser (axes, ticks, legend, a built-in 5×7 font) producing 8-bit RGB pixels, for the
/// loss and accuracy curves a training run writes as PNG. No dependency beyond the PNG encoder the caller uses.
/// </summary>
public static class LinePlot
{
    public static (byte[] rgb, int width, int height) Render(string title, IReadOnlyList<Series> series, int width = 640, int height = 400, string xLabel = "step")
    {
        var img = new Canvas(width, height);
        img.Fill(255, 255, 255);
        int left = 60, right = 15, top = 30, bottom = 40;
        int pw = width - left - right, ph = height - top - bottom;
        var pts = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.x) && double.IsFinite(p.y)).ToList();
        double x0 = pts.Count > 0 ? pts.Min(p => p.x) : 0, x1 = pts.Count > 0 ? pts.Max(p => p.x) : 1;
        double y0 = pts.Count > 0 ? pts.Min(p => p.y) : 0, y1 = pts.Count > 0 ? pts.Max(p => p.y) : 1;
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) { y1 = y0 + 1; }
        double pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
        int Px(double x) => left + (int)Math.Round((x - x0) / (x1 - x0) * pw);
        int Py(double y) => top + ph - (int)Math.Round((y - y0) / (y1 - y0) * ph);

        img.Text(left, 8, title, 0, 0, 0, 2);
        for (int i = 0; i <= 5; i++)
        {
            double yv = y0 + (y1 - y0) * i / 5, xv = x0 + (x1 - x0) * i / 5;
            int yy = Py(yv), xx = Px(xv);
            img.Line(left, yy, left + pw, yy, 230, 230, 230);
            img.Line(xx, top, xx, top + ph, 230, 230, 230);
            img.Text(4, yy - 3, Fmt(yv), 60, 60, 60, 1);
            img.Text(xx - 10, top + ph + 6, Fmt(xv), 60, 60, 60, 1);
        }
        img.Line(left, top, left, top + ph, 0, 0, 0);
        img.Line(left, top + ph, left + pw, top + ph, 0, 0, 0);
        img.Text(left + pw / 2 - xLabel.Length * 3, height - 14, xLabel, 0, 0, 0, 1);
        int ly = top + 6;
        foreach (var s in series)
        {
            var (r, g, b) = s.Colour;
            for (int i = 1; i < s.Points.Count; i++)
                img.Line(Px(s.Points[i - 1].x), Py(s.Points[i - 1].y), Px(s.Points[i].x), Py(s.Points[i].y), r, g, b);
            if (s.Points.Count == 1) img.Rect(Px(s.Points[0].x) - 1, Py(s.Points[0].y) - 1, 3, 3, r, g, b);
            img.Rect(left + pw - 120, ly, 10, 7, r, g, b);
            img.Text(left + pw - 106, ly, s.Name, 0, 0, 0, 1);
            ly += 12;
        }
        return (img.Pixels, width, height);
    }

    private static string Fmt(double v) => Math.Abs(v) >= 1000 || (Math.Abs(v) < 0.01 && v != 0)
        ? v.ToString("0.0e0", CultureInfo.InvariantCulture)
        : v.ToString(Math.Abs(v) >= 10 ? "0" : "0.00", CultureInfo.InvariantCulture);

    private sealed class Canvas(int w, int h)
    {
        public byte[] Pixels { get; } = new byte[w * h * 3];

        public void Fill(byte r, byte g, byte b)
        {
            for (int i = 0; i < Pixels.Length; i += 3) { Pixels[i] = r; Pixels[i + 1] = g; Pixels[i + 2] = b; }
        }

        public void Set(int x, int y, byte r, byte g, byte b)
        {
            if ((uint)x >= (uint)w || (uint)y >= (uint)h) return;
            int o = (y * w + x) * 3;
            Pixels[o] = r; Pixels[o + 1] = g; Pixels[o + 2] = b;
        }

        public void Rect(int x, int y, int rw, int rh, byte r, byte g, byte b)
        {
            for (int j = 0; j < rh; j++) for (int i = 0; i < rw; i++) Set(x + i, y + j, r, g, b);
        }

        /// <summary>Bresenham line.</summary>
        public void Line(int xa, int ya, int xb, int yb, byte r, byte g, byte b)
        {
            int dx = Math.Abs(xb - xa), dy = -Math.Abs(yb - ya), sx = xa < xb ? 1 : -1, sy = ya < yb ? 1 : -1, err = dx + dy;
            for (int guard = 0; guard < 100000; guard++)
            {
                Set(xa, ya, r, g, b);
                if (xa == xb && ya == yb) break;
                int e2 = 2 * err;
                if (e2 >= dy) { err += dy; xa += sx; }
                if (e2 <= dx) { err += dx; ya += sy; }
            }
        }

        public void Text(int x, int y, string s, byte r, byte g, byte b, int scale)
        {
            foreach (char c in s)
            {
                var glyph = Font.Glyph(c);
                for (int row = 0; row < 7; row++)
                    for (int col = 0; col < 5; col++)
                        if ((glyph[row] >> (4 - col) & 1) != 0)
                            Rect(x + col * scale, y + row * scale, scale, scale, r, g, b);
                x += 6 * scale;
            }
        }
    }
}

/// <summary>A 5×7 bitmap font (each row a 5-bit mask, MSB left) for digits, letters and a few symbols.</summary>
internal static class Font
{
    private static readonly Dictionary<char, byte[]> Glyphs = new()
    {
        ['0'] = [14, 17, 19, 21, 25, 17, 14], ['1'] = [4, 12, 4, 4, 4, 4, 14], ['2'] = [14, 17, 1, 2, 4, 8, 31],
        ['3'] = [31, 2, 4, 2, 1, 17, 14], ['4'] = [2, 6, 10, 18, 31, 2, 2], ['5'] = [31, 16, 30, 1, 1, 17, 14],
        ['6'] = [6, 8, 16, 30, 17, 17, 14], ['7'] = [31, 1, 2, 4, 8, 8, 8], ['8'] = [14, 17, 17, 14, 17, 17, 14],
        ['9'] = [14, 17, 17, 15, 1, 2, 12], ['.'] = [0, 0, 0, 0, 0, 12, 12], ['-'] = [0, 0, 0, 31, 0, 0, 0],
        ['+'] = [0, 4, 4, 31, 4, 4, 0], ['_'] = [0, 0, 0, 0, 0, 0, 31], ['/'] = [1, 1, 2, 4, 8, 16, 16],
        [':'] = [0, 12, 12, 0, 12, 12, 0], ['@'] = [14, 17, 1, 13, 21, 21, 14], ['%'] = [24, 25, 2, 4, 8, 19, 3],
        ['('] = [2, 4, 8, 8, 8, 4, 2], [')'] = [8, 4, 2, 2, 2, 4, 8], [' '] = [0, 0, 0, 0, 0, 0, 0],
        ['a'] = [14, 17, 17, 31, 17, 17, 17], ['b'] = [30, 17, 17, 30, 17, 17, 30], ['c'] = [14, 17, 16, 16, 16, 17, 14],
        ['d'] = [28, 18, 17, 17, 17, 18, 28], ['e'] = [31, 16, 16, 30, 16, 16, 31], ['f'] = [31, 16, 16, 30, 16, 16, 16],
        ['g'] = [14, 17, 16, 23, 17, 17, 15], ['h'] = [17, 17, 17, 31, 17, 17, 17], ['i'] = [14, 4, 4, 4, 4, 4, 14],
        ['j'] = [7, 2, 2, 2, 2, 18, 12], ['k'] = [17, 18, 20, 24, 20, 18, 17], ['l'] = [16, 16, 16, 16, 16, 16, 31],
        ['m'] = [17, 27, 21, 21, 17, 17, 17], ['n'] = [17, 17, 25, 21, 19, 17, 17], ['o'] = [14, 17, 17, 17, 17, 17, 14],
        ['p'] = [30, 17, 17, 30, 16, 16, 16], ['q'] = [14, 17, 17, 17, 21, 18, 13], ['r'] = [30, 17, 17, 30, 20, 18, 17],
        ['s'] = [15, 16, 16, 14, 1, 1, 30], ['t'] = [31, 4, 4, 4, 4, 4, 4], ['u'] = [17, 17, 17, 17, 17, 17, 14],
        ['v'] = [17, 17, 17, 17, 17, 10, 4], ['w'] = [17, 17, 17, 21, 21, 21, 10], ['x'] = [17, 17, 10, 4, 10, 17, 17],
        ['y'] = [17, 17, 17, 10, 4, 4, 4], ['z'] = [31, 1, 2, 4, 8, 16, 31],
    };

    private static readonly byte[] Unknown = [31, 17, 17, 17, 17, 17, 31];

    /// <summary>Upper and lower case share the capital-letter shapes.</summary>
    public static byte[] Glyph(char c) => Glyphs.TryGetValue(char.ToLowerInvariant(c), out var g) ? g : Unknown;
}
