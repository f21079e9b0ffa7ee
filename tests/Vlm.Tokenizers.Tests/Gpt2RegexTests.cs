using System.Text.Json.Nodes;
using Vlm.TestSupport;

namespace Vlm.Tokenizers.Tests;

/// <summary>The hand-written GPT-2 scanner against the Python <c>regex</c> module on 400 random tricky strings (Data/gen_gpt2_pretokens.py).</summary>
public class Gpt2RegexTests
{
    public static IEnumerable<object[]> Cases()
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Tokenizers.Tests", "Data", "gpt2_pretokens.json")))!;
        var cases = (JsonArray)root["cases"]!;
        // batches of 40 keep the test list short
        for (int b = 0; b < cases.Count; b += 40) yield return [b];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Scanner_matches_python_regex(int from)
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "tests", "Vlm.Tokenizers.Tests", "Data", "gpt2_pretokens.json")))!;
        var cases = (JsonArray)root["cases"]!;
        for (int i = from; i < Math.Min(from + 40, cases.Count); i++)
        {
            var text = cases[i]!["text"]!.GetValue<string>();
            var expected = cases[i]!["pretokens"]!.AsArray().Select(x => x!.GetValue<string>()).ToList();
            Assert.True(expected.SequenceEqual(Gpt2PreTokenizer.Split(text)),
                $"case {i} {System.Text.Json.JsonSerializer.Serialize(text)}: expected {System.Text.Json.JsonSerializer.Serialize(expected)}, got {System.Text.Json.JsonSerializer.Serialize(Gpt2PreTokenizer.Split(text))}");
        }
    }
}
