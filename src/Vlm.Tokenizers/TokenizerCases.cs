using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Vlm.Tokenizers;

/// <summary>
/// Recomputes a tokenizer fixture folder's <c>cases.json</c> with Vlm: every field the reference recorded
/// (tokens, ids, masks, type ids, decoded text, pairs, padded batches) is replaced by Vlm's value, so the
/// output has the same shape and can be compared with the reference file key by key.
/// </summary>
public static partial class TokenizerCases
{
    /// <summary>True when <paramref name="folder"/> looks like a tokenizer fixture (cases.json + tokenizer files).</summary>
    public static bool IsTokenizerFolder(string folder) =>
        File.Exists(Path.Combine(folder, "cases.json")) &&
        (File.Exists(Path.Combine(folder, "vocab.json")) || File.Exists(Path.Combine(folder, "vocab.txt")) ||
         File.Exists(Path.Combine(folder, "tokenizer.json")));

    public static string Run(string folder)
    {
        var casesPath = Path.Combine(folder, "cases.json");
        var root = AutoTokenizer.ReadJson(casesPath) as JsonObject ?? throw new TokenizerFileException(casesPath, 1, "expected a JSON object");
        var tok = AutoTokenizer.FromFolder(folder);
        var bpe = tok as ByteLevelBpeTokenizer;

        if (root["cases"] is JsonArray cases)
        {
            foreach (var node in cases)
            {
                if (node is not JsonObject c || c["text"]?.GetValue<string>() is not string text) continue;
                var enc = tok.Encode(text);
                Set(c, "tokens", Strings(tok.Tokenize(text)));
                Set(c, "input_ids", Longs(enc.Ids));
                Set(c, "token_type_ids", Longs(enc.TypeIds));
                Set(c, "attention_mask", Longs(enc.AttentionMask));
                if (bpe != null)
                {
                    // the same tokenizer with add_prefix_space=True (a private instance: toggling is safe here)
                    bool keep = bpe.AddPrefixSpace;
                    bpe.AddPrefixSpace = true;
                    Set(c, "input_ids_add_prefix_space", Longs(bpe.Encode(text).Ids));
                    bpe.AddPrefixSpace = keep;
                }
                Set(c, "decoded", JsonValue.Create(tok.Decode(enc.Ids)));
                Set(c, "decoded_skip_special", JsonValue.Create(tok.Decode(enc.Ids, skipSpecialTokens: true)));
            }
        }
        if (root["pairs"]?["cases"] is JsonArray pairs)
        {
            foreach (var node in pairs)
            {
                if (node is not JsonObject c || c["text"]?.GetValue<string>() is not string a || c["text_pair"]?.GetValue<string>() is not string b) continue;
                var enc = tok.Encode(a, b);
                Set(c, "input_ids", Longs(enc.Ids));
                Set(c, "token_type_ids", Longs(enc.TypeIds));
                Set(c, "attention_mask", Longs(enc.AttentionMask));
            }
        }
        if (root["batch"] is JsonObject batch && batch["texts"] is JsonArray textsNode)
        {
            var texts = textsNode.Select(t => t!.GetValue<string>()).ToList();
            var calls = new List<JsonObject>();
            if (batch["call"] != null) calls.Add(batch);
            foreach (var (_, v) in batch) if (v is JsonObject o && o["call"] != null) calls.Add(o);
            foreach (var call in calls)
            {
                var (padding, truncation, maxLength) = ParseCall(call["call"]!.GetValue<string>());
                var be = tok.EncodeBatch(texts, null, true, maxLength, truncation, padding);
                Set(call, "input_ids", new JsonArray(be.Encodings.Select(e => (JsonNode)Longs(e.Ids)).ToArray()));
                Set(call, "attention_mask", new JsonArray(be.Encodings.Select(e => (JsonNode)Longs(e.AttentionMask)).ToArray()));
                Set(call, "token_type_ids", new JsonArray(be.Encodings.Select(e => (JsonNode)Longs(e.TypeIds)).ToArray()));
            }
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>Parses the recorded Python call, e.g. <c>tokenizer(texts, padding='max_length', truncation=True, max_length=12)</c>.</summary>
    public static (Padding Padding, Truncation Truncation, int? MaxLength) ParseCall(string call)
    {
        var pad = PaddingRx().Match(call);
        var padding = !pad.Success ? Padding.None : pad.Groups[1].Value switch
        {
            "'max_length'" or "\"max_length\"" => Padding.MaxLength,
            "'longest'" or "\"longest\"" or "True" => Padding.Longest,
            _ => Padding.None,
        };
        var tr = TruncRx().Match(call);
        var truncation = !tr.Success ? Truncation.None : tr.Groups[1].Value.Trim('\'', '"') switch
        {
            "True" or "longest_first" => Truncation.LongestFirst,
            "only_first" => Truncation.OnlyFirst,
            "only_second" => Truncation.OnlySecond,
            _ => Truncation.None,
        };
        var ml = MaxLenRx().Match(call);
        return (padding, truncation, ml.Success ? int.Parse(ml.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null);
    }

    // only fields the reference recorded are replaced (type ids are absent for RoBERTa)
    private static void Set(JsonObject o, string key, JsonNode value)
    {
        if (o.ContainsKey(key)) o[key] = value;
    }

    private static JsonArray Strings(IEnumerable<string> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());
    private static JsonArray Longs(IEnumerable<long> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    [GeneratedRegex(@"padding\s*=\s*('[a-z_]+'|""[a-z_]+""|True|False)")]
    private static partial Regex PaddingRx();
    [GeneratedRegex(@"truncation\s*=\s*('[a-z_]+'|""[a-z_]+""|True|False)")]
    private static partial Regex TruncRx();
    [GeneratedRegex(@"max_length\s*=\s*(\d+)")]
    private static partial Regex MaxLenRx();
}
