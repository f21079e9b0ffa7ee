using System.Text;
using Vlm.Tokenizers.Text;

namespace Vlm.Tokenizers.Tests;

public class TokenizerBehaviourTests
{
    private static readonly Lazy<TokenizerBase> Roberta = new(() => AutoTokenizer.FromFolder(FixtureCasesTests.Dir("roberta")));
    private static readonly Lazy<TokenizerBase> BertUncased = new(() => AutoTokenizer.FromFolder(FixtureCasesTests.Dir("bert_uncased")));

    // ---- Unicode tables against CPython 3.11 values (from gen_unicode_tables.py's Python) ----------------

    [Theory]
    [InlineData("e\u0301 caf\u00e9", "\u00e9 caf\u00e9", "e\u0301 cafe\u0301")]
    [InlineData("\u00c5ngstr\u00f6m", "\u00c5ngstr\u00f6m", "A\u030angstro\u0308m")]
    [InlineData("\u1e9b\u0323", "\u1e9b\u0323", "\u017f\u0323\u0307")]
    [InlineData("\ud55c\uad6d\uc5b4", "\ud55c\uad6d\uc5b4", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165")]
    [InlineData("\u1100\u1161\u11a8", "\uac01", "\u1100\u1161\u11a8")]
    [InlineData("a\u0323\u0302", "\u1ead", "a\u0323\u0302")]
    [InlineData("\ufb01 \u01c4", "\ufb01 \u01c4", "\ufb01 \u01c4")]
    [InlineData("\u0344", "\u0308\u0301", "\u0308\u0301")]
    [InlineData("\u0958", "\u0915\u093c", "\u0915\u093c")]
    [InlineData("\u00c4\u0301", "\u00c4\u0301", "A\u0308\u0301")]
    public void Nfc_and_nfd_match_python(string input, string nfc, string nfd)
    {
        Assert.Equal(nfc, UnicodeInfo.Normalize(input, compose: true));
        Assert.Equal(nfd, UnicodeInfo.Normalize(input, compose: false));
    }

    [Fact]
    public void Python_lower_uses_the_full_mapping()
    {
        var l = new List<int>();
        UnicodeInfo.AppendLower(0x130, l);
        Assert.Equal([0x69, 0x307], l);
        l.Clear();
        UnicodeInfo.AppendLower(0x10400, l); // Deseret, outside the BMP
        Assert.Equal([0x10428], l);
        Assert.Equal(UCat.Mn, UnicodeInfo.Category(0x301));
        Assert.Equal(UCat.So, UnicodeInfo.Category(0x1F600));
        Assert.True(UnicodeInfo.IsPythonSpace(0x1C));   // str.isspace() but ...
        Assert.False(UnicodeInfo.IsWhiteSpaceProperty(0x1C)); // ... not regex \s
    }

    // ---- GPT-2 pre-tokenizer --------------------------------------------------------------------------

    [Theory]
    [InlineData("Hello world", new[] { "Hello", " world" })]
    [InlineData("  a", new[] { " ", " a" })]
    [InlineData("a  ", new[] { "a", "  " })]
    [InlineData("a \n b", new[] { "a", " \n", " b" })]
    [InlineData("x\ny", new[] { "x", "\n", "y" })]
    [InlineData("it's ''s 're", new[] { "it", "'s", " ''", "s", " '", "re" })]
    [InlineData("a1b 22 !?", new[] { "a", "1", "b", " 22", " !?" })]
    [InlineData("e\u0301t\u00e9", new[] { "e", "\u0301", "t\u00e9" })]
    [InlineData("\ud83d\ude00\ud83d\ude00 x", new[] { "\ud83d\ude00\ud83d\ude00", " x" })]
    public void Pretokenizer_matches_the_gpt2_regex(string text, string[] expected)
        => Assert.Equal(expected, Gpt2PreTokenizer.Split(text));

    // ---- offsets --------------------------------------------------------------------------------------

    [Fact]
    public void Bpe_offsets_point_into_the_original_text()
    {
        var toks = Roberta.Value.TokenizeWithOffsets("hello world");
        Assert.Equal([(0, 5), (5, 11)], toks.Select(t => (t.Start, t.End)));
        var r = (ByteLevelBpeTokenizer)AutoTokenizer.FromFolder(FixtureCasesTests.Dir("roberta"));
        r.AddPrefixSpace = true;
        var p = r.TokenizeWithOffsets("hi <mask>");
        Assert.Equal("Ġhi", p[0].Text);
        Assert.Equal((0, 2), (p[0].Start, p[0].End));   // the added prefix space maps to nothing
        Assert.Equal("<mask>", p[^1].Text);
        Assert.Equal((3, 9), (p[^1].Start, p[^1].End));
        // a 4-byte emoji split into several byte-level tokens: every piece spans the whole character
        var e = Roberta.Value.TokenizeWithOffsets("a\ud83d\ude00");
        Assert.All(e.Skip(1), t => Assert.Equal((1, 3), (t.Start, t.End)));
    }

    [Fact]
    public void Wordpiece_offsets_survive_lowercasing_and_accent_stripping()
    {
        var toks = BertUncased.Value.TokenizeWithOffsets("Caf\u00e9, OK");
        var spans = toks.Select(t => (t.Text, t.Start, t.End)).ToList();
        // every token's span covers exactly the characters it came from
        foreach (var (text, s, e) in spans)
            Assert.Equal(text.Replace("##", ""), UnicodeInfo.Normalize("Caf\u00e9, OK"[s..e].ToLowerInvariant(), false).Replace("\u0301", ""));
        Assert.Equal((4, 5), (spans.First(t => t.Text == ",").Start, spans.First(t => t.Text == ",").End));
    }

    [Fact]
    public void Encode_offsets_and_sequence_ids_for_pairs()
    {
        var enc = BertUncased.Value.Encode("a cat", "a dog");
        Assert.Equal(-1, enc.SequenceIds[0]);
        Assert.Equal((0, 0), enc.Offsets[0]);
        int firstB = Array.IndexOf(enc.SequenceIds, 1);
        Assert.Equal((0, 1), enc.Offsets[firstB]);
        Assert.Equal(1, enc.TypeIds[firstB]);
        Assert.Equal(1, enc.SpecialTokensMask[^1]);
    }

    // ---- truncation / padding -------------------------------------------------------------------------

    [Fact]
    public void Longest_first_truncation_trims_the_longer_sequence_and_pair_on_ties()
    {
        var t = BertUncased.Value;
        var a = t.Tokenize("a photo of a cat sitting on a mat").Count;
        var b = t.Tokenize("what").Count;
        var enc = t.Encode("a photo of a cat sitting on a mat", "what", maxLength: 3 + b + 2, truncation: Truncation.LongestFirst);
        Assert.Equal(3 + b + 2, enc.Length);
        Assert.Equal(b + 1, enc.TypeIds.Count(x => x == 1));
        int na = t.Tokenize("a cat").Count;
        var only2 = t.Encode("a cat", "what is the man holding", maxLength: na + 3 + 2, truncation: Truncation.OnlySecond);
        Assert.Equal(na + 3 + 2, only2.Length);
        Assert.Equal(t.Tokenize("a cat").Count, only2.SequenceIds.Count(x => x == 0));
        Assert.True(a > 3);
    }

    [Fact]
    public void Max_length_padding_pads_on_the_right_with_zero_mask()
    {
        var enc = Roberta.Value.Encode("hi", maxLength: 6, padding: Padding.MaxLength);
        Assert.Equal([0, 0, 0, 1, 1, 1], enc.Ids.Skip(0).Select((x, i) => i < 3 ? 0L : x));
        Assert.Equal([1, 1, 1, 0, 0, 0], enc.AttentionMask);
    }

    [Fact]
    public void Unpadded_batch_of_different_lengths_is_a_clear_error()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Roberta.Value.EncodeBatch(["a", "a b c"], padding: Padding.None));
        Assert.Contains("EncodeBatch: sequence", ex.Message);
    }

