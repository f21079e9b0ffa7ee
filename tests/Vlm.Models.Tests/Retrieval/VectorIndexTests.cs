using Vlm.Core;
using Vlm.Models.Retrieval;

namespace Vlm.Models.Tests.Retrieval;

public class VectorIndexTests
{
    private static VectorIndex Build(int n, int dim, VectorStorage storage, ulong seed, out float[][] vecs)
    {
        var rng = new Rng(seed);
        var idx = new VectorIndex(dim, storage);
        vecs = new float[n][];
        for (int i = 0; i < n; i++)
        {
            var v = Enumerable.Range(0, dim).Select(_ => (float)rng.NextNormal()).ToArray();
            float norm = MathF.Sqrt(v.Sum(x => x * x));
            for (int d = 0; d < dim; d++) v[d] /= norm;
            vecs[i] = v;
            idx.Add(new IndexEntry($"id{i}", $"img/{i}.png", "image"), v);
        }
        return idx;
    }

    [Theory]
    [InlineData(10, 5)]
    [InlineData(5000, 10)]
    public void TopKEqualsBruteForceSort(int n, int k)
    {
        var idx = Build(n, 32, VectorStorage.Float32, 1, out var vecs);
        var q = vecs[3];
        var expected = Enumerable.Range(0, n).Select(i => (i, s: vecs[i].Zip(q, (a, b) => a * b).Sum()))
            .OrderByDescending(p => p.s).ThenBy(p => p.i).Take(k).Select(p => p.i).ToList();
        var hits = idx.Search(q, k);
        Assert.Equal(expected, hits.Select(h => h.Index).ToList());
        Assert.Equal(3, hits[0].Index);
        Assert.Equal("id3", hits[0].Entry.Id);
        Assert.True(hits.Zip(hits.Skip(1), (a, b) => a.Score >= b.Score).All(x => x));
    }

    [Fact]
    public void Int8ScoresStayCloseToFloat()
    {
        var f = Build(2000, 64, VectorStorage.Float32, 2, out var vecs);
        var q8 = Build(2000, 64, VectorStorage.Int8, 2, out _);
        var q = vecs[17];
        var a = f.Search(q, 20);
        var b = q8.Search(q, 20);
        Assert.Equal(17, b[0].Index);
        Assert.True(a.Select(h => h.Index).Intersect(b.Select(h => h.Index)).Count() >= 15);
        var v = q8.Vector(5);
        float maxAbs = vecs[5].Max(MathF.Abs);
        for (int d = 0; d < 64; d++) Assert.InRange(v[d] - vecs[5][d], -maxAbs / 254f - 1e-6f, maxAbs / 254f + 1e-6f);
    }

    [Theory]
    [InlineData(VectorStorage.Float32)]
    [InlineData(VectorStorage.Int8)]
    public void SaveLoadRoundTripsAndAppends(VectorStorage storage)
    {
        var path = Path.Combine(Path.GetTempPath(), $"vlm-index-{Guid.NewGuid():N}.vidx");
        try
        {
            var idx = Build(100, 16, storage, 3, out var vecs);
            idx.Metadata["model"] = "bridgetower-test";
            idx.Save(path);
            var back = VectorIndex.Load(path);
            Assert.Equal(100, back.Count);
            Assert.Equal("bridgetower-test", back.Metadata["model"]);
            Assert.Equal(idx.Search(vecs[9], 5).Select(h => (h.Index, h.Score)), back.Search(vecs[9], 5).Select(h => (h.Index, h.Score)));
            back.Add(new IndexEntry("new", "a red circle", "text"), vecs[0]);
            back.Save(path);
            Assert.Equal(101, VectorIndex.Load(path).Count);
            Assert.Empty(Directory.GetFiles(Path.GetTempPath(), Path.GetFileName(path) + ".tmp-*"));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void CorruptFilesNameThemselves()
    {
        var path = Path.Combine(Path.GetTempPath(), $"vlm-index-{Guid.NewGuid():N}.vidx");
        try
        {
            Build(10, 8, VectorStorage.Float32, 4, out _).Save(path);
            var good = File.ReadAllBytes(path);
            File.WriteAllBytes(path, good[..^4]);
            Assert.Contains(path, Assert.Throws<InvalidDataException>(() => VectorIndex.Load(path)).Message);
            var bad = (byte[])good.Clone(); bad[0] = (byte)'X';
            File.WriteAllBytes(path, bad);
            Assert.Contains("magic", Assert.Throws<InvalidDataException>(() => VectorIndex.Load(path)).Message);
            bad = (byte[])good.Clone(); bad[13] = 0x7f;
            File.WriteAllBytes(path, bad);
            Assert.Throws<InvalidDataException>(() => VectorIndex.Load(path));
            var rng = new Random(5);
            for (int t = 0; t < 300; t++)
            {
                var m = (byte[])good.Clone();
                for (int j = 0; j < 3; j++) m[rng.Next(m.Length)] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(path, m);
                try { VectorIndex.Load(path); } catch (InvalidDataException) { }
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void RejectsWrongDimensionsAndNonFiniteValues()
    {
        var idx = new VectorIndex(4);
        Assert.Throws<ArgumentException>(() => idx.Add(new IndexEntry("a", "", "text"), new float[3]));
        Assert.Throws<ArgumentException>(() => idx.Add(new IndexEntry("a", "", "text"), [1, float.NaN, 0, 0]));
        Assert.Throws<ArgumentException>(() => idx.Search(new float[5], 1));
        Assert.Empty(idx.Search(new float[4], 3));
    }
}
