using Vlm.Core;

namespace Vlm.Training.World;

public sealed record WorldOptions
{
    public int MinImageSize { get; init; } = 64;
    public int MaxImageSize { get; init; } = 96;
    public int MinObjects { get; init; } = 1;
    public int MaxObjects { get; init; } = 4;
    /// <summary>Probability of a striped or checked background instead of a flat one.</summary>
    public double TextureProbability { get; init; } = 0.3;
    /// <summary>Probability of Gaussian pixel noise (σ up to 12 levels).</summary>
    public double NoiseProbability { get; init; } = 0.5;
}

public sealed record HardNegative(NegativeKind Kind, string Caption);

public enum QuestionCategory { Colour, Shape, Count, Existence, Relation }

public sealed record Question(QuestionCategory Category, string Text, string Answer);

/// <summary>Everything the world says about one image.</summary>
public sealed record SceneText(Scene Scene, IReadOnlyList<string> Captions, IReadOnlyList<HardNegative> Negatives, IReadOnlyList<Question> Questions);

/// <summary>An NLVR2-style statement about a pair of scenes.</summary>
public sealed record PairStatement(Scene Left, Scene Right, string Sentence, bool Label);

/// <summary>
/// Deterministic generator of the synthetic vision-language world: scenes of 1–4 shapes (5 shapes × 8 colours
/// × 2 sizes) on plain or textured backgrounds, true captions, provably false hard negatives of four kinds,
/// questions in five categories with balanced yes/no answers, and two-image statements. Scene i depends only on
/// (seed, i), so any subset can be regenerated.
/// </summary>
public sealed class WorldGenerator(ulong seed, WorldOptions? options = null)
{
    private readonly WorldOptions _o = options ?? new WorldOptions();

    private Rng RngFor(int id, ulong stream) => new(seed * 0x9E3779B97F4A7C15UL ^ ((ulong)id << 8) ^ stream);

    public Scene SampleScene(int id)
    {
        var rng = RngFor(id, 1);
        int w = _o.MinImageSize + rng.NextInt(_o.MaxImageSize - _o.MinImageSize + 1);
        int h = _o.MinImageSize + rng.NextInt(_o.MaxImageSize - _o.MinImageSize + 1);
        // Dark, desaturated backgrounds keep every object colour (white included) visible.
        var bg = new Background((byte)(20 + rng.NextInt(60)), (byte)(20 + rng.NextInt(60)), (byte)(20 + rng.NextInt(60)),
            rng.NextDouble() < _o.TextureProbability ? 1 + rng.NextInt(2) : 0, 4 + rng.NextInt(8),
            rng.NextDouble() < _o.NoiseProbability ? (float)(rng.NextDouble() * 12) : 0f);
        int n = _o.MinObjects + rng.NextInt(_o.MaxObjects - _o.MinObjects + 1);
        var objs = new List<SceneObject>();
        float unit = Math.Min(w, h);
        for (int tries = 0; objs.Count < n && tries < 200; tries++)
        {
            var size = rng.NextInt(2) == 0 ? Size.Small : Size.Large;
            float ext = unit * (size == Size.Small ? 0.09f : 0.16f);
            float x = ext + 1 + (float)rng.NextDouble() * (w - 2 * ext - 2);
            float y = ext + 1 + (float)rng.NextDouble() * (h - 2 * ext - 2);
            var o = new SceneObject((Shape)rng.NextInt(5), (Colour)rng.NextInt(8), size, x, y, ext);
            if (objs.Any(p => Dist(p, o) < p.Extent + o.Extent + 2)) continue;
            objs.Add(o);
        }
        return new Scene(id, w, h, bg, objs);
    }

