using Vlm.Core;
using Vlm.Tokenizers;
using Vlm.Training.CapFilt;
using Vlm.Training.Data;

namespace Vlm.Training.Tests.CapFilt;

public class CorruptionTests
{
    private static List<ImageCaption> Pairs()
    {
        var list = new List<ImageCaption>();
        for (int img = 0; img < 10; img++)
            for (int c = 0; c < 3; c++) list.Add(new ImageCaption(img, $"images/{img}.png", $"caption {c} of image {img}"));
        // a caption two images share: never a valid replacement between them
        list.Add(new ImageCaption(0, "images/0.png", "a red circle"));
        list.Add(new ImageCaption(1, "images/1.png", "a red circle"));
        return list;
    }

    [Fact]
    public void Corrupts_exactly_the_fraction_and_records_where_each_caption_came_from()
    {
        var pairs = Pairs();
        var noisy = Corruption.Corrupt(pairs, 0.3, new Rng(5));
        Assert.Equal(pairs.Count, noisy.Count);
        Assert.Equal((int)Math.Round(0.3 * pairs.Count), noisy.Count(p => p.Corrupted));
        var byImage = pairs.GroupBy(p => p.ImageId).ToDictionary(g => g.Key, g => g.Select(p => p.Caption).ToHashSet());
        for (int i = 0; i < pairs.Count; i++)
        {
            var n = noisy[i];
            Assert.Equal(pairs[i].ImageId, n.ImageId);
            Assert.Equal(pairs[i].ImagePath, n.Image);
            Assert.Equal(pairs[i].Caption, n.OriginalCaption);
            if (!n.Corrupted) { Assert.Equal(pairs[i].Caption, n.Caption); Assert.Equal(n.ImageId, n.SourceImageId); continue; }
            Assert.NotEqual(n.ImageId, n.SourceImageId);
            Assert.Contains(n.Caption, byImage[n.SourceImageId]);
            Assert.DoesNotContain(n.Caption, byImage[n.ImageId]);   // really false for this image
        }
        // same seed, same corruption; another seed, another
        Assert.Equal(noisy, Corruption.Corrupt(pairs, 0.3, new Rng(5)));
        Assert.NotEqual(noisy.Select(p => p.Corrupted), Corruption.Corrupt(pairs, 0.3, new Rng(6)).Select(p => p.Corrupted));
        Assert.All(Corruption.Corrupt(pairs, 0, new Rng(1)), p => Assert.False(p.Corrupted));
        Assert.All(Corruption.Corrupt(pairs, 1, new Rng(1)), p => Assert.True(p.Corrupted));
        Assert.Throws<ArgumentOutOfRangeException>(() => Corruption.Corrupt(pairs, 1.5, new Rng(1)));
    }

