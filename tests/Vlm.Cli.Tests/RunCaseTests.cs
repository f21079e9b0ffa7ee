using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public class RunCaseTests
{
    [Theory]
    [InlineData("roberta")]
    [InlineData("bert_uncased")]
    [InlineData("bert_cased")]
    public void TokenizerCasesRoundTripThroughTheCommand(string name)
    {
        var outPath = Path.Combine(Path.GetTempPath(), $"vlm-runcase-{name}-{Guid.NewGuid():N}.json");
        try
        {
            Assert.Equal(0, Program.Main(["run-case", Fixtures.Path("tokenizers", name), "--out", outPath]));
            var expected = JsonNode.Parse(File.ReadAllText(Fixtures.Path("tokenizers", name, "cases.json")));
            var actual = JsonNode.Parse(File.ReadAllText(outPath));
            Assert.True(JsonNode.DeepEquals(expected, actual), "run-case output differs from the fixture's cases.json");
        }
        finally { File.Delete(outPath); }
    }

    [Fact]
    public void ImageCasesRoundTripThroughTheCommand()
    {
        var outDir = Path.Combine(Path.GetTempPath(), $"vlm-runcase-img-{Guid.NewGuid():N}");
        try
        {
            Assert.Equal(0, Program.Main(["run-case", Fixtures.Path("image_preprocessing"), "--out", outDir]));
            var runs = Directory.GetDirectories(outDir);
            Assert.NotEmpty(runs);
            foreach (var run in runs)
            {
                var expected = SafeTensors.Load(Fixtures.Path("image_preprocessing", Path.GetFileName(run), "outputs.safetensors"));
                var actual = SafeTensors.Load(Path.Combine(run, "outputs.safetensors"));
                Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
                foreach (var (k, e) in expected)
                    TensorAssert.Close(e, actual[k], atol: k.StartsWith("pixel_values") ? 1e-5f : 0f, rtol: 0f, what: $"{Path.GetFileName(run)}/{k}");
            }
        }
        finally { if (Directory.Exists(outDir)) Directory.Delete(outDir, true); }
    }

    [Fact]
    public void UnknownFolderIsAOneLineErrorWithNonZeroExit()
    {
        var err = new StringWriter();
        var old = Console.Error;
        Console.SetError(err);
        try
        {
            Assert.NotEqual(0, Program.Main(["run-case", Path.GetTempPath(), "--out", "x.json"]));
            Assert.NotEqual(0, Program.Main(["run-case", "/no/such/folder", "--out", "x.json"]));
        }
        finally { Console.SetError(old); }
        Assert.Contains("not a fixture folder", err.ToString());
        Assert.Contains("folder not found", err.ToString());
    }
}
