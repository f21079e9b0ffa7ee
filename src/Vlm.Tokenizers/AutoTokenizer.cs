using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vlm.Tokenizers;

/// <summary>
/// Loads a tokenizer from an HF folder: <c>tokenizer_config.json</c> (<c>tokenizer_class</c>, special tokens,
/// <c>added_tokens_decoder</c>, options) and <c>special_tokens_map.json</c>, with <c>vocab.json</c> +
/// <c>merges.txt</c> (byte-level BPE), <c>vocab.txt</c> (WordPiece) or <c>tokenizer.json</c>.
/// </summary>
public static class AutoTokenizer
{
    public static TokenizerBase FromFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"tokenizer folder not found: {dir}");
        var cfgPath = Path.Combine(dir, "tokenizer_config.json");
        var cfg = File.Exists(cfgPath) ? ReadJson(cfgPath) as JsonObject ?? throw new TokenizerFileException(cfgPath, null, "expected a JSON object") : new JsonObject();
        var mapPath = Path.Combine(dir, "special_tokens_map.json");
        var map = File.Exists(mapPath) ? ReadJson(mapPath) as JsonObject : null;
        string cls = cfg["tokenizer_class"]?.GetValue<string>() ?? "";
        bool hasBpe = File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt"));
        bool hasWp = File.Exists(Path.Combine(dir, "vocab.txt"));
        bool hasJson = File.Exists(Path.Combine(dir, "tokenizer.json"));
        bool wantsBert = cls.Contains("Bert", StringComparison.Ordinal) && !cls.Contains("Roberta", StringComparison.Ordinal)
            || cls.Contains("Blip", StringComparison.Ordinal) || cls.Contains("Albef", StringComparison.Ordinal);
        bool wantsBpe = cls.Contains("Roberta", StringComparison.Ordinal) || cls.Contains("GPT2", StringComparison.Ordinal)
            || cls.Contains("Bart", StringComparison.Ordinal) || cls.Contains("BridgeTower", StringComparison.Ordinal);

        var specials = ReadSpecials(cfg, map);
        var added = ReadAddedTokens(cfg, map);
        TokenizerBase tok;
        if ((wantsBpe || !wantsBert) && hasBpe)
        {
            var vocab = LoadVocabJson(Path.Combine(dir, "vocab.json"));
            var merges = LoadMerges(Path.Combine(dir, "merges.txt"));
            bool gpt2 = cls.Contains("GPT2", StringComparison.Ordinal);
            if (cls.Length == 0 && specials.Cls == null) DefaultRobertaSpecials(specials);
            tok = new ByteLevelBpeTokenizer(vocab, merges, specials, added, cfg["add_prefix_space"]?.GetValue<bool>() ?? false, gpt2 ? "none" : "roberta");
        }
        else if ((wantsBert || !wantsBpe) && hasWp)
        {
            var (vocab, ids) = LoadVocabTxt(Path.Combine(dir, "vocab.txt"));
            if (cls.Length == 0 && specials.Cls == null) DefaultBertSpecials(specials);
            var opt = new BertOptions
            {
                DoLowerCase = cfg["do_lower_case"]?.GetValue<bool>() ?? true,
                DoBasicTokenize = cfg["do_basic_tokenize"]?.GetValue<bool>() ?? true,
                StripAccents = cfg["strip_accents"]?.GetValue<bool?>(),
                TokenizeChineseChars = cfg["tokenize_chinese_chars"]?.GetValue<bool>() ?? true,
            };
            if (cfg["never_split"] is JsonArray ns) foreach (var n in ns) if (n?.GetValue<string>() is string s) opt.NeverSplit.Add(s);
            tok = new BertTokenizer(vocab, specials, opt, added, ids);
        }
        else if (hasJson)
        {
            tok = FromTokenizerJson(Path.Combine(dir, "tokenizer.json"), specials.All().Count > 0 ? specials : null);
        }
        else
        {
            throw new TokenizerFileException(dir, null,
                $"no tokenizer files for tokenizer_class '{cls}': expected vocab.json + merges.txt, vocab.txt or tokenizer.json");
        }
        if (cfg["clean_up_tokenization_spaces"] is JsonNode cu) tok.CleanUpTokenizationSpaces = cu.GetValue<bool>();
        if (cfg["model_max_length"] is JsonValue mml && mml.TryGetValue(out double d) && d < int.MaxValue) tok.ModelMaxLength = (int)d;
        return tok;
    }

    private static void DefaultRobertaSpecials(SpecialTokens s)
    {
        s.Bos ??= "<s>"; s.Eos ??= "</s>"; s.Sep ??= "</s>"; s.Cls ??= "<s>"; s.Unk ??= "<unk>"; s.Pad ??= "<pad>"; s.Mask ??= "<mask>";
    }

    private static void DefaultBertSpecials(SpecialTokens s)
    {
        s.Unk ??= "[UNK]"; s.Sep ??= "[SEP]"; s.Pad ??= "[PAD]"; s.Cls ??= "[CLS]"; s.Mask ??= "[MASK]";
    }

    private static string? TokenContent(JsonNode? n) => n switch
    {
        null => null,
        JsonValue v => v.GetValue<string>(),
        JsonObject o => o["content"]?.GetValue<string>(),
        _ => null,
    };

    private static SpecialTokens ReadSpecials(JsonObject cfg, JsonObject? map)
    {
        var s = new SpecialTokens();
        string? Get(string key) => TokenContent(cfg[key]) ?? TokenContent(map?[key]);
        s.Bos = Get("bos_token"); s.Eos = Get("eos_token"); s.Unk = Get("unk_token"); s.Sep = Get("sep_token");
        s.Pad = Get("pad_token"); s.Cls = Get("cls_token"); s.Mask = Get("mask_token");
        var extra = cfg["additional_special_tokens"] as JsonArray ?? map?["additional_special_tokens"] as JsonArray;
        if (extra != null) foreach (var e in extra) if (TokenContent(e) is string c) s.Additional.Add(c);
        return s;
    }

    private static List<AddedToken> ReadAddedTokens(JsonObject cfg, JsonObject? map)
    {
        var list = new List<AddedToken>();
        if (cfg["added_tokens_decoder"] is JsonObject dec)
        {
            foreach (var (k, v) in dec)
            {
                if (v is not JsonObject o || !int.TryParse(k, out int id)) continue;
                list.Add(ParseAdded(o, id));
            }
        }
        return list;
    }

    private static AddedToken ParseAdded(JsonObject o, int id) => new(
        o["content"]?.GetValue<string>() ?? "", id,
        o["special"]?.GetValue<bool>() ?? true,
        o["lstrip"]?.GetValue<bool>() ?? false,
        o["rstrip"]?.GetValue<bool>() ?? false,
        o["single_word"]?.GetValue<bool>() ?? false,
        o["normalized"]?.GetValue<bool>() ?? false);

    // ---- file readers (errors name the file and line) ---------------------------------------------------

    internal static JsonNode ReadJson(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFileException(path, null, "file not found");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false })
                ?? throw new TokenizerFileException(path, null, "empty JSON document");
        }
        catch (JsonException e)
        {
            throw new TokenizerFileException(path, (int?)(e.LineNumber + 1), "malformed JSON: " + e.Message, e);
        }
    }

    /// <summary>HF <c>vocab.json</c>: an object token -> id (streamed: a DOM of 50k entries is slow to build).</summary>
    public static Dictionary<string, int> LoadVocabJson(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFileException(path, null, "file not found");
        var bytes = File.ReadAllBytes(path);
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new TokenizerFileException(path, 1, "expected a JSON object of token -> id");
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string key = reader.GetString()!;
                if (!reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int id) || id < 0)
                    throw new TokenizerFileException(path, LineOf(bytes, reader.TokenStartIndex), $"vocabulary entry '{key}' has no non-negative integer id");
                d[key] = id;
            }
            if (reader.TokenType != JsonTokenType.EndObject) throw new TokenizerFileException(path, LineOf(bytes, reader.TokenStartIndex), "expected a token string or '}'");
            reader.Read(); // anything after the object is an error the reader reports
        }
        catch (JsonException e)
        {
            throw new TokenizerFileException(path, (int?)(e.LineNumber + 1), "malformed JSON: " + e.Message, e);
        }
        return d;
    }

    private static int LineOf(byte[] bytes, long index)
    {
        int line = 1;
        for (long i = 0; i < index && i < bytes.Length; i++) if (bytes[i] == (byte)'\n') line++;
        return line;
    }

    private static Dictionary<string, int> VocabFromJsonObject(JsonObject o, string path)
    {
        var d = new Dictionary<string, int>(o.Count, StringComparer.Ordinal);
        foreach (var (k, v) in o)
        {
            if (v is not JsonValue jv || !jv.TryGetValue(out int id) || id < 0)
                throw new TokenizerFileException(path, null, $"vocabulary entry '{k}' has no non-negative integer id");
            d[k] = id;
        }
        return d;
    }

    /// <summary>
    /// <c>merges.txt</c>: lines "left right"; a first line starting with "#version" and empty lines are skipped
    /// (HF slow drops the first line unconditionally; every HF-written file has the header).
    /// </summary>
    public static List<(string, string)> LoadMerges(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFileException(path, null, "file not found");
        var merges = new List<(string, string)>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new TokenizerFileException(path, lineNo, $"a merge must be two tokens separated by one space, got \"{Truncate(line)}\"");
            merges.Add((parts[0], parts[1]));
        }
        return merges;
    }

    /// <summary>BERT <c>vocab.txt</c>: one token per line, id = line index (HF <c>load_vocab</c>).</summary>
    public static (Dictionary<string, int> Vocab, Dictionary<int, string> IdToToken) LoadVocabTxt(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFileException(path, null, "file not found");
        var text = File.ReadAllText(path);
        var lines = text.Split('\n');
        int n = text.EndsWith('\n') ? lines.Length - 1 : lines.Length;
        if (n == 0) throw new TokenizerFileException(path, 1, "vocabulary is empty");
        var vocab = new Dictionary<string, int>(n, StringComparer.Ordinal);
        var ids = new Dictionary<int, string>(n);
        for (int i = 0; i < n; i++) { vocab[lines[i]] = i; ids[i] = lines[i]; }
        return (vocab, ids);
    }

    private static string Truncate(string s) => s.Length <= 60 ? s : s[..60] + "...";

    // ---- tokenizer.json ----------------------------------------------------------------------------------

    /// <summary>
    /// HF fast-tokenizer file: model BPE (byte-level, with RobertaProcessing / BertProcessing / ByteLevel
    /// post-processors) or WordPiece (BertNormalizer options); run with slow-tokenizer semantics.
    /// </summary>
    public static TokenizerBase FromTokenizerJson(string path, SpecialTokens? specials = null)
    {
        if (ReadJson(path) is not JsonObject root) throw new TokenizerFileException(path, 1, "expected a JSON object");
        var model = root["model"] as JsonObject ?? throw new TokenizerFileException(path, null, "missing 'model'");
        string type = model["type"]?.GetValue<string>() ?? (model["merges"] != null ? "BPE" : "WordPiece");
        var added = new List<AddedToken>();
        if (root["added_tokens"] is JsonArray at)
            foreach (var a in at)
                if (a is JsonObject o) added.Add(ParseAdded(o, o["id"]?.GetValue<int>() ?? throw new TokenizerFileException(path, null, "added token without id")));
        var post = root["post_processor"] as JsonObject;
        string postType = post?["type"]?.GetValue<string>() ?? "";
        string? Pair(string key) => post?[key] is JsonArray arr && arr.Count > 0 ? arr[0]?.GetValue<string>() : null;
        var vocabNode = model["vocab"] as JsonObject ?? throw new TokenizerFileException(path, null, "model.vocab must be an object of token -> id");
        var vocab = VocabFromJsonObject(vocabNode, path);
        if (type == "BPE")
        {
            var merges = new List<(string, string)>();
            if (model["merges"] is JsonArray ma)
            {
                for (int i = 0; i < ma.Count; i++)
                {
                    var m = ma[i];
                    if (m is JsonValue v && v.GetValue<string>().Split(' ') is { Length: 2 } p) merges.Add((p[0], p[1]));
                    else if (m is JsonArray pa && pa.Count == 2) merges.Add((pa[0]!.GetValue<string>(), pa[1]!.GetValue<string>()));
                    else throw new TokenizerFileException(path, null, $"model.merges[{i}] is not \"left right\" or [left, right]");
                }
            }
            var sp = specials ?? new SpecialTokens();
            if (specials == null)
            {
                sp.Cls = Pair("cls"); sp.Sep = Pair("sep");
                if (sp.Cls != null) { sp.Bos = sp.Cls; sp.Eos = sp.Sep; }
                string? unk = model["unk_token"]?.GetValue<string>();
                sp.Unk = unk;
                foreach (var a in added.Where(a => a.Special))
                {
                    if (a.Content.Contains("pad", StringComparison.OrdinalIgnoreCase)) sp.Pad ??= a.Content;
                    else if (a.Content.Contains("mask", StringComparison.OrdinalIgnoreCase)) sp.Mask ??= a.Content;
                    else if (a.Content.Contains("unk", StringComparison.OrdinalIgnoreCase)) sp.Unk ??= a.Content;
                }
            }
            bool prefix = root["pre_tokenizer"]?["add_prefix_space"]?.GetValue<bool>() ?? false;
            string template = postType is "RobertaProcessing" or "BertProcessing" or "TemplateProcessing" && sp.Cls != null ? "roberta" : "none";
            return new ByteLevelBpeTokenizer(vocab, merges, sp, added, prefix, template);
        }
        if (type == "WordPiece")
        {
            var sp = specials ?? new SpecialTokens { Unk = model["unk_token"]?.GetValue<string>() ?? "[UNK]" };
            if (specials == null)
            {
                sp.Cls = Pair("cls") ?? "[CLS]"; sp.Sep = Pair("sep") ?? "[SEP]";
                foreach (var a in added.Where(a => a.Special))
                {
                    if (a.Content.Contains("PAD", StringComparison.OrdinalIgnoreCase)) sp.Pad ??= a.Content;
                    else if (a.Content.Contains("MASK", StringComparison.OrdinalIgnoreCase)) sp.Mask ??= a.Content;
                }
            }
            var norm = root["normalizer"] as JsonObject;
            var opt = new BertOptions
            {
                DoLowerCase = norm?["lowercase"]?.GetValue<bool>() ?? true,
                StripAccents = norm?["strip_accents"]?.GetValue<bool?>(),
                TokenizeChineseChars = norm?["handle_chinese_chars"]?.GetValue<bool>() ?? true,
                MaxInputCharsPerWord = model["max_input_chars_per_word"]?.GetValue<int>() ?? 100,
                ContinuingSubwordPrefix = model["continuing_subword_prefix"]?.GetValue<string>() ?? "##",
            };
            return new BertTokenizer(vocab, sp, opt, added);
        }
        throw new TokenizerFileException(path, null, $"unsupported model type '{type}' (BPE and WordPiece are supported)");
    }
}
