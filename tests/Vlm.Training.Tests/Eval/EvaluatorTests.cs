using Vlm.Training.Data;
using Vlm.Training.Eval;
using Vlm.Training.Training;

namespace Vlm.Training.Tests.Eval;

/// <summary>The scoring parts of the shared evaluator on hand-made model outputs.</summary>
public class EvaluatorTests
{
    [Fact]
    public void ItmReRankingScoresTheUnionOfCandidatesOnceAndFixesTheRanking()
    {
        // (texts × images); gold: text t describes image t.
        float[] sim =
        [
            0.9f, 0.5f, 0.1f,   // t0: top-2 {0, 1}, own image first
            0.8f, 0.7f, 0.2f,   // t1: top-2 {0, 1}, own image second
            0.1f, 0.6f, 0.3f,   // t2: top-2 {1, 2}, own image second
        ];
        var asked = new List<(int, int)>();
        var (t2i, i2t, r) = Evaluator.RerankedScores(sim, 3, 3, [0, 1, 2], 2, cand =>
        {
            asked.AddRange(cand);
            return cand.Select(c => c.Text == c.Image ? 0.9f : 0.2f).ToArray();
        });
        // t→i candidates {00, 01, 10, 11, 21, 22} ∪ i→t candidates {00, 10, 11, 21, 12, 22}, in (text, image) order.
        Assert.Equal(new[] { (0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2) }, asked);
        Assert.Equal(1 / 3.0, r["itc_t2i_r1"], 10);
        Assert.Equal(1.0, r["itc_t2i_r5"], 10);
        Assert.Equal(1.0, r["itc_i2t_r1"], 10);
        Assert.Equal(1.0, r["t2i_r1"], 10);
        Assert.Equal(1.0, r["i2t_r1"], 10);
        Assert.Equal(1 / 3.0, r["chance_r1"], 10);
        Assert.Equal(1.0, r["chance_r5"], 10);
        Assert.Equal(10.9f, t2i[1 * 3 + 1]);
        Assert.Equal(10.2f, t2i[1 * 3 + 0]);
        Assert.Equal(0.1f, t2i[0 * 3 + 2]);     // not a candidate of t0: keeps its similarity
        Assert.Equal(10.2f, i2t[1 * 3 + 2]);    // t1 is among image 2's top-2 texts
        Assert.Equal(0.2f, t2i[1 * 3 + 2]);     // …but image 2 is not among t1's top-2 images
        var ev = new RetrievalEvaluation(r, 3, 3, i2t);
        Assert.Equal(new[] { 1, 2 }, ev.TopTexts(1, 2));
    }

    [Fact]
    public void ItmAccuracyCountsRejectedNegativesAndAcceptedPositivesPerKind()
    {
        var r = Evaluator.ItmAccuracy(["a", "b", "a"], [0.2f, 0.7f, 0.5f], [0.9f, 0.6f, 0.4f]);
        Assert.Equal(3 / 4.0, r.ByKind["a"], 10);   // 0.5 counts as "no match"; 0.4 is a rejected positive
        Assert.Equal(1 / 2.0, r.ByKind["b"], 10);
        Assert.Equal(4 / 6.0, r.Overall, 10);
        Assert.Equal(2, r.CountByKind["a"]);
        Assert.Equal(["a", "b"], r.ByKind.Keys);
    }

    [Fact]
    public void Nlvr2AccuracyAndMajorityBaseline()
    {
        var (acc, maj) = Evaluator.Nlvr2Accuracy([true, false, false, true], [true, false, true, true], majorityLabel: false);
        Assert.Equal(0.75, acc, 10);
        Assert.Equal(0.25, maj, 10);
        static Nlvr2Item It(bool l) => new("x", "l.png", "r.png", "s", l);
        Assert.True(Evaluator.MajorityLabel([It(true), It(false)]));
        Assert.False(Evaluator.MajorityLabel([It(true), It(false), It(false)]));
        Assert.Throws<ArgumentException>(() => Evaluator.Nlvr2Accuracy([true], [true, false], true));
    }

    [Fact]
    public void AnswerVocabularyIsTheMostFrequentNormalisedAnswers()
    {
        static VqaItem Q(params string[] a) => new(0, 0, "x.png", "q", "t", "", a);
        var v = TrainJobs.AnswerVocabulary([Q("Two", "2", "red"), Q("blue", "red"), Q("a cat", "cat")], 3);
        Assert.Equal(["2", "cat", "red"], v);   // "two" → "2", articles dropped; ties in ordinal order
        Assert.Throws<InvalidDataException>(() => TrainJobs.AnswerVocabulary([Q()], 3));
    }

    [Fact]
    public void ImagePatternsExpandIdsWithOptionalZeroPadding()
    {
        Assert.Equal("val2014/COCO_val2014_000000000042.jpg", DatasetFolder.ExpandPattern("val2014/COCO_val2014_{id:12}.jpg", 42));
        Assert.Equal("img/42.png", DatasetFolder.ExpandPattern("img/{id}.png", 42));
        Assert.Throws<ArgumentException>(() => DatasetFolder.ExpandPattern("img/x.png", 1));
        Assert.Throws<ArgumentException>(() => DatasetFolder.ExpandPattern("img/{id:x}.png", 1));
    }
}