    // ---- bad input ------------------------------------------------------------------------------------

    [Fact]
    public void Invalid_utf8_bytes_become_replacement_characters()
    {
        byte[] bad = [(byte)'a', 0xFF, (byte)'b', 0xE2, 0x82, (byte)'c']; // lone 0xFF, truncated 3-byte sequence
        var enc = Roberta.Value.EncodeUtf8(bad);
        var expected = Roberta.Value.Encode("a\ufffdb\ufffdc");
        Assert.Equal(expected.Ids, enc.Ids);
        Assert.Equal("a\ufffdb\ufffdc", Roberta.Value.Decode(enc.Ids, skipSpecialTokens: true));
        // decoding ids whose bytes are not valid UTF-8 (half an emoji) also replaces, like errors="replace"
        var half = Roberta.Value.Encode("\ud83d\ude00", addSpecialTokens: false).Ids.Take(1).ToArray();
        Assert.Equal("\ufffd", Roberta.Value.Decode(half));
    }

    [Fact]
    public void Unpaired_surrogates_are_treated_as_U_FFFD()
    {
        var lone = Roberta.Value.Encode("x\ud800y\udc00");
        Assert.Equal(Roberta.Value.Encode("x\ufffdy\ufffd").Ids, lone.Ids);
        var bert = BertUncased.Value.Tokenize("x\ud800y"); // BERT drops U+FFFD like HF drops a lone surrogate (category Cs)
        Assert.Equal(BertUncased.Value.Tokenize("xy"), bert);
    }

