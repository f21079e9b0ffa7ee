namespace Vlm.Training.World;

/// <summary>
/// Rasterises a scene into 8-bit RGB (row-major, 3 bytes a pixel). Edges are anti-aliased by 4×4
/// supersampling so shapes look like shapes at 64 px; background patterns and noise are seeded by the scene.
/// </summary>
public static class Renderer
{
    public static byte[] Render(Scene scene)
    {
        int w = scene.Width, h = scene.Height;
        var px = new byte[w * h * 3];
        var bg = scene.Background;
        var rng = new Vlm.Core.Rng(0x5EED_0000UL + (ulong)scene.Id);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float shade = bg.Pattern switch
                {
                    1 => ((x / Math.Max(bg.Period, 1)) & 1) == 0 ? 1f : 0.8f,              // vertical stripes
                    2 => (((x / Math.Max(bg.Period, 1)) + (y / Math.Max(bg.Period, 1))) & 1) == 0 ? 1f : 0.82f, // checks
                    _ => 1f,
                };
                float n = bg.Noise > 0 ? (float)(rng.NextNormal() * bg.Noise) : 0f;
                int o = (y * w + x) * 3;
                px[o] = Clamp(bg.R * shade + n);
                px[o + 1] = Clamp(bg.G * shade + n);
                px[o + 2] = Clamp(bg.B * shade + n);
            }
        foreach (var obj in scene.Objects) Draw(px, w, h, obj);
        return px;
    }

    private static byte Clamp(float v) => (byte)Math.Clamp((int)MathF.Round(v), 0, 255);

    private static void Draw(byte[] px, int w, int h, SceneObject o)
    {
        var (r, g, b) = Words.Rgb(o.Colour);
        int x0 = Math.Max(0, (int)(o.X - o.Extent - 1)), x1 = Math.Min(w - 1, (int)(o.X + o.Extent + 1));
        int y0 = Math.Max(0, (int)(o.Y - o.Extent - 1)), y1 = Math.Min(h - 1, (int)(o.Y + o.Extent + 1));
        const int ss = 4;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++)
            {
                int hits = 0;
                for (int sy = 0; sy < ss; sy++)
                    for (int sx = 0; sx < ss; sx++)
                    {
                        float u = (x + (sx + 0.5f) / ss - o.X) / o.Extent;
                        float v = (y + (sy + 0.5f) / ss - o.Y) / o.Extent;
                        if (Inside(o.Shape, u, v)) hits++;
                    }
                if (hits == 0) continue;
                float a = hits / (float)(ss * ss);
                int i = (y * w + x) * 3;
                px[i] = (byte)MathF.Round(px[i] * (1 - a) + r * a);
                px[i + 1] = (byte)MathF.Round(px[i + 1] * (1 - a) + g * a);
                px[i + 2] = (byte)MathF.Round(px[i + 2] * (1 - a) + b * a);
            }
    }

    /// <summary>Membership in the unit shape centred at the origin (u right, v down, extent 1).</summary>
    public static bool Inside(Shape s, float u, float v) => s switch
    {
        Shape.Circle => u * u + v * v <= 1f,
        Shape.Square => MathF.Abs(u) <= 0.82f && MathF.Abs(v) <= 0.82f,
        Shape.Triangle => v <= 0.8f && v >= -0.95f && MathF.Abs(u) <= (v + 0.95f) / 1.75f * 0.95f,
        Shape.Diamond => MathF.Abs(u) + MathF.Abs(v) <= 1f,
        _ => (MathF.Abs(u) <= 0.3f && MathF.Abs(v) <= 0.95f) || (MathF.Abs(v) <= 0.3f && MathF.Abs(u) <= 0.95f),
    };
}
