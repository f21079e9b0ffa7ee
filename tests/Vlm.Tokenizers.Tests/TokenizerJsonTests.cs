using System.Text.Json.Nodes;

namespace Vlm.Tokenizers.Tests;

/// <summary>
/// HF fast-format <c>tokenizer.json</c> built from the fixture vocabularies (as <c>save_pretrained</c> of the
/// fast tokenizers lays it out) must tokenize every fixture string like the slow tokenizer.
/// </summary>
public class TokenizerJsonTests
{
    private static JsonObject Added(int id, string content, bool lstrip = false) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = lstrip, ["rstrip"] = false,
        ["normalized"] = false, ["special"] = true,
    };

    private static string MakeRobertaJson(string dir)
    {
        var src = FixtureCasesTests.Dir("roberta");
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "vocab.json")))!;
        var merges = new JsonArray(File.ReadAllLines(Path.Combine(src, "merges.txt")).Skip(1).Where(l => l.Length > 0)
            .Select(l => (JsonNode)JsonValue.Create(l)).ToArray());
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(0, "<s>"), Added(1, "<pad>"), Added(2, "</s>"), Added(3, "<unk>"), Added(50260, "<mask>", lstrip: true)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "RobertaProcessing", ["sep"] = new JsonArray("</s>", 2), ["cls"] = new JsonArray("<s>", 0),
                ["trim_offsets"] = true, ["add_prefix_space"] = false,
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        var path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    private static string MakeBertJson(string dir, bool lower)
    {
        var src = FixtureCasesTests.Dir(lower ? "bert_uncased" : "bert_cased");
        var vocab = new JsonObject();
        var lines = File.ReadAllText(Path.Combine(src, "vocab.txt")).Split('\n');
        for (int i = 0; i < lines.Length - 1; i++) vocab[lines[i]] = i;
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(Added(0, "[PAD]"), Added(1, "[UNK]"), Added(2, "[CLS]"), Added(3, "[SEP]"), Added(4, "[MASK]")),
            ["normalizer"] = new JsonObject { ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = lower },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = new JsonObject { ["type"] = "TemplateProcessing" },
            ["model"] = new JsonObject
            {
                ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = vocab,
            },
        };
        var path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    private static void CheckAllCases(TokenizerBase tok, string folder)
    {
        var cases = (JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureCasesTests.Dir(folder), "cases.json")))!["cases"]!;
        foreach (var c in cases)
        {
            var text = c!["text"]!.GetValue<string>();
            Assert.Equal(c["tokens"]!.AsArray().Select(x => x!.GetValue<string>()), tok.Tokenize(text));
            Assert.Equal(c["input_ids"]!.AsArray().Select(x => x!.GetValue<long>()), tok.Encode(text).Ids);
            Assert.Equal(c["decoded_skip_special"]!.GetValue<string>(), tok.Decode(tok.Encode(text).Ids, skipSpecialTokens: true));
        }
    }

    [Fact]
    public void Bpe_tokenizer_json_matches_the_slow_roberta_cases()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-tokjson-").FullName;
        try
        {
            var tok = AutoTokenizer.FromTokenizerJson(MakeRobertaJson(dir));
            Assert.IsType<ByteLevelBpeTokenizer>(tok);
            Assert.Equal(50260, tok.MaskId);
            Assert.Equal(1, tok.PadId);
            CheckAllCases(tok, "roberta");
            // a folder holding only tokenizer.json loads through AutoTokenizer too
            Assert.IsType<ByteLevelBpeTokenizer>(AutoTokenizer.FromFolder(dir));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(true, "bert_uncased")]
    [InlineData(false, "bert_cased")]
    public void Wordpiece_tokenizer_json_matches_the_slow_bert_cases(bool lower, string folder)
    {
        var dir = Directory.CreateTempSubdirectory("vlm-tokjson-").FullName;
        try
        {
            var tok = AutoTokenizer.FromTokenizerJson(MakeBertJson(dir, lower));
            Assert.IsType<BertTokenizer>(tok);
            Assert.Equal(4, tok.MaskId);
            tok.CleanUpTokenizationSpaces = true;
            CheckAllCases(tok, folder);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Unsupported_model_type_names_the_file()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-tokjson-").FullName;
        try
        {
            var path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}");
            var ex = Assert.Throws<TokenizerFileException>(() => AutoTokenizer.FromTokenizerJson(path));
            Assert.Contains("tokenizer.json", ex.Message);
            Assert.Contains("Unigram", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
