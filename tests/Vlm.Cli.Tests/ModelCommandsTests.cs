using System.Text.Json;

namespace Vlm.Cli.Tests;

public sealed class ModelCommandsTests : IClassFixture<TinyBridgeTowerFolder>
{
    private readonly TinyBridgeTowerFolder _f;

    public ModelCommandsTests(TinyBridgeTowerFolder f) => _f = f;

    private static (int code, string stdout, string stderr) Run(params string[] args) => CliRunner.Run(args);

    private static JsonElement Json(string s) => JsonDocument.Parse(s).RootElement;

    [Fact]
    public void ItmScoresEachCaption()
    {
        var (code, stdout, stderr) = Run("itm", "--model", _f.Model, "--image", _f.ImagePath(0), "--text", "a red circle", "--text", "two blue squares", "--json");
        Assert.True(code == 0, stderr);
        var rows = Json(stdout).EnumerateArray().ToList();
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.InRange(r.GetProperty("match_probability").GetSingle(), 0f, 1f));
        Assert.Equal("two blue squares", rows[1].GetProperty("text").GetString());
    }

    [Fact]
    public void VqaAnswersComeFromTheConfigVocabulary()
    {
        var (code, stdout, stderr) = Run("vqa", "-m", _f.Model, "-i", _f.ImagePath(1), "-q", "what color is the circle?", "--top", "3", "--json");
        Assert.True(code == 0, stderr);
        var rows = Json(stdout).EnumerateArray().ToList();
        Assert.Equal(3, rows.Count);
        Assert.All(rows, r => Assert.Contains(r.GetProperty("answer").GetString(), TinyBridgeTowerFolder.Answers));
        var scores = rows.Select(r => r.GetProperty("score").GetSingle()).ToList();
        Assert.Equal(scores.OrderByDescending(x => x), scores);
    }

    [Fact]
    public void FillMaskPredictsAtTheMask()
    {
        var (code, stdout, stderr) = Run("fill-mask", "-m", _f.Model, "-i", _f.ImagePath(2), "-t", "a <mask> circle", "--json");
        Assert.True(code == 0, stderr);
        var masks = Json(stdout).EnumerateArray().ToList();
        Assert.Single(masks);
        Assert.Equal(5, masks[0].GetArrayLength());
        (code, _, stderr) = Run("fill-mask", "-m", _f.Model, "-i", _f.ImagePath(2), "-t", "no mask here");
        Assert.NotEqual(0, code);
        Assert.Contains("no mask token", stderr);
    }

    [Fact]
    public void EmbeddingsAreUnitVectorsOfTheContrastiveSize()
    {
        var (code, stdout, stderr) = Run("embed", "-m", _f.Model, "-i", _f.ImagePath(0), _f.ImagePath(1), "-t", "a red circle", "--json");
        Assert.True(code == 0, stderr);
        var rows = Json(stdout).EnumerateArray().ToList();
        Assert.Equal(3, rows.Count);
        foreach (var r in rows)
        {
            var v = r.GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray();
            Assert.Equal(24, v.Length);
            Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 4);
        }
    }

    [Fact]
    public void IndexBuildQueryAddAndRerank()
    {
        var idx = Path.Combine(_f.Dir, "images.vidx");
        var (code, _, stderr) = Run("index", "build", _f.Images, "-m", _f.Model, "--out", idx, "--batch", "2");
        Assert.True(code == 0, stderr);
        (code, var stdout, stderr) = Run("index", "query", "--index", idx, "-m", _f.Model, "--text", "a red circle", "--k", "3", "--rerank", "--json");
        Assert.True(code == 0, stderr);
        var hits = Json(stdout).EnumerateArray().ToList();
        Assert.Equal(3, hits.Count);
        Assert.All(hits, h => Assert.Equal(JsonValueKind.Number, h.GetProperty("itm").ValueKind));
        var itm = hits.Select(h => h.GetProperty("itm").GetSingle()).ToList();
        Assert.Equal(itm.OrderByDescending(x => x), itm);

        var caps = Path.Combine(_f.Dir, "captions.vidx");
        (code, _, stderr) = Run("index", "build", Path.Combine(_f.Dir, "captions.txt"), "-m", _f.Model, "--out", caps, "--int8");
        Assert.True(code == 0, stderr);
        (code, _, stderr) = Run("index", "add", Path.Combine(_f.Dir, "captions.txt"), "-m", _f.Model, "--index", caps);
        Assert.True(code == 0, stderr);
        (code, stdout, stderr) = Run("index", "query", "--index", caps, "-m", _f.Model, "--image", _f.ImagePath(3), "--k", "10", "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal(6, Json(stdout).GetArrayLength()); // 3 non-empty captions, added twice
    }

    [Fact]
    public void BadInputIsAOneLineErrorAndNonZeroExit()
    {
        var cases = new[]
        {
            (new[] { "itm", "-m", "/no/such/model", "-i", _f.ImagePath(0), "-t", "x" }, "not found"),
            (new[] { "itm", "-m", _f.Model, "-i", "/no/such.png", "-t", "x" }, "no/such.png"),
            (new[] { "vqa", "-m", _f.Model, "-i", _f.ImagePath(0), "-q", "  " }, "empty"),
            (new[] { "embed", "-m", _f.Model }, "at least one"),
            (new[] { "index", "query", "--index", "/no/such.vidx", "-m", _f.Model, "-t", "x" }, "not found"),
            (new[] { "index", "query", "--index", "/no/such.vidx", "-m", _f.Model }, "exactly one"),
        };
        var corrupt = Path.Combine(_f.Dir, "corrupt.png");
        File.WriteAllBytes(corrupt, File.ReadAllBytes(_f.ImagePath(0))[..40]);
        cases = [.. cases, (new[] { "itm", "-m", _f.Model, "-i", corrupt, "-t", "x" }, "corrupt.png")];
        foreach (var (args, expect) in cases)
        {
            var (code, _, stderr) = Run(args);
            Assert.True(code != 0, $"{string.Join(' ', args)} should fail");
            Assert.Contains(expect, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
        }
    }
}
