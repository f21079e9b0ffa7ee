using Vlm.Training.World;

namespace Vlm.Training.Tests.World;

public class WorldGeneratorTests
{
    private static readonly WorldGenerator Gen = new(42);

    [Fact]
    public void SameSeedSameWorld()
    {
        var other = new WorldGenerator(42);
        for (int i = 0; i < 20; i++)
        {
            var a = Gen.Describe(Gen.SampleScene(i));
            var b = other.Describe(other.SampleScene(i));
            Assert.Equal(a.Scene.Objects, b.Scene.Objects);
            Assert.Equal(a.Captions, b.Captions);
            Assert.Equal(a.Questions, b.Questions);
            Assert.Equal(Renderer.Render(a.Scene), Renderer.Render(b.Scene));
        }
        Assert.NotEqual(Gen.SampleScene(3).Objects, new WorldGenerator(43).SampleScene(3).Objects);
    }

    [Fact]
    public void ScenesRespectOptionsAndObjectsDoNotOverlap()
    {
        for (int i = 0; i < 200; i++)
        {
            var s = Gen.SampleScene(i);
            Assert.InRange(s.Width, 64, 96);
            Assert.InRange(s.Height, 64, 96);
            Assert.InRange(s.Objects.Count, 1, 4);
            foreach (var a in s.Objects)
            {
                Assert.InRange(a.X - a.Extent, 0, s.Width);
                Assert.InRange(a.Y + a.Extent, 0, s.Height);
                foreach (var b in s.Objects)
                    if (!ReferenceEquals(a, b))
                        Assert.True(MathF.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y)) >= a.Extent + b.Extent);
            }
        }
    }

    [Fact]
    public void EveryNegativeKindAppearsAndNoNegativeEqualsATrueCaption()
    {
        var kinds = new HashSet<NegativeKind>();
        for (int i = 0; i < 300; i++)
        {
            var t = Gen.Describe(Gen.SampleScene(i));
            Assert.NotEmpty(t.Captions);
            foreach (var n in t.Negatives)
            {
                kinds.Add(n.Kind);
                Assert.DoesNotContain(n.Caption, t.Captions);
            }
        }
        Assert.Equal(Enum.GetValues<NegativeKind>().Length, kinds.Count);
    }

    [Fact]
    public void ClaimsAreCheckedAgainstTheScene()
    {
        var red = new SceneObject(Shape.Circle, Colour.Red, Size.Small, 10, 30, 5);
        var blue = new SceneObject(Shape.Square, Colour.Blue, Size.Large, 50, 30, 8);
        var s = new Scene(0, 64, 64, new Background(0, 0, 0, 0, 1, 0), [red, blue]);
        Assert.Equal(Relation.LeftOf, Scene.RelationOf(red, blue));
        Assert.True(new RelationClaim(new Spec(Shape.Circle, Colour.Red, null), Relation.LeftOf, new Spec(Shape.Square, null, null)).Holds(s));
        Assert.False(new RelationClaim(new Spec(Shape.Circle, Colour.Blue, null), Relation.LeftOf, new Spec(Shape.Square, Colour.Red, null)).Holds(s));
        Assert.False(new RelationClaim(new Spec(Shape.Circle, null, null), Relation.RightOf, new Spec(Shape.Square, null, null)).Holds(s));
        Assert.True(new CountClaim(Shape.Circle, null, 1).Holds(s));
        Assert.False(new CountClaim(Shape.Circle, null, 2).Holds(s));
        Assert.Equal("a small red circle left of a blue square",
            new RelationClaim(Spec.Of(red, true), Relation.LeftOf, new Spec(Shape.Square, Colour.Blue, null)).Text());
    }

    [Fact]
    public void AnswersAreTrueOfTheScene()
    {
        var cats = new Dictionary<QuestionCategory, int>();
        int yes = 0, no = 0;
        for (int i = 0; i < 300; i++)
        {
            var t = Gen.Describe(Gen.SampleScene(i));
            foreach (var q in t.Questions)
            {
                cats[q.Category] = cats.GetValueOrDefault(q.Category) + 1;
                if (q.Answer == "yes") yes++;
                if (q.Answer == "no") no++;
                if (q.Category == QuestionCategory.Count)
                {
                    var shape = Enum.GetValues<Shape>().Single(sh => q.Text.Contains(Words.Plural(sh)));
                    Assert.Equal(t.Scene.Count(shape).ToString(), q.Answer);
                }
                if (q.Category == QuestionCategory.Colour)
                {
                    var o = t.Scene.Objects.Single(o => q.Text.Contains(" " + Words.Of(o.Shape) + "?"));
                    Assert.Equal(Words.Of(o.Colour), q.Answer);
                }
            }
        }
        Assert.Equal(Enum.GetValues<QuestionCategory>().Length, cats.Count);
        Assert.InRange(yes / (double)(yes + no), 0.35, 0.65);
    }

    [Fact]
    public void PairStatementsAreBalancedAndCorrect()
    {
        int trues = 0;
        for (int i = 0; i < 200; i++)
        {
            var p = Gen.Compare(Gen.SampleScene(2 * i), Gen.SampleScene(2 * i + 1), i);
            if (p.Label) trues++;
            if (p.Sentence.StartsWith("the left image has more "))
            {
                var shape = Enum.GetValues<Shape>().Single(sh => p.Sentence.Contains(Words.Plural(sh)));
                Assert.Equal(p.Left.Count(shape) > p.Right.Count(shape), p.Label);
            }
        }
        Assert.InRange(trues, 70, 130);
    }

    [Fact]
    public void RendererPaintsEachObjectInItsColourAtItsCentre()
    {
        var s = new WorldGenerator(7, new WorldOptions { NoiseProbability = 0, TextureProbability = 0 }).SampleScene(5);
        var px = Renderer.Render(s);
        foreach (var o in s.Objects)
        {
            int x = (int)o.X, y = (int)o.Y, i = (y * s.Width + x) * 3;
            var (r, g, b) = Words.Rgb(o.Colour);
            Assert.InRange(px[i], r - 2, r + 2);
            Assert.InRange(px[i + 1], g - 2, g + 2);
            Assert.InRange(px[i + 2], b - 2, b + 2);
        }
    }
}
