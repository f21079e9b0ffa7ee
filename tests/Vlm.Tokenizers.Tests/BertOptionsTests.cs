namespace Vlm.Tokenizers.Tests;

/// <summary>BasicTokenizer / WordPiece options on a tiny hand-made vocabulary (expected values derived by hand from HF's algorithm).</summary>
public class BertOptionsTests
{
    private static readonly string[] Words =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "hel", "##lo", "##o", "cafe", "café", "Cafe", "日", "##本", "本",
        ",", "a", "##a", "!", "[FOO]",
    ];

    private static BertTokenizer Make(Action<BertOptions> configure)
    {
        var vocab = Words.Select((w, i) => (w, i)).ToDictionary(x => x.w, x => x.i);
        var opt = new BertOptions();
        configure(opt);
        return new BertTokenizer(vocab, new SpecialTokens { Unk = "[UNK]", Cls = "[CLS]", Sep = "[SEP]", Pad = "[PAD]", Mask = "[MASK]" }, opt);
    }

    [Fact]
    public void Greedy_longest_match_first_with_continuations()
    {
        var t = Make(_ => { });
        Assert.Equal(["hello"], t.Tokenize("hello"));
        Assert.Equal(["hel", "##o"], t.Tokenize("helo"));
        Assert.Equal(["hello", "##o", "##o"], t.Tokenize("hellooo"));
        Assert.Equal(["[UNK]"], t.Tokenize("helx"));        // one unknown piece makes the whole word [UNK]
        Assert.Equal(["hello", ",", "[UNK]", "!"], t.Tokenize("HELLO,world!"));
    }

    [Fact]
    public void Words_longer_than_max_input_chars_are_unk()
    {
        var t = Make(o => o.MaxInputCharsPerWord = 5);
        Assert.Equal(["[UNK]"], t.Tokenize("aaaaaa"));
        Assert.Equal(["a", "##a", "##a", "##a", "##a"], t.Tokenize("aaaaa"));
    }

    [Fact]
    public void Accent_and_case_options()
    {
        Assert.Equal(["cafe"], Make(_ => { }).Tokenize("Café"));                                      // uncased strips accents
        Assert.Equal(["café"], Make(o => o.StripAccents = false).Tokenize("Café"));                   // lower, keep accents
        Assert.Equal(["Cafe"], Make(o => { o.DoLowerCase = false; o.StripAccents = true; }).Tokenize("Café"));
        Assert.Equal(["[UNK]"], Make(o => o.DoLowerCase = false).Tokenize("Café"));                   // cased: "Café" not in vocab
        // decomposed input is recomposed (NFC) before lookup
        Assert.Equal(["café"], Make(o => o.StripAccents = false).Tokenize("Cafe\u0301"));
    }

    [Fact]
    public void Chinese_characters_are_split_unless_disabled()
    {
        Assert.Equal(["日", "本"], Make(_ => { }).Tokenize("日本"));
        Assert.Equal(["日", "##本"], Make(o => o.TokenizeChineseChars = false).Tokenize("日本"));
    }

    [Fact]
    public void Never_split_tokens_bypass_lowercasing_punctuation_and_wordpiece()
    {
        var t = Make(o => { o.DoLowerCase = false; o.NeverSplit.Add("[FOO]"); });
        Assert.Equal(["hello", "[FOO]"], t.Tokenize("hello [FOO]"));
        Assert.Equal(19, t.Encode("[FOO]", addSpecialTokens: false).Ids[0]);
        // uncased: HF's tokenize() lower-cases everything but the special tokens BEFORE the basic tokenizer, so a
        // never_split entry with capitals no longer matches and is split ("[", "foo", "]", none in this vocab)
        var lower = Make(o => o.NeverSplit.Add("[FOO]"));
        Assert.Equal(["hello", "[UNK]", "[UNK]", "[UNK]"], lower.Tokenize("hello [FOO]"));
    }

    [Fact]
    public void Decode_joins_continuations_and_cleans_up_spaces()
    {
        var t = Make(_ => { });
        var ids = t.Encode("hellooo, hello!").Ids;
        Assert.Equal("[CLS] hellooo, hello! [SEP]", t.Decode(ids));
        Assert.Equal("hellooo, hello!", t.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("hellooo , hello !", t.Decode(ids, skipSpecialTokens: true, cleanUpTokenizationSpaces: false));
    }
}
