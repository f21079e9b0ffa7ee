using Vlm.Training.Eval;

namespace Vlm.Training.Tests.Eval;

public class MetricsTests
{
    [Fact]
    public void VqaAccuracyFollowsTheOfficialLeaveOneOutRule()
    {
        var ten = Enumerable.Repeat("2", 10).ToList();
        Assert.Equal(1.0, VqaScore.Accuracy("2", ten), 10);
        Assert.Equal(0.0, VqaScore.Accuracy("3", ten), 10);
        // 2 of 10 humans said "red": 8 subsets contain both (2/3), 2 subsets contain one (1/3).
        var mixed = new List<string> { "red", "red", "blue", "blue", "blue", "blue", "blue", "blue", "blue", "blue" };
        Assert.Equal((8 * (2.0 / 3) + 2 * (1.0 / 3)) / 10, VqaScore.Accuracy("red", mixed), 10);
        // Normalisation applies because annotators disagree: number words, articles, punctuation.
        var words = new List<string> { "two", "2", "Two.", "2", "2", "three", "2", "2", "2", "2" };
        Assert.Equal(1.0, VqaScore.Accuracy("2", words), 10);
        Assert.Equal(1.0, VqaScore.Accuracy("the two", words), 10);
    }

    [Fact]
    public void NormalizeMatchesOfficialExamples()
    {
        Assert.Equal("2", VqaScore.Normalize("two"));
        Assert.Equal("red", VqaScore.Normalize("the red"));
        Assert.Equal("yes", VqaScore.Normalize("yes!"));
        Assert.Equal("don't know", VqaScore.Normalize("dont know"));
        Assert.Equal("1000", VqaScore.Normalize("1,000"));
        Assert.Equal("2.5", VqaScore.Normalize("2.5"));
    }

    [Fact]
    public void SoftScoresAreViltStyle()
    {
        var s = VqaScore.SoftScores(["red", "red", "blue", "red", "red", "red", "green", "blue", "blue", "red"]);
        Assert.Equal(1f, s["red"]);
        Assert.Equal(0.9f, s["blue"], 6);
        Assert.Equal(0.3f, s["green"], 6);
    }

    [Fact]
    public void RecallBothDirections()
    {
        // 3 texts, 2 images; texts 0,1 → image 0, text 2 → image 1.
        float[] sim =
        [
            0.9f, 0.1f,
            0.2f, 0.8f,   // text 1 prefers the wrong image
            0.3f, 0.7f,
        ];
        int[] gt = [0, 0, 1];
        Assert.Equal(2.0 / 3, Recall.TextToImage(sim, 3, 2, gt, 1), 10);
        Assert.Equal(1.0, Recall.TextToImage(sim, 3, 2, gt, 2), 10);
        // image 0: best own caption text 0 (0.9) is top; image 1: text 2 (0.7) beaten by text 1 (0.8).
        Assert.Equal(0.5, Recall.ImageToText(sim, 3, 2, gt, 1), 10);
        Assert.Equal(1.0, Recall.ImageToText(sim, 3, 2, gt, 2), 10);
    }
}
