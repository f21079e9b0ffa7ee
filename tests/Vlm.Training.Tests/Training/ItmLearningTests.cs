using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Nn.Optim;
using Vlm.Training.Model;
using Vlm.Training.Training;

namespace Vlm.Training.Tests.Training;

/// <summary>The ITM path (cross-modal layers → poolers → itm_score) must be able to learn which text goes with which
/// image. Every text and every image occurs once as a match and once as a mismatch, so nothing but the pairing
/// separates the labels: a head that sees only one modality, a detached pooler or swapped labels stay at 50 %.</summary>
public sealed class ItmLearningTests
{
    private static MultiTaskBridgeTower Model()
    {
        var cfg = new BridgeTowerConfig
        {
            HiddenSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 2, ContrastiveHiddenSize = 32, LogitScaleInitValue = 2.6592f,
            TextConfig = new BridgeTowerTextConfig { VocabSize = 40, HiddenSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 128, MaxPositionEmbeddings = 20, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0 },
            VisionConfig = new BridgeTowerVisionConfig { HiddenSize = 64, NumHiddenLayers = 1, PatchSize = 16, ImageSize = 32 },
        };
        return new MultiTaskBridgeTower(cfg, new Rng(5), 3);
    }

    [Fact]
    public void ItmHeadFitsAFixedBatchWhereOnlyThePairingDecidesTheLabel()
    {
        const int n = 6, len = 5;
        var rng = new Rng(17);
        var model = Model();
        // n distinct texts and n distinct images; pairs (i, i) match, (i, i+1 mod n) do not.
        var ids = new long[2 * n * len];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < len; j++) ids[i * len + j] = ids[(n + i) * len + j] = 5 + rng.NextInt(30);
        var imgs = Tensor.Randn([n, 3, 32, 32], rng);
        var rows = Enumerable.Range(0, n).Concat(Enumerable.Range(0, n).Select(i => (i + 1) % n)).ToArray();
        var pixels = Objectives.Rows(imgs, rows);
        var labels = Enumerable.Repeat(1L, n).Concat(Enumerable.Repeat(0L, n)).ToArray();
        var idT = Tensor.FromArray(ids, 2 * n, len);
        var mask = Tensor.Ones(2 * n, len);
        var opt = new AdamW(ParamGroups.ByName(model.Parameters, 0.01, lrScale: name => MultiTaskBridgeTower.IsCrossModalOrHead(name) ? 5.0 : 1.0), 3e-4);
        model.Train();
        double acc = 0; float loss = float.NaN;
        for (int step = 0; step < 80 && !(acc == 1 && loss < 0.1f); step++)
        {
            opt.ZeroGrad();
            var (l, a) = Objectives.Itm(model.ItmLogits(model.Forward(idT, mask, pixels)), labels);
            l.Backward();
            opt.Step();
            (acc, loss) = (a, l.Item());
        }
        Assert.True(acc == 1 && loss < 0.1f, $"ITM did not fit 12 pairs: accuracy {acc:F2}, loss {loss:F3}");
    }
}

/// <summary>The hard-negative ITM pairs carry no sentence-form shortcut: every form a negative takes is also taken by
/// a positive, which the world's own captions alone do not give (they never say "exactly one circle" or a lone
/// "a red circle", so a model trained on captions vs negatives could label by form without looking at the image).</summary>
public sealed class ItmPairTests
{
    private static readonly HashSet<string> Colours = Enum.GetValues<Vlm.Training.World.Colour>().Select(Vlm.Training.World.Words.Of).ToHashSet();
    private static readonly HashSet<string> Shapes = Enum.GetValues<Vlm.Training.World.Shape>().Select(Vlm.Training.World.Words.Of).ToHashSet();
    private static readonly HashSet<string> Plurals = Enum.GetValues<Vlm.Training.World.Shape>().Select(Vlm.Training.World.Words.Plural).ToHashSet();

    /// <summary>The caption with its content words abstracted: "a red circle left of a blue square" → "a C S R a C S".</summary>
    private static string Form(string caption)
    {
        var c = caption.Replace("left of", "R", StringComparison.Ordinal).Replace("right of", "R", StringComparison.Ordinal)
            .Replace("above", "R", StringComparison.Ordinal).Replace("below", "R", StringComparison.Ordinal);
        return string.Join(' ', c.Split(' ').Select(w =>
            Colours.Contains(w) ? "C" : Shapes.Contains(w) ? "S" : Plurals.Contains(w) ? "P" : w is "small" or "large" ? "Z"
            : w is "two" or "three" or "four" or "five" ? "N" : w));
    }

    [Fact]
    public void HardNegativesArePairedWithPositivesOfTheSameSentenceForms()
    {
        var gen = new Vlm.Training.World.WorldGenerator(5);
        var negs = new List<ItmNegative>();
        var captionForms = new HashSet<string>();
        for (int id = 0; id < 300; id++)
        {
            var text = gen.Describe(gen.SampleScene(id));
            negs.AddRange(text.Negatives.Select(n => new ItmNegative(id, "x.png", n.Caption, Vlm.Training.World.WorldDataset.KindName(n.Kind))));
            captionForms.UnionWith(text.Captions.Select(Form));
        }
        var pairs = WorldPipeline.PairWithMinimalPositives(negs, gen.SampleScene);
        var all = pairs.SelectMany(kv => kv.Value.Select(p => (kv.Key, p.Negative, p.Positive))).ToList();
        Assert.Equal(negs.Count, all.Count);
        Assert.All(all, x => Assert.Equal(x.Key, x.Negative.ImageId));
        Assert.All(all, x => Assert.NotEqual(x.Negative.Caption, x.Positive));
        // One form per pair except counts ("exactly one circle" beside "two circles").
        Assert.All(all.Where(x => x.Negative.Kind != "count_changed"), x => Assert.Equal(Form(x.Negative.Caption), Form(x.Positive)));
        var negForms = all.Select(x => Form(x.Negative.Caption)).ToHashSet();
        var posForms = all.Select(x => Form(x.Positive)).ToHashSet();
        Assert.Equal(negForms.OrderBy(f => f, StringComparer.Ordinal), posForms.OrderBy(f => f, StringComparer.Ordinal));
        // Why the pairing is needed: the captions alone leave negative-only forms.
        Assert.Contains(negForms, f => !captionForms.Contains(f));
    }
}
