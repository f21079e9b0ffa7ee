// Reads HF `generation_config.json` (transformers v4.47.1 GenerationConfig field names) into GenerationOptions.
using System.Text.Json;

namespace Vlm.Models.Generation;

public static class GenerationConfigFile
{
    /// <summary>Settings that change decoding in ways this port does not implement; present with a non-default
    /// value they are an error rather than silently ignored.</summary>
    private static readonly Dictionary<string, string> Unsupported = new(StringComparer.Ordinal)
    {
        ["no_repeat_ngram_size"] = "0", ["encoder_no_repeat_ngram_size"] = "0", ["num_beam_groups"] = "1",
        ["diversity_penalty"] = "0.0", ["bad_words_ids"] = "null", ["force_words_ids"] = "null", ["typical_p"] = "1.0",
        ["epsilon_cutoff"] = "0.0", ["eta_cutoff"] = "0.0", ["penalty_alpha"] = "null", ["num_return_sequences"] = "1",
        ["forced_bos_token_id"] = "null", ["forced_eos_token_id"] = "null", ["suppress_tokens"] = "null",
        ["begin_suppress_tokens"] = "null", ["sequence_bias"] = "null", ["min_p"] = "null", ["constraints"] = "null",
    };

    /// <summary>Options from <paramref name="path"/> on top of <paramref name="start"/> (HF defaults when null).</summary>
    public static GenerationOptions Load(string path, GenerationOptions? start = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"generation config not found: {path}", path);
        return FromJson(File.ReadAllText(path), path, start);
    }

    public static GenerationOptions FromJson(string json, string origin = "<generation_config>", GenerationOptions? start = null)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new InvalidDataException($"{origin}: not valid JSON: {e.Message}"); }
        using (doc)
        {
            var o = start ?? new GenerationOptions();
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{origin}: not a JSON object");
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                var v = p.Value;
                if (v.ValueKind == JsonValueKind.Null) continue;
                InvalidDataException Bad(string want) => new($"{origin}: {p.Name} = {v.GetRawText()} is not {want}");
                int Int() => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Bad("an integer");
                float Num() => v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : throw Bad("a number");
                bool Bool() => v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Bad("a boolean") };
                if (Unsupported.TryGetValue(p.Name, out var def))
                {
                    string raw = v.GetRawText();
                    bool isDefault = raw == def || (v.ValueKind == JsonValueKind.Number && double.TryParse(def, System.Globalization.CultureInfo.InvariantCulture, out var d) && v.GetDouble() == d);
                    if (!isDefault) throw new InvalidDataException($"{origin}: {p.Name} = {raw} is not supported by Vlm's generator");
                    continue;
                }
                o = p.Name switch
                {
                    "max_length" => o with { MaxLength = Int() },
                    "max_new_tokens" => o with { MaxNewTokens = Int() },
                    "min_length" => o with { MinLength = Int() },
                    "min_new_tokens" => o with { MinNewTokens = Int() },
                    "do_sample" => o with { DoSample = Bool() },
                    "num_beams" => o with { NumBeams = Int() },
                    "temperature" => o with { Temperature = Num() },
                    "top_k" => o with { TopK = Int() },
                    "top_p" => o with { TopP = Num() },
                    "repetition_penalty" => o with { RepetitionPenalty = Num() },
                    "length_penalty" => o with { LengthPenalty = Num() },
                    "early_stopping" => o with
                    {
                        EarlyStopping = v.ValueKind switch
                        {
                            JsonValueKind.True => EarlyStopping.True,
                            JsonValueKind.False => EarlyStopping.False,
                            JsonValueKind.String when v.GetString() == "never" => EarlyStopping.Never,
                            _ => throw Bad("true, false or \"never\""),
                        },
                    },
                    "eos_token_id" => o with
                    {
                        EosTokenIds = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(x => x.TryGetInt32(out int i) ? i : throw Bad("an id or a list of ids")).ToArray() : [Int()],
                    },
                    "pad_token_id" => o with { PadTokenId = Int() },
                    "use_cache" => o with { UseCache = Bool() },
                    _ => o,   // ids and flags without decoding semantics here (bos_token_id, decoder_start_token_id, output_scores, ...)
                };
            }
            return o;
        }
    }
}
