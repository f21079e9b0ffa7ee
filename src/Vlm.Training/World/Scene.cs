namespace Vlm.Training.World;

/// <summary>The world's vocabulary of things. Kept small and closed so every caption, question and answer
/// is checkable against the scene that produced it.</summary>
public enum Shape { Circle, Square, Triangle, Diamond, Cross }

public enum Colour { Red, Green, Blue, Yellow, Purple, Orange, Cyan, White }

public enum Size { Small, Large }

public enum Relation { LeftOf, RightOf, Above, Below }

/// <summary>One object: centre in pixels, radius-like extent in pixels.</summary>
public sealed record SceneObject(Shape Shape, Colour Colour, Size Size, float X, float Y, float Extent);

/// <summary>Background style: flat colour, stripes or checks, plus optional pixel noise.</summary>
public sealed record Background(byte R, byte G, byte B, int Pattern, int Period, float Noise);

public sealed record Scene(int Id, int Width, int Height, Background Background, IReadOnlyList<SceneObject> Objects)
{
    public int Count(Shape s) => Objects.Count(o => o.Shape == s);

    public int Count(Shape s, Colour c) => Objects.Count(o => o.Shape == s && o.Colour == c);

    /// <summary>The spatial relation of a to b when it is unambiguous (centres apart by more than a margin
    /// on that axis and the other axis offset is smaller), else null.</summary>
    public static Relation? RelationOf(SceneObject a, SceneObject b)
    {
        float dx = a.X - b.X, dy = a.Y - b.Y;
        float margin = (a.Extent + b.Extent) * 0.5f;
        if (Math.Abs(dx) >= Math.Abs(dy) && Math.Abs(dx) > margin) return dx < 0 ? Relation.LeftOf : Relation.RightOf;
        if (Math.Abs(dy) > Math.Abs(dx) && Math.Abs(dy) > margin) return dy < 0 ? Relation.Above : Relation.Below;
        return null;
    }
}

public static class Words
{
    public static string Of(Shape s) => s.ToString().ToLowerInvariant();

    public static string Plural(Shape s) => s switch
    {
        Shape.Cross => "crosses",
        _ => Of(s) + "s",
    };

    public static string Of(Colour c) => c.ToString().ToLowerInvariant();

    public static string Of(Size s) => s.ToString().ToLowerInvariant();

    public static string Of(Relation r) => r switch
    {
        Relation.LeftOf => "left of",
        Relation.RightOf => "right of",
        Relation.Above => "above",
        _ => "below",
    };

    public static Relation Reverse(Relation r) => r switch
    {
        Relation.LeftOf => Relation.RightOf,
        Relation.RightOf => Relation.LeftOf,
        Relation.Above => Relation.Below,
        _ => Relation.Above,
    };

    private static readonly string[] Numbers = ["zero", "one", "two", "three", "four", "five", "six"];

    public static string Number(int n) => n >= 0 && n < Numbers.Length ? Numbers[n] : n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>"a small red circle".</summary>
    public static string Describe(SceneObject o, bool withSize = true) =>
        withSize ? $"a {Of(o.Size)} {Of(o.Colour)} {Of(o.Shape)}" : $"a {Of(o.Colour)} {Of(o.Shape)}";

    public static (byte r, byte g, byte b) Rgb(Colour c) => c switch
    {
        Colour.Red => (220, 40, 40),
        Colour.Green => (40, 180, 60),
        Colour.Blue => (50, 80, 230),
        Colour.Yellow => (235, 220, 50),
        Colour.Purple => (150, 60, 190),
        Colour.Orange => (245, 140, 30),
        Colour.Cyan => (60, 210, 220),
        _ => (245, 245, 245),
    };
}