    private static float Dist(SceneObject a, SceneObject b) => MathF.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y));

    public SceneText Describe(Scene s)
    {
        var rng = RngFor(s.Id, 2);
        var captions = TrueClaims(s, rng).Select(c => Sentence(c.Text())).Distinct().ToList();
        var negatives = new List<HardNegative>();
        foreach (NegativeKind kind in Enum.GetValues<NegativeKind>())
            if (MakeNegative(s, kind, rng) is Claim neg)
                negatives.Add(new HardNegative(kind, Sentence(neg.Text())));
        return new SceneText(s, captions, negatives, Questions(s, rng));
    }

    private static string Sentence(string text) => text;

    /// <summary>True captions: the whole scene listed, each relation between uniquely described objects,
    /// counts of repeated shapes.</summary>
    private static List<Claim> TrueClaims(Scene s, Rng rng)
    {
        var claims = new List<Claim>();
        var objs = s.Objects;
        claims.Add(new ListClaim(objs.Select(o => (Claim)new ExistsClaim(Spec.Of(o, withSize: true))).ToList()));
        for (int i = 0; i < objs.Count; i++)
            for (int j = 0; j < objs.Count; j++)
            {
                if (i == j || Scene.RelationOf(objs[i], objs[j]) is not Relation rel) continue;
                claims.Add(new RelationClaim(Spec.Of(objs[i], rng.NextInt(2) == 0), rel, Spec.Of(objs[j], rng.NextInt(2) == 0)));
            }
        foreach (var g in objs.GroupBy(o => o.Shape).Where(g => g.Count() > 1))
            claims.Add(new CountClaim(g.Key, null, g.Count()));
        return claims.Where(c => c.Holds(s)).ToList();
    }

    private static Claim? MakeNegative(Scene s, NegativeKind kind, Rng rng)
    {
        var objs = s.Objects;
        var candidates = new List<Claim>();
        switch (kind)
        {
            case NegativeKind.ColourSwap:
                // Attribute binding: the same two objects with their colours exchanged.
                for (int i = 0; i < objs.Count; i++)
                    for (int j = 0; j < objs.Count; j++)
                    {
                        if (i == j || objs[i].Colour == objs[j].Colour || Scene.RelationOf(objs[i], objs[j]) is not Relation rel) continue;
                        candidates.Add(new RelationClaim(new Spec(objs[i].Shape, objs[j].Colour, null), rel, new Spec(objs[j].Shape, objs[i].Colour, null)));
                    }
                if (candidates.Count == 0 && objs.Count >= 2 && objs[0].Colour != objs[1].Colour)
                    candidates.Add(new ListClaim([new ExistsClaim(new Spec(objs[0].Shape, objs[1].Colour, null)), new ExistsClaim(new Spec(objs[1].Shape, objs[0].Colour, null))]));
                break;
            case NegativeKind.RelationReversed:
                for (int i = 0; i < objs.Count; i++)
                    for (int j = 0; j < objs.Count; j++)
                        if (i != j && Scene.RelationOf(objs[i], objs[j]) is Relation rel)
                            candidates.Add(new RelationClaim(Spec.Of(objs[i], false), Words.Reverse(rel), Spec.Of(objs[j], false)));
                break;
            case NegativeKind.CountChanged:
                foreach (var g in objs.GroupBy(o => o.Shape))
                {
                    int n = g.Count();
                    candidates.Add(new CountClaim(g.Key, null, n + 1));
                    if (n > 1) candidates.Add(new CountClaim(g.Key, null, n - 1));
                }
                break;
            case NegativeKind.AbsentObject:
                for (int k = 0; k < 20; k++)
                {
                    var spec = new Spec((Shape)rng.NextInt(5), (Colour)rng.NextInt(8), null);
                    candidates.Add(new ExistsClaim(spec));
                }
                break;
        }
        var valid = candidates.Where(c => !c.Holds(s)).ToList();
        return valid.Count == 0 ? null : valid[rng.NextInt(valid.Count)];
    }

    private static List<Question> Questions(Scene s, Rng rng)
    {
        var qs = new List<Question>();
        var objs = s.Objects;
        // Colour: ask about a shape that occurs once.
        foreach (var o in objs.Where(o => s.Count(o.Shape) == 1))
            qs.Add(new Question(QuestionCategory.Colour, $"what color is the {Words.Of(o.Shape)}?", Words.Of(o.Colour)));
        // Shape: ask about a colour that occurs once.
        foreach (var o in objs.Where(o => objs.Count(p => p.Colour == o.Colour) == 1))
            qs.Add(new Question(QuestionCategory.Shape, $"what shape is the {Words.Of(o.Colour)} object?", Words.Of(o.Shape)));
        // Count: a present shape, and sometimes an absent one (answer 0).
        var shape = rng.NextInt(3) == 0 ? (Shape)rng.NextInt(5) : objs[rng.NextInt(objs.Count)].Shape;
        qs.Add(new Question(QuestionCategory.Count, $"how many {Words.Plural(shape)} are there?", s.Count(shape).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        // Existence, balanced: a present object, or an absent colour/shape combination.
        if (rng.NextInt(2) == 0)
        {
            var o = objs[rng.NextInt(objs.Count)];
            qs.Add(new Question(QuestionCategory.Existence, $"is there a {Words.Of(o.Colour)} {Words.Of(o.Shape)}?", "yes"));
        }
        else
        {
            for (int k = 0; k < 20; k++)
            {
                var sh = (Shape)rng.NextInt(5); var c = (Colour)rng.NextInt(8);
                if (s.Count(sh, c) > 0) continue;
                qs.Add(new Question(QuestionCategory.Existence, $"is there a {Words.Of(c)} {Words.Of(sh)}?", "no"));
                break;
            }
        }
        // Relation, balanced yes/no, between objects described uniquely by colour and shape.
        var pairs = new List<(SceneObject a, SceneObject b, Relation r)>();
        foreach (var a in objs)
            foreach (var b in objs)
                if (!ReferenceEquals(a, b) && s.Count(a.Shape, a.Colour) == 1 && s.Count(b.Shape, b.Colour) == 1 && Scene.RelationOf(a, b) is Relation r)
                    pairs.Add((a, b, r));
        if (pairs.Count > 0)
        {
            var (a, b, r) = pairs[rng.NextInt(pairs.Count)];
            bool yes = rng.NextInt(2) == 0;
            var asked = yes ? r : Words.Reverse(r);
            qs.Add(new Question(QuestionCategory.Relation,
                $"is the {Words.Of(a.Colour)} {Words.Of(a.Shape)} {Words.Of(asked)} the {Words.Of(b.Colour)} {Words.Of(b.Shape)}?", yes ? "yes" : "no"));
        }
        return qs;
    }

    /// <summary>NLVR2-style statements comparing two scenes, balanced: a coin decides the label first and
    /// statements are drawn until one has it (a pair where none does gets the other label).</summary>
    public PairStatement Compare(Scene left, Scene right, int id)
    {
        var rng = RngFor(id, 3);
        bool want = rng.NextInt(2) == 0;
        PairStatement? other = null;
        for (int k = 0; k < 40; k++)
        {
            var st = Statement(left, right, rng);
            if (st.Label == want) return st;
            other ??= st;
        }
        return other!;
    }

    private static PairStatement Statement(Scene left, Scene right, Rng rng)
    {
        var shape = (Shape)rng.NextInt(5);
        var colour = (Colour)rng.NextInt(8);
        switch (rng.NextInt(3))
        {
            case 0:
                return new PairStatement(left, right, $"the left image has more {Words.Plural(shape)} than the right image",
                    left.Count(shape) > right.Count(shape));
            case 1:
                return new PairStatement(left, right, $"there is a {Words.Of(colour)} object in both images",
                    left.Objects.Any(o => o.Colour == colour) && right.Objects.Any(o => o.Colour == colour));
            default:
                int n = 1 + rng.NextInt(3);
                return new PairStatement(left, right, $"there are exactly {Words.Number(n)} {Words.Plural(shape)} in total",
                    left.Count(shape) + right.Count(shape) == n);
        }
    }
}
