using System.Text.Json;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public class TokenizeTests
{
    private static (int code, string stdout, string stderr) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void JsonOutputMatchesTheFixtureIds()
    {
        using var cases = JsonDocument.Parse(File.ReadAllText(Fixtures.Path("tokenizers", "roberta", "cases.json")));
        var first = cases.RootElement.GetProperty("cases")[3];
        var text = first.GetProperty("text").GetString()!;
        var (code, stdout, _) = Run("tokenize", Fixtures.Path("tokenizers", "roberta"), text, "--json");
        Assert.Equal(0, code);
        using var got = JsonDocument.Parse(stdout);
        Assert.Equal(first.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt64()), got.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt64()));
    }

    [Fact]
    public void BadFolderAndLengthAreOneLineErrors()
    {
        var (code, _, err) = Run("tokenize", "/no/such/dir", "x");
        Assert.NotEqual(0, code);
        Assert.Contains("folder not found", err);
        (code, _, err) = Run("tokenize", Fixtures.Path("tokenizers", "roberta"), "x", "--max-length", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--max-length", err);
    }
}
