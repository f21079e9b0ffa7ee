using System.Text.Json;
using Vlm.Training.Data;
using Vlm.Training.World;

namespace Vlm.Training.Tests.World;

public class WorldDatasetTests
{
    [Fact]
    public void WritesStandardFormatsThatAgreeWithEachOther()
    {
        var dir = Path.Combine(Path.GetTempPath(), "vlm-world-" + Guid.NewGuid().ToString("N"));
        var written = new List<string>();
        try
        {
            WorldDataset.Write(dir, new WorldGenerator(1), new WorldSplits(6, 2, 2),
                (path, rgb, w, h) => { Assert.Equal(w * h * 3, rgb.Length); File.WriteAllBytes(path, [1]); written.Add(path); });
            Assert.Equal(10, written.Count);

            using var coco = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "captions_train.json")));
            var images = coco.RootElement.GetProperty("images").EnumerateArray().ToList();
            Assert.Equal(6, images.Count);
            var ids = images.Select(i => i.GetProperty("id").GetInt32()).ToHashSet();
            foreach (var a in coco.RootElement.GetProperty("annotations").EnumerateArray())
                Assert.Contains(a.GetProperty("image_id").GetInt32(), ids);
            foreach (var i in images) Assert.True(File.Exists(Path.Combine(dir, i.GetProperty("file_name").GetString()!)));

            using var q = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "questions_val.json")));
            using var a2 = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "annotations_val.json")));
            var qids = q.RootElement.GetProperty("questions").EnumerateArray().Select(x => x.GetProperty("question_id").GetInt32()).ToList();
            var aids = a2.RootElement.GetProperty("annotations").EnumerateArray().Select(x => x.GetProperty("question_id").GetInt32()).ToList();
            Assert.NotEmpty(qids);
            Assert.Equal(qids, aids);
            Assert.Equal(qids.Count, qids.Distinct().Count());

            using var k = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "dataset_karpathy.json")));
            var splits = k.RootElement.GetProperty("images").EnumerateArray().GroupBy(i => i.GetProperty("split").GetString()).ToDictionary(g => g.Key!, g => g.Count());
            Assert.Equal(6, splits["train"]); Assert.Equal(2, splits["val"]); Assert.Equal(2, splits["test"]);

            var nlvr = File.ReadAllLines(Path.Combine(dir, "nlvr2_train.jsonl"));
            Assert.Equal(3, nlvr.Length);
            var nlvrItems = DatasetFormats.ReadNlvr2Jsonl(Path.Combine(dir, "nlvr2_train.jsonl"), dir);
            Assert.Equal(3, nlvrItems.Count);
            Assert.All(nlvrItems, i => { Assert.True(File.Exists(i.LeftPath)); Assert.True(File.Exists(i.RightPath)); });
            var pairs = DatasetFormats.ReadPairsJsonl(Path.Combine(dir, "pairs_train.jsonl"), dir);
            Assert.Equal(coco.RootElement.GetProperty("annotations").GetArrayLength(), pairs.Count);
            Assert.All(pairs, p => Assert.Contains(p.ImageId, ids));
            var neg = File.ReadAllLines(Path.Combine(dir, "itm_negatives_train.jsonl")).Select(l => JsonDocument.Parse(l)).ToList();
            Assert.NotEmpty(neg);
            Assert.All(neg, n => Assert.Equal(0, n.RootElement.GetProperty("label").GetInt32()));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
