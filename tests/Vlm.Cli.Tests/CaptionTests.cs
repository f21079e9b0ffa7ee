using Vlm.Cli;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public class RunCaseBlipTests
{
    [Theory]
    [InlineData("blip_itm")]
    [InlineData("blip_vqa")]
    [InlineData("blip_caption")]
    public void Blip_cases_round_trip_through_run_case(string caseName)
    {
        var outPath = Path.Combine(Path.GetTempPath(), $"vlm-runcase-{caseName}-{Guid.NewGuid():N}.safetensors");
        try
        {
            Assert.Equal(0, Program.Main(["run-case", Fixtures.Path(caseName), "--out", outPath]));
            var got = SafeTensors.Load(outPath);
            var expected = Fixtures.Load(caseName, "outputs.safetensors");
            Assert.Equal(expected.Keys.Order(), got.Keys.Order());
            foreach (var (k, e) in expected)
            {
                if (e.DType == Vlm.Core.DType.Int64) Assert.Equal(e.ToInt64Array(), got[k].ToInt64Array());
                else TensorAssert.Close(e, got[k], 1e-4f, 1e-4f, k);
            }
        }
        finally { File.Delete(outPath); }
    }
}

public class CaptionTests
{
    /// <summary>The tiny captioning fixture plus a BERT vocabulary (ids below 110 decode to its first tokens).</summary>
    private static string ModelFolder()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-caption-").FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.Path("blip_caption", f), Path.Combine(dir, f));
        foreach (var f in new[] { "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" })
            File.Copy(Fixtures.Path("tokenizers", "bert_uncased", f), Path.Combine(dir, f));
        return dir;
    }

    [Fact]
    public void Captions_greedily_with_beams_and_with_nucleus_sampling()
    {
        var dir = ModelFolder();
        try
        {
            var image = Fixtures.Path("image_preprocessing", "images", "photo.jpg");
            var greedy = Caption.Run(image, dir, null, null, null, 5, 0);
            Assert.Equal(greedy, Caption.Run(image, dir, null, null, null, 5, 0));
            Caption.Run(image, dir, "a", 3, null, 5, 0);
            var s1 = Caption.Run(image, dir, null, null, 0.9f, 5, 7);
            Assert.Equal(s1, Caption.Run(image, dir, null, null, 0.9f, 5, 7));
            Assert.Equal(0, Program.Main(["caption", image, "--model", dir, "--beams", "2", "--max-new-tokens", "4"]));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Bad_arguments_fail_with_exit_code_2()
    {
        var image = Fixtures.Path("image_preprocessing", "images", "photo.jpg");
        Assert.Equal(2, Program.Main(["caption", image, "--model", "/nonexistent/blip"]));
        Assert.Equal(2, Program.Main(["caption", image, "--model", Fixtures.Path("blip_caption"), "--beams", "2", "--top-p", "0.9"]));
        Assert.Equal(2, Program.Main(["caption", "/nonexistent.png", "--model", Fixtures.Path("blip_caption")]));
        Assert.Equal(2, Program.Main(["caption", image, "--model", Fixtures.Path("blip_caption")]));   // no tokenizer files
    }
}
