// Runs a BLIP reference-fixture folder (`case.json` + HF config/weights + inputs.safetensors) the way the reference
// generator called HF transformers v4.47.1 (forward calls and greedy `generate()` with output_scores), returning the
// outputs under the fixture's names.
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.Generation;

namespace Vlm.Models.Blip;

public static partial class BlipCases
{
    /// <summary>True when <paramref name="folder"/> holds a BLIP case (class transformers.BlipFor*).</summary>
    public static bool Handles(string folder)
    {
        var cj = Path.Combine(folder, "case.json");
        if (!File.Exists(cj)) return false;
        using var doc = JsonDocument.Parse(File.ReadAllText(cj));
        return doc.RootElement.TryGetProperty("class", out var c) && c.ValueKind == JsonValueKind.String
            && (c.GetString() ?? "").StartsWith("transformers.BlipFor", StringComparison.Ordinal);
    }

    /// <summary>Every call of the case (eval mode, no grad), then the generation calls it records.</summary>
    public static Dictionary<string, Tensor> Run(string folder, bool useCache = true)
    {
        var path = Path.Combine(folder, "case.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"no case.json in {folder}", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        string cls = root.GetProperty("class").GetString() ?? "";
        using var inputs = SafeTensorsFile.Open(Path.Combine(folder, "inputs.safetensors"));
        Tensor In(string argValue)
        {
            var m = InputRef().Match(argValue);
            if (!m.Success) throw new InvalidDataException($"{folder}: argument '{argValue}' is not an <inputs:name> reference");
            return inputs.Load(m.Groups[1].Value);
        }
        var calls = new List<(string prefix, Dictionary<string, string> args)>();
        if (root.TryGetProperty("calls", out var cs))
            foreach (var c in cs.EnumerateArray())
                calls.Add((c.GetProperty("output_prefix").GetString() ?? "", ParseArgs(c.GetProperty("call").GetString() ?? "")));
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var _ = Tensor.NoGrad();
        switch (cls)
        {
            case "transformers.BlipForImageTextRetrieval":
            {
                var model = BlipForImageTextRetrieval.FromFolder(folder);
                foreach (var (prefix, a) in calls)
                {
                    var (score, image, text) = model.Forward(In(a["input_ids"]), a.TryGetValue("attention_mask", out var am) ? In(am) : null,
                        In(a["pixel_values"]), Flag(a, "use_itm_head", true), Flag(a, "interpolate_pos_encoding", false));
                    string p = Pre(prefix);
                    result[p + "itm_score"] = score; result[p + "last_hidden_state"] = image; result[p + "question_embeds"] = text;
                }
                break;
            }
            case "transformers.BlipForQuestionAnswering":
            {
                var model = BlipForQuestionAnswering.FromFolder(folder);
                foreach (var (prefix, a) in calls)
                {
                    var (loss, image) = model.Forward(In(a["input_ids"]), a.TryGetValue("attention_mask", out var am) ? In(am) : null, In(a["pixel_values"]),
                        In(a["labels"]), a.TryGetValue("decoder_attention_mask", out var dm) ? In(dm) : null, Flag(a, "interpolate_pos_encoding", false));
                    string p = Pre(prefix);
                    result[p + "loss"] = loss; result[p + "image_embeds"] = image; result[p + "last_hidden_state"] = image;
                }
                if (root.TryGetProperty("generation", out var g) && g.TryGetProperty("call", out var gc))
                {
                    var ga = ParseArgs(gc.GetString() ?? "", "model.generate");
                    var r = model.Generate(inputs.Load("input_ids"), inputs.Load("attention_mask"), inputs.Load("pixel_values"), Options(ga, useCache));
                    result["generated_ids"] = r.Sequences;
                    for (int i = 0; i < r.Scores.Count; i++) result[$"generated_scores.{i}"] = r.Scores[i];
                }
                break;
            }
            case "transformers.BlipForConditionalGeneration":
            {
                var model = BlipForConditionalGeneration.FromFolder(folder);
                foreach (var (prefix, a) in calls)
                {
                    var (logits, loss, image) = model.Forward(In(a["pixel_values"]), In(a["input_ids"]), a.TryGetValue("attention_mask", out var am) ? In(am) : null,
                        a.TryGetValue("labels", out var lb) ? In(lb) : null, Flag(a, "interpolate_pos_encoding", false));
                    string p = Pre(prefix);
                    result[p + "logits"] = logits; result[p + "image_embeds"] = image; result[p + "last_hidden_state"] = image;
                    if (loss != null) result[p + "loss"] = loss;
                }
                if (root.TryGetProperty("generation", out var g))
                {
                    foreach (var (key, prefix, prompted) in new[] { ("unconditional", "generate_unconditional", false), ("prompted", "generate_prompted", true) })
                    {
                        if (!g.TryGetProperty(key, out var desc)) continue;
                        var opts = Options(ParseArgs(GenerateCall().Match(desc.GetString() ?? "").Value, "model.generate"), useCache);
                        var r = model.Generate(inputs.Load("pixel_values"), prompted ? inputs.Load("prompt_input_ids") : null,
                            prompted ? inputs.Load("prompt_attention_mask") : null, opts);
                        result[prefix + ".ids"] = r.Sequences;
                        for (int i = 0; i < r.Scores.Count; i++) result[$"{prefix}.scores.{i}"] = r.Scores[i];
                    }
                }
                break;
            }
            default:
                throw new NotSupportedException($"{folder}: BLIP class '{cls}' is not implemented (have BlipForImageTextRetrieval, BlipForQuestionAnswering, BlipForConditionalGeneration)");
        }
        return result;
    }

    private static string Pre(string prefix) => prefix.Length == 0 ? "" : prefix + ".";

    private static bool Flag(Dictionary<string, string> a, string key, bool def) =>
        !a.TryGetValue(key, out var v) ? def : v switch
        {
            "True" => true,
            "False" => false,
            _ => throw new InvalidDataException($"argument {key}={v} is not True/False"),
        };

    /// <summary>HF generate() keyword arguments this runner understands (the rest must be absent).</summary>
    private static GenerationOptions Options(Dictionary<string, string> a, bool useCache)
    {
        var o = new GenerationOptions { UseCache = useCache };
        foreach (var (k, v) in a)
        {
            if (v.StartsWith('<')) continue;   // tensor inputs
            o = k switch
            {
                "max_new_tokens" => o with { MaxNewTokens = BlipParse.Int(v) },
                "max_length" => o with { MaxLength = BlipParse.Int(v) },
                "min_length" => o with { MinLength = BlipParse.Int(v) },
                "num_beams" => o with { NumBeams = BlipParse.Int(v) },
                "do_sample" => o with { DoSample = v == "True" },
                "repetition_penalty" => o with { RepetitionPenalty = float.Parse(v, CultureInfo.InvariantCulture) },
                "length_penalty" => o with { LengthPenalty = float.Parse(v, CultureInfo.InvariantCulture) },
                "..." => o,
                _ => throw new NotSupportedException($"generate() argument '{k}={v}' is not supported by the BLIP case runner"),
            };
        }
        return o;
    }

    /// <summary>"fn(a=&lt;inputs:x&gt;, b=True, ...)" → {a: "&lt;inputs:x&gt;", b: "True", "...": "..."}.</summary>
    internal static Dictionary<string, string> ParseArgs(string call, string fn = "model")
    {
        call = call.Trim();
        if (!call.StartsWith(fn + "(", StringComparison.Ordinal) || !call.EndsWith(')'))
            throw new InvalidDataException($"cannot parse call '{call}' (expected {fn}(...))");
        var args = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in call[(fn.Length + 1)..^1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part == "...") { args["..."] = "..."; continue; }
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new InvalidDataException($"cannot parse argument '{part}' of call '{call}'");
            args[part[..eq].Trim()] = part[(eq + 1)..].Trim();
        }
        return args;
    }

    [GeneratedRegex(@"^<(?:inputs:)?([^>]+)>$")]
    private static partial Regex InputRef();

    [GeneratedRegex(@"model\.generate\([^)]*\)")]
    private static partial Regex GenerateCall();
}
