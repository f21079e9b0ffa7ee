using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.BridgeTower;
using Vlm.Nn.Optim;
using Vlm.Training.Data;
using Vlm.Training.Model;
using Vlm.Training.Text;
using Vlm.Training.Training;

namespace Vlm.Training.Tests.Training;

/// <summary>The NLVR2 head of the training model, and building the training model from an HF folder.</summary>
public sealed class Nlvr2Tests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-nlvr2-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static BridgeTowerConfig Config(IReadOnlyList<string>? labels = null) => new()
    {
        HiddenSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 1, ContrastiveHiddenSize = 32, LogitScaleInitValue = 2.6592f,
        Id2Label = labels, NumLabels = labels?.Count,
        TextConfig = new BridgeTowerTextConfig { VocabSize = 300, HiddenSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 1, IntermediateSize = 128, MaxPositionEmbeddings = 20, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0 },
        VisionConfig = new BridgeTowerVisionConfig { HiddenSize = 64, NumHiddenLayers = 1, PatchSize = 16, ImageSize = 32 },
    };

    private static Nlvr2Batch FixedBatch()
    {
        var rng = new Rng(4);
        long[] ids = [0, 7, 9, 11, 2, 0, 5, 2, 1, 1, 0, 8, 8, 2, 1, 0, 12, 6, 9, 2];
        float[] mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1];
        var t = new TextBatch(Tensor.FromArray(ids, 4, 5), Tensor.FromArray(mask, 4, 5), ids, 4, 5);
        return new Nlvr2Batch(t, Tensor.Randn([4, 3, 32, 32], rng), Tensor.Randn([4, 3, 32, 32], rng), [1, 0, 1, 0]);
    }

    [Fact]
    public void Nlvr2LossDecreasesOnAFixedBatch()
    {
        var m = new MultiTaskBridgeTower(Config(), new Rng(1), 7, nlvr2: true);
        // The second image's token type starts as the first image's.
        Assert.Equal(m.Base.TokenTypeEmbeddings.Narrow(0, 1, 1).ToArray(), m.Base.TokenTypeEmbeddings.Narrow(0, 2, 1).ToArray());
        var b = FixedBatch();
        var opt = new AdamW(ParamGroups.ByName(m.Parameters, 0.01), 1e-3);
        var losses = new List<double>();
        for (int i = 0; i < 8; i++)
        {
            opt.ZeroGrad();
            var r = TaskBatches.Nlvr2Step(m, b);
            losses.Add(r.Metrics["nlvr2_loss"]);
            r.Loss.Backward();
            opt.Step();
        }
        Assert.InRange(losses[0], 0.4, 1.2);   // ≈ ln 2 for a fresh 2-way head
        Assert.True(losses[^1] < 0.5 * losses[0], string.Join(", ", losses));
        // Both images matter: the token type rows have moved apart.
        Assert.NotEqual(m.Base.TokenTypeEmbeddings.Narrow(0, 1, 1).ToArray(), m.Base.TokenTypeEmbeddings.Narrow(0, 2, 1).ToArray());
    }

    /// <summary>An NLVR2 model folder loads into the model library's BridgeTowerForNlvr2 and gives the same logits;
    /// the training model rebuilt from the folder is the same model.</summary>
    [Fact]
    public void Nlvr2FolderLoadsIntoTheHeadClassWithIdenticalLogits()
    {
        var m = new MultiTaskBridgeTower(Config(), new Rng(2), 7, nlvr2: true);
        WorldBpe.TrainAndSave(["a red circle", "two blue squares", "a red circle left of a blue square"], Path.Combine(_dir, "tok"), 300);
        var dir = Path.Combine(_dir, "nlvr2");
        Checkpoint.WriteModelFiles(dir, m, Path.Combine(_dir, "tok"), 32);
        var b = FixedBatch();
        m.Eval();
        using var _ = Tensor.NoGrad();
        var want = m.Nlvr2Logits(b.Text.Ids, b.Text.Mask, b.Left, b.Right).ToArray();
        using (var w = CheckpointLoader.Open(dir))
        {
            var head = new BridgeTowerForNlvr2(BridgeTowerConfig.Load(Path.Combine(dir, "config.json")), w);
            head.Eval();
            Assert.Null(head.FreshHeadParameters);
            Assert.Equal(want, head.Forward(b.Text.Ids, b.Text.Mask, b.Left, b.Right).Logits.ToArray());
        }
        var back = TrainingModels.FromFolder(dir, 9, nlvr2: true);
        Assert.DoesNotContain("nlvr2_classifier", back.FreshHeads);
        back.Model.Eval();
        Assert.Equal(want, back.Model.Nlvr2Logits(b.Text.Ids, b.Text.Mask, b.Left, b.Right).ToArray());
        // Loaded for a one-image task, it keeps the first two token types.
        var itm = TrainingModels.FromFolder(dir, 9);
        Assert.Equal(m.Base.TokenTypeEmbeddings.Narrow(0, 0, 2).ToArray(), itm.Model.Base.TokenTypeEmbeddings.ToArray());
    }

    [Fact]
    public void FolderLoadingKeepsTheBaseAndStartsMissingOrMisfittingHeadsFresh()
    {
        var m = new MultiTaskBridgeTower(Config(["yes", "no"]), new Rng(3), 7);
        WorldBpe.TrainAndSave(["a red circle", "two blue squares"], Path.Combine(_dir, "tok"), 300);
        var dir = Path.Combine(_dir, "pre");
        Checkpoint.WriteModelFiles(dir, m, Path.Combine(_dir, "tok"), 32);

        var n = TrainingModels.FromFolder(dir, 5, nlvr2: true);
        Assert.Equal(["nlvr2_classifier"], n.FreshHeads);
        var tt = n.Model.Base.TokenTypeEmbeddings;
        Assert.Equal(m.Base.TokenTypeEmbeddings.ToArray(), tt.Narrow(0, 0, 2).ToArray());
        Assert.Equal(tt.Narrow(0, 1, 1).ToArray(), tt.Narrow(0, 2, 1).ToArray());
        foreach (var (k, v) in m.HfParameters().Where(kv => !kv.Key.Contains("token_type")))
            Assert.Equal(v.ToArray(), n.Model.Parameters[k].ToArray());

        // Three answers instead of two: the VQA classifier no longer fits and starts fresh; the rest loads.
        var v3 = TrainingModels.FromFolder(dir, 5, edit: c => c with { Id2Label = ["a", "b", "c"], NumLabels = 3 });
        Assert.Equal(["vqa_classifier"], v3.FreshHeads);
        Assert.Equal(m.Parameters["itm_score.fc.weight"].ToArray(), v3.Model.Parameters["itm_score.fc.weight"].ToArray());
        Assert.Equal(["itm_score"], TrainingModels.FromFolder(dir, 5, reinitHeads: ["itm_score"]).FreshHeads);

        // A base that does not fit its config is an error naming the folder.
        File.WriteAllText(Path.Combine(dir, "config.json"), Checkpoint.ConfigJson(Config() with { HiddenSize = 32 }));
        var e = Assert.ThrowsAny<Exception>(() => TrainingModels.FromFolder(dir, 5));
        Assert.Contains(dir, e.Message);
    }
}
