using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Vlm.Core;
using Vlm.Models.BridgeTower;
using Vlm.Vision;

namespace Vlm.Cli;

/// <summary>
/// Inference commands over an HF BridgeTower folder (<c>--model</c>): <c>itm</c>, <c>vqa</c>, <c>fill-mask</c>, <c>embed</c>.
/// Each prints a readable table, or JSON with <c>--json</c>; bad input is a one-line error and a non-zero exit.
/// </summary>
public static class ModelCommands
{
    internal static Option<string> ModelOption() => new("--model", "-m") { Description = "HF BridgeTower folder (config.json, weights, tokenizer, preprocessor_config.json)", Required = true };

    internal static Option<bool> JsonOption() => new("--json") { Description = "Machine-readable JSON output" };

    /// <summary>Runs <paramref name="body"/>, turning the errors bad input produces into one-line messages.</summary>
    internal static int Guard(string command, Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or NotSupportedException
            or InvalidOperationException or ArgumentException or IOException or DllNotFoundException)
        {
            return Cli.Fail($"{command}: {e.Message.Split('\n')[0]}");
        }
    }

    internal static Image LoadImage(string path) => ImageDecoder.Decode(path).ToRgb();

    public static IEnumerable<Command> All()
    {
        yield return Itm();
        yield return Vqa();
        yield return FillMask();
        yield return Embed();
    }

    private static Command Itm()
    {
        var model = ModelOption(); var json = JsonOption();
        var image = new Option<string>("--image", "-i") { Description = "Image file (PNG, JPEG, BMP, PPM)", Required = true };
        var texts = new Option<string[]>("--text", "-t") { Description = "Caption(s) to score against the image", Required = true, AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("itm", "Image-text matching: probability that each caption describes the image") { model, image, texts, json };
        cmd.SetAction(pr => Guard("itm", () =>
        {
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            var caps = pr.GetValue(texts)!;
            var scores = m.Processor.ItmScores(m.Itm, LoadImage(pr.GetValue(image)!), caps);
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(caps.Select((c, i) => new { text = c, match_probability = scores[i].MatchProbability, match_logit = scores[i].MatchLogit })));
            else
                for (int i = 0; i < caps.Length; i++) Console.WriteLine($"{scores[i].MatchProbability,8:F4}  {caps[i]}");
            return 0;
        }));
        return cmd;
    }

    private static Command Vqa()
    {
        var model = ModelOption(); var json = JsonOption();
        var image = new Option<string>("--image", "-i") { Description = "Image file", Required = true };
        var question = new Option<string>("--question", "-q") { Description = "Question about the image", Required = true };
        var top = new Option<int>("--top") { Description = "How many answers to show", DefaultValueFactory = _ => 5 };
        var cmd = new Command("vqa", "Visual question answering: top answers with probabilities") { model, image, question, top, json };
        cmd.SetAction(pr => Guard("vqa", () =>
        {
            if (string.IsNullOrWhiteSpace(pr.GetValue(question))) return Cli.Fail("vqa: the question is empty");
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            var answers = m.Processor.AnswerQuestion(m.Vqa, LoadImage(pr.GetValue(image)!), pr.GetValue(question)!, Math.Max(1, pr.GetValue(top)));
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(answers.Select(a => new { answer = a.Answer ?? a.Index.ToString(CultureInfo.InvariantCulture), score = a.Score })));
            else
                foreach (var a in answers) Console.WriteLine($"{a.Score,8:F4}  {a.Answer ?? $"#{a.Index}"}");
            return 0;
        }));
        return cmd;
    }

    private static Command FillMask()
    {
        var model = ModelOption(); var json = JsonOption();
        var image = new Option<string>("--image", "-i") { Description = "Image file", Required = true };
        var text = new Option<string>("--text", "-t") { Description = "Text containing the tokenizer's mask token (e.g. <mask>)", Required = true };
        var top = new Option<int>("--top") { Description = "Predictions per mask", DefaultValueFactory = _ => 5 };
        var cmd = new Command("fill-mask", "Predict masked words of a caption, conditioned on the image") { model, image, text, top, json };
        cmd.SetAction(pr => Guard("fill-mask", () =>
        {
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            var preds = m.Processor.FillMask(m.Mlm, LoadImage(pr.GetValue(image)!), pr.GetValue(text)!, Math.Max(1, pr.GetValue(top)));
            if (preds.Count == 0) return Cli.Fail("fill-mask: the text has no mask token");
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(preds.Select(p => p.Select(t => new { token = t.Token, probability = t.Probability }))));
            else
                for (int i = 0; i < preds.Count; i++)
                    Console.WriteLine($"mask {i + 1}: " + string.Join("  ", preds[i].Select(t => $"{t.Token.Trim()} ({t.Probability:F3})")));
            return 0;
        }));
        return cmd;
    }

    private static Command Embed()
    {
        var model = ModelOption(); var json = JsonOption();
        var images = new Option<string[]>("--image", "-i") { Description = "Image file(s) to embed", AllowMultipleArgumentsPerToken = true };
        var texts = new Option<string[]>("--text", "-t") { Description = "Text(s) to embed", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("embed", "Contrastive (ITC) embeddings of images and/or texts, L2-normalised") { model, images, texts, json };
        cmd.SetAction(pr => Guard("embed", () =>
        {
            var imgs = pr.GetValue(images) ?? []; var txts = pr.GetValue(texts) ?? [];
            if (imgs.Length + txts.Length == 0) return Cli.Fail("embed: give at least one --image or --text");
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            var rows = new List<(string kind, string source, float[] v)>();
            if (imgs.Length > 0)
            {
                var e = m.Contrastive.EmbedImages(m.Processor.EncodeImages(imgs.Select(LoadImage).ToList()));
                for (int i = 0; i < imgs.Length; i++) rows.Add(("image", imgs[i], e.Select(0, i).ToArray()));
            }
            if (txts.Length > 0)
            {
                var (ids, mask) = m.Processor.EncodeTexts(txts);
                var e = m.Contrastive.EmbedTexts(ids, mask);
                for (int i = 0; i < txts.Length; i++) rows.Add(("text", txts[i], e.Select(0, i).ToArray()));
            }
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(rows.Select(r => new { kind = r.kind, source = r.source, embedding = r.v })));
            else
                foreach (var r in rows)
                    Console.WriteLine($"{r.kind,-5} {r.source}: [{string.Join(", ", r.v.Take(6).Select(x => x.ToString("F4", CultureInfo.InvariantCulture)))}{(r.v.Length > 6 ? ", …" : "")}] ({r.v.Length} dims)");
            return 0;
        }));
        return cmd;
    }
}
