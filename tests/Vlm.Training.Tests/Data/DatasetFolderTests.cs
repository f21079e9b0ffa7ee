using System.Text.Json.Nodes;
using Vlm.Training.Data;
using Vlm.Training.World;

namespace Vlm.Training.Tests.Data;

/// <summary>How the training commands find a split's files in a dataset folder.</summary>
public sealed class DatasetFolderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vlm-dsfolder-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void KarpathyPairsAndVqaV2NamesWithAnImagePattern()
    {
        File.WriteAllText(Path.Combine(_dir, "dataset_karpathy.json"), new JsonObject
        {
            ["images"] = new JsonArray(
                new JsonObject { ["filepath"] = "val2014", ["filename"] = "a.jpg", ["cocoid"] = 7, ["split"] = "test", ["sentences"] = new JsonArray(new JsonObject { ["raw"] = "one" }, new JsonObject { ["raw"] = "two" }) },
                new JsonObject { ["filepath"] = "train2014", ["filename"] = "b.jpg", ["cocoid"] = 8, ["split"] = "restval", ["sentences"] = new JsonArray(new JsonObject { ["raw"] = "three" }) }),
        }.ToJsonString());
        var d = new DatasetFolder(_dir) { ImagePattern = "train2014/COCO_train2014_{id:12}.jpg" };
        var test = d.Pairs("test");
        Assert.Equal(["one", "two"], test.Select(p => p.Caption));
        Assert.Equal(Path.Combine(_dir, "val2014", "a.jpg"), test[0].ImagePath);
        Assert.Equal("three", Assert.Single(d.Pairs("train")).Caption);   // restval counts as train

        File.WriteAllText(Path.Combine(_dir, "v2_OpenEnded_mscoco_train2014_questions.json"),
            """{"questions": [{"image_id": 9, "question": "what?", "question_id": 90}]}""");
        File.WriteAllText(Path.Combine(_dir, "v2_mscoco_train2014_annotations.json"),
            """{"annotations": [{"question_id": 90, "image_id": 9, "question_type": "what", "answers": [{"answer": "cat"}]}]}""");
        // Image 9 is not in the Karpathy file: the pattern names it.
        var q = Assert.Single(d.Vqa("train"));
        Assert.Equal(Path.Combine(_dir, "train2014", "COCO_train2014_000000000009.jpg"), q.ImagePath);
        Assert.False(d.HasVqa("val"));
        var e = Assert.Throws<FileNotFoundException>(() => d.Nlvr2("test"));
        Assert.Contains("nlvr2_test.jsonl", e.Message);
        Assert.Empty(d.Negatives("test"));
        Assert.Throws<FileNotFoundException>(() => DatasetFolder.CheckImagesExist(test.Select(p => p.ImagePath)));
    }

    [Fact]
    public void WorldInfoRegeneratesTheWorldsScenes()
    {
        var info = new WorldInfo(5, 48, 10, 1, 3);
        info.Save(_dir);
        var back = WorldInfo.Load(_dir)!;
        Assert.Equal(info, back);
        var a = back.Generator().SampleScene(4);
        var b = new WorldGenerator(5, new WorldOptions { MinImageSize = 48, MaxImageSize = 48 }).SampleScene(4);
        Assert.Equal(Renderer.Render(a), Renderer.Render(b));
        Assert.Equal(48, a.Width);
        File.WriteAllText(Path.Combine(_dir, WorldInfo.FileName), "{\"seed\": 1}");
        Assert.Throws<InvalidDataException>(() => WorldInfo.Load(_dir));
        Assert.Throws<DirectoryNotFoundException>(() => new DatasetFolder(Path.Combine(_dir, "nope")));
    }
}
