namespace Vlm.Training.World;

/// <summary>An object description; null fields match anything ("a red object", "a circle").</summary>
public sealed record Spec(Shape? Shape, Colour? Colour, Size? Size)
{
    public bool Matches(SceneObject o) =>
        (Shape is null || o.Shape == Shape) && (Colour is null || o.Colour == Colour) && (Size is null || o.Size == Size);

    public static Spec Of(SceneObject o, bool withSize) => new(o.Shape, o.Colour, withSize ? o.Size : null);

    public string Phrase(bool article = true)
    {
        var words = new List<string>();
        if (Size is Size s) words.Add(Words.Of(s));
        if (Colour is Colour c) words.Add(Words.Of(c));
        words.Add(Shape is Shape sh ? Words.Of(sh) : "object");
        var p = string.Join(' ', words);
        return article ? "a " + p : p;
    }
}

/// <summary>
/// A checkable statement about a scene. Captions and hard negatives are rendered from claims, so a
/// negative is proven false on its own scene (not just "probably" false) before it is used.
/// </summary>
public abstract record Claim
{
    public abstract bool Holds(Scene s);
    public abstract string Text();
}

public sealed record ExistsClaim(Spec What) : Claim
{
    public override bool Holds(Scene s) => s.Objects.Any(What.Matches);
    public override string Text() => What.Phrase();
}

public sealed record RelationClaim(Spec A, Relation Rel, Spec B) : Claim
{
    public override bool Holds(Scene s) =>
        s.Objects.Any(a => A.Matches(a) && s.Objects.Any(b => !ReferenceEquals(a, b) && B.Matches(b) && Scene.RelationOf(a, b) == Rel));

    public override string Text() => $"{A.Phrase()} {Words.Of(Rel)} {B.Phrase()}";
}

public sealed record CountClaim(Shape Shape, Colour? Colour, int N) : Claim
{
    public override bool Holds(Scene s) => s.Objects.Count(o => o.Shape == Shape && (Colour is null || o.Colour == Colour)) == N;

    public override string Text()
    {
        string col = Colour is Colour c ? Words.Of(c) + " " : "";
        return N == 1 ? $"exactly one {col}{Words.Of(Shape)}" : $"{Words.Number(N)} {col}{Words.Plural(Shape)}";
    }
}

/// <summary>Several claims joined with commas and "and": "a red circle, a blue square and a green cross".</summary>
public sealed record ListClaim(IReadOnlyList<Claim> Parts) : Claim
{
    public override bool Holds(Scene s) => Parts.All(p => p.Holds(s));

    public override string Text() => Parts.Count switch
    {
        0 => "nothing",
        1 => Parts[0].Text(),
        _ => string.Join(", ", Parts.Take(Parts.Count - 1).Select(p => p.Text())) + " and " + Parts[^1].Text(),
    };
}

public enum NegativeKind { ColourSwap, RelationReversed, CountChanged, AbsentObject }
