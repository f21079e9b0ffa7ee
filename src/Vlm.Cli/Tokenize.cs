using System.CommandLine;
using System.Text.Json;
using Vlm.Tokenizers;

namespace Vlm.Cli;

/// <summary><c>vlm tokenize &lt;tokenizer-folder&gt; &lt;text&gt; [--pair B] [--max-length N] [--json]</c>: what a model would see.</summary>
public static class Tokenize
{
    public static Command Build()
    {
        var folder = new Argument<string>("tokenizer") { Description = "Folder with vocab.json + merges.txt, vocab.txt or tokenizer.json (an HF model folder works)" };
        var text = new Argument<string>("text") { Description = "Text to encode" };
        var pair = new Option<string?>("--pair") { Description = "Second sequence (sentence pair)" };
        var maxLen = new Option<int?>("--max-length") { Description = "Truncate to this many tokens (special tokens included)" };
        var noSpecial = new Option<bool>("--no-special-tokens") { Description = "Do not add <s>/</s> or [CLS]/[SEP]" };
        var json = new Option<bool>("--json") { Description = "Print JSON: ids, tokens, attention_mask, token_type_ids, offsets, decoded" };
        var cmd = new Command("tokenize", "Encode text with a tokenizer and show ids, tokens and offsets") { folder, text, pair, maxLen, noSpecial, json };
        cmd.SetAction(pr =>
        {
            var dir = pr.GetValue(folder)!;
            if (!Directory.Exists(dir)) return Cli.Fail($"tokenize: folder not found: {dir}");
            ITokenizer tok;
            try { tok = AutoTokenizer.FromFolder(dir); }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or NotSupportedException or IOException)
            {
                return Cli.Fail($"tokenize: {e.Message}");
            }
            int? max = pr.GetValue(maxLen);
            if (max is <= 0) return Cli.Fail("tokenize: --max-length must be positive");
            var enc = tok.Encode(pr.GetValue(text)!, pr.GetValue(pair), !pr.GetValue(noSpecial), max,
                max is null ? Truncation.None : Truncation.LongestFirst, Padding.None);
            var decoded = tok.Decode(enc.Ids, skipSpecialTokens: true);
            if (pr.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    ids = enc.Ids, tokens = enc.Tokens, attention_mask = enc.AttentionMask, token_type_ids = enc.TypeIds,
                    offsets = enc.Offsets.Select(o => new[] { o.Start, o.End }), decoded,
                }));
                return 0;
            }
            Console.WriteLine($"{"#",4} {"id",8}  {"span",-9} token");
            for (int i = 0; i < enc.Length; i++)
                Console.WriteLine($"{i,4} {enc.Ids[i],8}  {$"{enc.Offsets[i].Start}-{enc.Offsets[i].End}",-9} {enc.Tokens[i]}");
            Console.WriteLine($"{enc.Length} tokens; decoded: {decoded}");
            return 0;
        });
        return cmd;
    }
}
