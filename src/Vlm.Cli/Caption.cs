using System.CommandLine;
using System.Globalization;
using Vlm.Server;
using Vlm.Tokenizers;
using Vlm.Vision;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm caption &lt;image&gt; --model &lt;folder&gt; [--prompt text] [--beams N | --top-p P]</c>: captions an image with a
/// HF BlipForConditionalGeneration folder (config.json, weights, tokenizer files, optional preprocessor_config.json).
/// Greedy by default; beam search or nucleus sampling on request.
/// </summary>
public static class Caption
{
    public static Command Build()
    {
        var image = new Argument<string>("image") { Description = "Image file (PNG, JPEG, ...)" };
        var model = new Option<string?>("--model", "-m") { Description = "HF BLIP captioning folder (default: $VLM_BLIP_MODEL)" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text the caption continues (e.g. \"a picture of\")" };
        var beams = new Option<int?>("--beams") { Description = "Beam search with N beams" };
        var topP = new Option<float?>("--top-p") { Description = "Nucleus sampling with this top-p" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate", DefaultValueFactory = _ => 30 };
        var seed = new Option<ulong>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0UL };
        var cmd = new Command("caption", "Caption an image with a BLIP model") { image, model, prompt, beams, topP, maxNew, seed };
        cmd.SetAction(parse =>
        {
            var folder = parse.GetValue(model) ?? Environment.GetEnvironmentVariable("VLM_BLIP_MODEL");
            if (string.IsNullOrEmpty(folder)) return Cli.Fail("caption: no model folder; pass --model or set VLM_BLIP_MODEL");
            var nb = parse.GetValue(beams); var p = parse.GetValue(topP);
            if (nb != null && p != null) return Cli.Fail("caption: choose either --beams or --top-p, not both");
            if (nb is < 1) return Cli.Fail($"caption: --beams must be ≥ 1, got {nb}");
            if (p is <= 0f or > 1f) return Cli.Fail($"caption: --top-p must be in (0, 1], got {p?.ToString(CultureInfo.InvariantCulture)}");
            try
            {
                Console.WriteLine(Run(parse.GetValue(image)!, folder, parse.GetValue(prompt), nb, p, parse.GetValue(maxNew), parse.GetValue(seed)));
                return 0;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or NotSupportedException or UnauthorizedAccessException or TokenizerFileException)
            {
                return Cli.Fail("caption: " + e.Message);
            }
        });
        return cmd;
    }

    public static string Run(string imagePath, string folder, string? prompt, int? beams, float? topP, int maxNewTokens, ulong seed)
    {
        if (!File.Exists(imagePath)) throw new FileNotFoundException($"image not found: {imagePath}", imagePath);
        var captioner = BlipCaptioner.Open(folder);
        // generation_config.json (when the folder has one) first, as HF generate() does; the command line overrides.
        return captioner.Caption(ImageDecoder.Decode(imagePath), prompt, b => b with
        {
            MaxNewTokens = maxNewTokens, NumBeams = beams ?? b.NumBeams, DoSample = topP != null || b.DoSample, TopP = topP ?? b.TopP, Seed = seed,
        });
    }
}
