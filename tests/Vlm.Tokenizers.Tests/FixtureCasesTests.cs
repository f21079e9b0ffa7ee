using System.Text.Json.Nodes;
using Vlm.TestSupport;

namespace Vlm.Tokenizers.Tests;

/// <summary>Every string of every tokenizer fixture's cases.json, against HF's slow tokenizers.</summary>
public class FixtureCasesTests
{
    public static readonly string[] Folders = ["roberta", "bert_uncased", "bert_cased"];
    private static readonly Dictionary<string, Lazy<TokenizerBase>> Tokenizers =
        Folders.ToDictionary(f => f, f => new Lazy<TokenizerBase>(() => AutoTokenizer.FromFolder(Dir(f))));
    private static readonly Lazy<TokenizerBase> RobertaPrefix = new(() =>
    {
        var t = (ByteLevelBpeTokenizer)AutoTokenizer.FromFolder(Dir("roberta"));
        t.AddPrefixSpace = true;
        return t;
    });
    private static readonly Dictionary<string, Lazy<JsonObject>> Cases =
        Folders.ToDictionary(f => f, f => new Lazy<JsonObject>(() => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Dir(f), "cases.json")))!));

    internal static string Dir(string f) => Fixtures.Path("tokenizers", f);

    public static IEnumerable<object[]> StringCases()
    {
        foreach (var f in Folders)
        {
            var n = ((JsonArray)Cases[f].Value["cases"]!).Count;
            for (int i = 0; i < n; i++) yield return [f, i];
        }
    }

    public static IEnumerable<object[]> PairCases()
    {
        foreach (var f in Folders)
        {
            var n = ((JsonArray)Cases[f].Value["pairs"]!["cases"]!).Count;
            for (int i = 0; i < n; i++) yield return [f, i];
        }
    }

    private static long[] Longs(JsonNode? n) => ((JsonArray)n!).Select(x => x!.GetValue<long>()).ToArray();
    private static string[] Strs(JsonNode? n) => ((JsonArray)n!).Select(x => x!.GetValue<string>()).ToArray();

    [Theory]
    [MemberData(nameof(StringCases))]
    public void Tokens_ids_masks_and_decoding_match_hf(string folder, int index)
    {
        var c = (JsonObject)Cases[folder].Value["cases"]![index]!;
        var tok = Tokenizers[folder].Value;
        string text = c["text"]!.GetValue<string>();
        Assert.Equal(Strs(c["tokens"]), tok.Tokenize(text));
        var enc = tok.Encode(text);
        Assert.Equal(Longs(c["input_ids"]), enc.Ids);
        Assert.Equal(Longs(c["attention_mask"]), enc.AttentionMask);
        if (c["token_type_ids"] != null) Assert.Equal(Longs(c["token_type_ids"]), enc.TypeIds);
        if (c["input_ids_add_prefix_space"] != null) Assert.Equal(Longs(c["input_ids_add_prefix_space"]), RobertaPrefix.Value.Encode(text).Ids);
        Assert.Equal(c["decoded"]!.GetValue<string>(), tok.Decode(Longs(c["input_ids"])));
        Assert.Equal(c["decoded_skip_special"]!.GetValue<string>(), tok.Decode(Longs(c["input_ids"]), skipSpecialTokens: true));
        // offsets are in range and ordered for every case
        int prevStart = 0;
        foreach (var (s, e) in enc.Offsets)
        {
            Assert.InRange(s, 0, text.Length);
            Assert.InRange(e, s, text.Length);
            Assert.True(s >= prevStart || (s == 0 && e == 0));
            if (e > 0) prevStart = s;
        }
    }

    [Theory]
    [MemberData(nameof(PairCases))]
    public void Pairs_match_hf(string folder, int index)
    {
        var c = (JsonObject)Cases[folder].Value["pairs"]!["cases"]![index]!;
        var enc = Tokenizers[folder].Value.Encode(c["text"]!.GetValue<string>(), c["text_pair"]!.GetValue<string>());
        Assert.Equal(Longs(c["input_ids"]), enc.Ids);
        if (c["attention_mask"] != null) Assert.Equal(Longs(c["attention_mask"]), enc.AttentionMask);
        if (c["token_type_ids"] != null) Assert.Equal(Longs(c["token_type_ids"]), enc.TypeIds);
    }

    public static IEnumerable<object[]> BatchCalls()
    {
        foreach (var f in Folders)
        {
            var b = (JsonObject)Cases[f].Value["batch"]!;
            if (b["call"] != null) yield return [f, ""];
            foreach (var (k, v) in b) if (v is JsonObject o && o["call"] != null) yield return [f, k];
        }
    }

    [Theory]
    [MemberData(nameof(BatchCalls))]
    public void Padded_truncated_batches_match_hf(string folder, string key)
    {
        var b = (JsonObject)Cases[folder].Value["batch"]!;
        var call = key.Length == 0 ? b : (JsonObject)b[key]!;
        var texts = Strs(b["texts"]);
        var (padding, truncation, maxLength) = TokenizerCases.ParseCall(call["call"]!.GetValue<string>());
        var be = Tokenizers[folder].Value.EncodeBatch(texts, null, true, maxLength, truncation, padding);
        var ids = ((JsonArray)call["input_ids"]!).Select(Longs).ToArray();
        var mask = ((JsonArray)call["attention_mask"]!).Select(Longs).ToArray();
        Assert.Equal(new[] { ids.Length, ids[0].Length }, be.InputIds.Shape);
        Assert.Equal(ids.SelectMany(x => x).ToArray(), be.InputIds.ToInt64Array());
        Assert.Equal(mask.SelectMany(x => x).ToArray(), be.AttentionMask.ToInt64Array());
        if (call["token_type_ids"] != null)
            Assert.Equal(((JsonArray)call["token_type_ids"]!).Select(Longs).SelectMany(x => x).ToArray(), be.TokenTypeIds.ToInt64Array());
    }

    [Theory]
    [InlineData("roberta")]
    [InlineData("bert_uncased")]
    [InlineData("bert_cased")]
    public void TokenizerCases_Run_reproduces_the_reference_json(string folder)
    {
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir(folder), "cases.json")));
        var actual = JsonNode.Parse(TokenizerCases.Run(Dir(folder)));
        Assert.True(JsonNode.DeepEquals(expected, actual), "TokenizerCases.Run output differs from cases.json");
    }

    [Fact]
    public void AutoTokenizer_picks_the_class_from_the_config()
    {
        Assert.IsType<ByteLevelBpeTokenizer>(Tokenizers["roberta"].Value);
        var bert = Assert.IsType<BertTokenizer>(Tokenizers["bert_cased"].Value);
        Assert.False(bert.Options.DoLowerCase);
        Assert.True(((BertTokenizer)Tokenizers["bert_uncased"].Value).Options.DoLowerCase);
        var r = Tokenizers["roberta"].Value;
        Assert.Equal(1, r.PadId);
        Assert.Equal(50260, r.MaskId);
        Assert.Equal(0, r.ClsId);
        Assert.Equal(2, r.SepId);
        Assert.Equal(0, Tokenizers["bert_uncased"].Value.PadId);
        Assert.Equal(4, Tokenizers["bert_uncased"].Value.MaskId);
    }
}