    [Fact]
    public void Empty_string_gives_only_the_template()
    {
        Assert.Empty(Roberta.Value.Tokenize(""));
        Assert.Equal([0L, 2L], Roberta.Value.Encode("").Ids);
        Assert.Equal([2L, 3L], BertUncased.Value.Encode("").Ids);
        Assert.Equal("", Roberta.Value.Decode(Array.Empty<long>()));
    }

    [Fact]
    public void Megabyte_inputs_are_linear_and_do_not_overflow_the_stack()
    {
        // one 1 MB pre-token (no spaces) takes the heap BPE path; a 1 MB mixed text the cached path
        var word = new string('a', 1 << 20);
        var toks = Roberta.Value.Tokenize(word);
        Assert.Equal(word, string.Concat(toks));
        var sb = new StringBuilder();
        while (sb.Length < 1 << 20) sb.Append("The quick brown fox, 12 jumps; über café \ud83d\ude00 naïve.\n");
        var text = sb.ToString();
        var ids = Roberta.Value.Encode(text, addSpecialTokens: false).Ids;
        Assert.Equal(text, Roberta.Value.Decode(ids));
        var bert = BertUncased.Value.Tokenize(text[..(1 << 18)]);
        Assert.NotEmpty(bert);
    }

    [Fact]
    public void Heap_bpe_equals_hf_literal_bpe_on_random_words()
    {
        var tok = (ByteLevelBpeTokenizer)Roberta.Value;
        var rng = new Random(1234);
        string alphabet = "aaabbbeeettthhsss ing'!é日";
        for (int trial = 0; trial < 300; trial++)
        {
            int len = rng.Next(1, 120);
            var s = new string(Enumerable.Range(0, len).Select(_ => alphabet[rng.Next(alphabet.Length)]).ToArray());
            var bytes = System.Text.Encoding.UTF8.GetBytes(s);
            Assert.Equal(tok.BpeSymbols(bytes, heap: false), tok.BpeSymbols(bytes, heap: true));
        }
    }

    // ---- files ----------------------------------------------------------------------------------------

    [Fact]
    public void Missing_and_malformed_files_name_the_file_and_line()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-tok-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": 1,\n \"ab\": }");
            File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\na b\nabc\n");
            var ex = Assert.Throws<TokenizerFileException>(() => AutoTokenizer.FromFolder(dir));
            Assert.EndsWith("vocab.json", ex.File);
            Assert.Equal(2, ex.Line);
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "{\"a\": 0, \"b\": 1, \"ab\": 2}");
            var m = Assert.Throws<TokenizerFileException>(() => AutoTokenizer.FromFolder(dir));
            Assert.EndsWith("merges.txt", m.File);
            Assert.Equal(3, m.Line);
            Assert.Contains("merges.txt:3", m.Message);
            File.Delete(Path.Combine(dir, "merges.txt"));
            File.Delete(Path.Combine(dir, "vocab.json"));
            var none = Assert.Throws<TokenizerFileException>(() => AutoTokenizer.FromFolder(dir));
            Assert.Contains("vocab.json", none.Message);
            var missing = Assert.Throws<TokenizerFileException>(() => AutoTokenizer.LoadMerges(Path.Combine(dir, "nope.txt")));
            Assert.Contains("nope.txt", missing.Message);
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "[1, 2]");
            Assert.Contains("vocab.json", Assert.Throws<TokenizerFileException>(() => AutoTokenizer.LoadVocabJson(Path.Combine(dir, "vocab.json"))).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Decode_of_an_id_outside_the_vocabulary_is_a_clear_error_for_bpe_and_unk_for_bert()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Roberta.Value.Decode([0L, 999999L]));
        Assert.Equal("[UNK]", BertUncased.Value.Decode([999999L]));
    }

    [Fact]
    public void Added_token_flags_follow_hf_slow_semantics()
    {
        // <mask> has lstrip: the space before it disappears; a single_word token only matches whole words
        var t = Roberta.Value;
        Assert.Equal(["a", "<mask>"], t.Tokenize("a   <mask>"));
        var r = (ByteLevelBpeTokenizer)AutoTokenizer.FromFolder(FixtureCasesTests.Dir("roberta"));
        r.AddTokens([new AddedToken("cat", 50261, Special: false, SingleWord: true)]);
        Assert.Contains("cat", r.Tokenize("a cat"));
        Assert.Contains(50261L, r.Encode("a cat").Ids);
        Assert.DoesNotContain(50261L, r.Encode("concat").Ids); // glued back onto "con" and run through BPE
        // non-special added tokens are decoded as their own sub-texts joined by spaces (HF legacy behaviour):
        // "a " + "cat" -> "a  cat", exactly what the slow RobertaTokenizer returns
        Assert.Equal(["a", "Ġ", "cat"], r.Tokenize("a cat"));
        Assert.Equal("a  cat", r.Decode(r.Encode("a cat", addSpecialTokens: false).Ids));
    }
}