    [Fact]
    public void The_record_round_trips_and_the_standard_reader_ignores_it()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-corrupt-").FullName;
        try
        {
            var noisy = Corruption.Corrupt(Pairs(), 0.5, new Rng(2));
            var path = Path.Combine(dir, "noisy.jsonl");
            Corruption.WriteJsonl(path, noisy);
            Assert.Equal(noisy.Select(p => (bool?)p.Corrupted), Corruption.ReadFlags(path));
            var read = DatasetFormats.ReadPairsJsonl(path, dir);
            Assert.Equal(noisy.Select(p => (p.ImageId, Path.Combine(dir, p.Image), p.Caption)), read.Select(p => (p.ImageId, p.ImagePath, p.Caption)));

            File.WriteAllText(path, "{\"image\":\"a.png\",\"caption\":\"x\"}\n\n{\"image\":\"b.png\",\"caption\":\"y\",\"corrupted\":true}\n");
            Assert.Equal([null, true], Corruption.ReadFlags(path));
            File.WriteAllText(path, "{\"image\":\"a.png\",\"caption\":\"x\",\"corrupted\":\"yes\"}\n");
            var e = Assert.Throws<InvalidDataException>(() => Corruption.ReadFlags(path));
            Assert.Contains("noisy.jsonl:1", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public class FilterQualityTests
{
    [Fact]
    public void Precision_and_recall_on_a_hand_made_case()
    {
        // corrupted:  T T F F T F ; rejected: T F T F T F  → TP 2, rejected 3, corrupted 3
        bool[] corrupted = [true, true, false, false, true, false];
        bool[] rejected = [true, false, true, false, true, false];
        var q = FilterQuality.Of(corrupted, rejected);
        Assert.Equal((6, 3, 3, 2), (q.Pairs, q.Corrupted, q.Rejected, q.TruePositives));
        Assert.Equal(2.0 / 3, q.Precision, 12);
        Assert.Equal(2.0 / 3, q.Recall, 12);
        Assert.Equal(2.0 / 3, q.F1, 12);
        Assert.Equal(2.0 / 3, q.CleanKept, 12);     // 3 clean, 1 wrongly rejected
        Assert.Equal(1.0 / 3, q.NoiseAfter, 12);    // kept 3, one of them corrupted

        var none = FilterQuality.Of([true, false], [false, false]);
        Assert.True(double.IsNaN(none.Precision));
        Assert.Equal(0, none.Recall);
        var clean = FilterQuality.Of([false, false], [true, false]);
        Assert.True(double.IsNaN(clean.Recall));
        Assert.Equal(0, clean.Precision);
        Assert.Throws<ArgumentException>(() => FilterQuality.Of([true], [true, false]));
    }

    [Fact]
    public void Mean_and_95_percent_interval_use_student_t()
    {
        var (m, h) = CapFiltExperiment.MeanCi([1.0, 2.0, 3.0]);
        Assert.Equal(2.0, m, 12);
        Assert.Equal(4.303 * 1.0 / Math.Sqrt(3), h, 9);   // sd 1, t(0.975, 2) = 4.303
        var (m1, h1) = CapFiltExperiment.MeanCi([0.5]);
        Assert.Equal(0.5, m1);
        Assert.True(double.IsNaN(h1));
    }
}

public class BootstrappedDatasetTests
{
    [Fact]
    public void Written_dataset_round_trips_through_the_pairs_and_coco_readers()
    {
        var root = Directory.CreateTempSubdirectory("vlm-boot-").FullName;
        try
        {
            var data = Path.Combine(root, "world"); var outDir = Path.Combine(root, "out");
            Directory.CreateDirectory(Path.Combine(data, "images"));
            foreach (var n in new[] { "a", "b" }) File.WriteAllBytes(Path.Combine(data, "images", n + ".png"), [0]);
            (int, string, string, string)[] pairs =
            [
                (1, Path.Combine(data, "images", "a.png"), "a red circle", "clean"),
                (2, Path.Combine(data, "images", "b.png"), "a blue square, a small green cross", "original"),
                (2, Path.Combine(data, "images", "b.png"), "two \"quoted\" squares", "synthetic"),
            ];
            CapFiltRunner.WriteDataset(outDir, pairs);
            var jsonl = DatasetFormats.ReadPairsJsonl(Path.Combine(outDir, "pairs_train.jsonl"), outDir);
            var coco = DatasetFormats.ReadCocoCaptions(Path.Combine(outDir, "captions_train.json"), outDir);
            foreach (var read in new[] { jsonl, coco })
            {
                Assert.Equal(pairs.Select(p => (p.Item1, p.Item3)), read.Select(r => (r.ImageId, r.Caption)));
                for (int i = 0; i < pairs.Length; i++) Assert.Equal(Path.GetFullPath(pairs[i].Item2), Path.GetFullPath(read[i].ImagePath));
                Assert.All(read, r => Assert.True(File.Exists(r.ImagePath)));
            }
            Assert.Contains("\"source\":\"synthetic\"", File.ReadAllLines(Path.Combine(outDir, "pairs_train.jsonl"))[2]);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void World_wordpiece_vocabulary_round_trips_world_captions()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-wp-").FullName;
        try
        {
            string[] caps = ["a large red circle, a small blue square and a green cross", "two circles", "a red circle left of a blue square"];
            int n = WorldWordPiece.TrainAndSave(caps, dir);
            var tok = AutoTokenizer.FromFolder(dir);
            Assert.Equal(n, tok.VocabSize);
            Assert.Equal(WorldWordPiece.PadId, tok.PadId);
            Assert.Equal(WorldWordPiece.ClsId, tok.ClsId);
            Assert.Equal(WorldWordPiece.SepId, tok.SepId);
            Assert.Equal(WorldWordPiece.DecId, tok.BosId);
            foreach (var c in caps)
            {
                var e = tok.Encode(c);
                Assert.Equal(WorldWordPiece.ClsId, e.Ids[0]);
                Assert.Equal(WorldWordPiece.SepId, e.Ids[^1]);
                Assert.DoesNotContain(WorldWordPiece.UnkId, e.Ids.Select(x => (int)x));
                Assert.Equal(c, tok.Decode(e.Ids, skipSpecialTokens: true));
            }
            // a word outside the corpus is unknown, not split
            Assert.Contains(WorldWordPiece.UnkId, tok.Encode("a purple circle").Ids.Select(x => (int)x));
        }
        finally { Directory.Delete(dir, true); }
    }
}
