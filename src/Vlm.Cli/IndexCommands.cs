using System.CommandLine;
using System.Text.Json;
using Vlm.Models.BridgeTower;
using Vlm.Models.Retrieval;
using Vlm.Training.Pipeline;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm index build|add|query</c>: a collection (a folder of images, or a captions file) is embedded once with the
/// contrastive heads into a <see cref="VectorIndex"/>; queries rank it by dot product and, with <c>--rerank</c>,
/// re-rank the top k with ITM, as the paper evaluates retrieval.
/// </summary>
public static class IndexCommands
{
    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm"];

    public static Command Build()
    {
        var cmd = new Command("index", "Build, extend and query a retrieval index of image or caption embeddings");
        cmd.Subcommands.Add(BuildCmd());
        cmd.Subcommands.Add(AddCmd());
        cmd.Subcommands.Add(QueryCmd());
        return cmd;
    }

    private static Command BuildCmd()
    {
        var model = ModelCommands.ModelOption();
        var source = new Argument<string>("source") { Description = "A folder of images, or a captions file (.txt one per line, or .jsonl with a \"caption\" field)" };
        var output = new Option<string>("--out", "-o") { Description = "Index file to write", Required = true };
        var int8 = new Option<bool>("--int8") { Description = "Store int8 vectors (4× smaller, ~1% score error)" };
        var batch = new Option<int>("--batch") { Description = "Embedding batch size", DefaultValueFactory = _ => 16 };
        var cmd = new Command("build", "Embed a collection and write a new index (atomically)") { model, source, output, int8, batch };
        cmd.SetAction(pr => ModelCommands.Guard("index build", () =>
        {
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            var items = ReadSource(pr.GetValue(source)!);
            var dim = m.Config.ContrastiveHiddenSize ?? throw new InvalidDataException("config has no contrastive_hidden_size");
            var idx = new VectorIndex(dim, pr.GetValue(int8) ? VectorStorage.Int8 : VectorStorage.Float32);
            idx.Metadata["model"] = Path.GetFullPath(m.Path);
            Append(m, idx, items, Math.Max(1, pr.GetValue(batch)));
            idx.Save(pr.GetValue(output)!);
            Console.WriteLine($"indexed {idx.Count} {items.FirstOrDefault().kind ?? "item"}s ({dim} dims, {idx.Storage}) into {pr.GetValue(output)}");
            return 0;
        }));
        return cmd;
    }

    private static Command AddCmd()
    {
        var model = ModelCommands.ModelOption();
        var index = new Option<string>("--index") { Description = "Existing index file", Required = true };
        var source = new Argument<string>("source") { Description = "A folder of images, or a captions file" };
        var batch = new Option<int>("--batch") { Description = "Embedding batch size", DefaultValueFactory = _ => 16 };
        var cmd = new Command("add", "Append a collection to an existing index (rewritten atomically)") { model, index, source, batch };
        cmd.SetAction(pr => ModelCommands.Guard("index add", () =>
        {
            var path = pr.GetValue(index)!;
            var idx = VectorIndex.Load(path);
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            if (m.Config.ContrastiveHiddenSize != idx.Dim) return Cli.Fail($"index add: the index has {idx.Dim} dims but the model embeds {m.Config.ContrastiveHiddenSize}");
            var items = ReadSource(pr.GetValue(source)!);
            int before = idx.Count;
            Append(m, idx, items, Math.Max(1, pr.GetValue(batch)));
            idx.Save(path);
            Console.WriteLine($"added {idx.Count - before} items; {path} now holds {idx.Count}");
            return 0;
        }));
        return cmd;
    }

    private static Command QueryCmd()
    {
        var model = ModelCommands.ModelOption(); var json = ModelCommands.JsonOption();
        var index = new Option<string>("--index") { Description = "Index file", Required = true };
        var text = new Option<string?>("--text", "-t") { Description = "Text query (searches an image index)" };
        var image = new Option<string?>("--image", "-i") { Description = "Image query (searches a caption index)" };
        var k = new Option<int>("--k") { Description = "Results to return", DefaultValueFactory = _ => 10 };
        var rerank = new Option<bool>("--rerank") { Description = "Re-rank the top k with the ITM head" };
        var cmd = new Command("query", "Rank an index against a text or image query") { model, index, text, image, k, rerank, json };
        cmd.SetAction(pr => ModelCommands.Guard("index query", () =>
        {
            var q = pr.GetValue(text); var qi = pr.GetValue(image);
            if ((q is null) == (qi is null)) return Cli.Fail("index query: give exactly one of --text or --image");
            if (q is not null && string.IsNullOrWhiteSpace(q)) return Cli.Fail("index query: the text query is empty");
            var idx = VectorIndex.Load(pr.GetValue(index)!);
            using var m = BridgeTowerFolder.Open(pr.GetValue(model)!);
            if (m.Config.ContrastiveHiddenSize != idx.Dim) return Cli.Fail($"index query: the index has {idx.Dim} dims but the model embeds {m.Config.ContrastiveHiddenSize}");
            float[] qv;
            Vlm.Vision.Image? queryImage = null;
            if (q is not null)
            {
                var (ids, mask) = m.Processor.EncodeTexts([q]);
                qv = m.Contrastive.EmbedTexts(ids, mask).ToArray();
            }
            else
            {
                queryImage = ModelCommands.LoadImage(qi!);
                qv = m.Contrastive.EmbedImages(m.Processor.EncodeImages([queryImage])).ToArray();
            }
            var hits = idx.Search(qv, Math.Max(1, pr.GetValue(k)));
            var rows = hits.Select(h => (h.Entry, h.Score, Itm: (float?)null)).ToList();
            if (pr.GetValue(rerank))
            {
                rows = rows.Select(r =>
                {
                    float p = r.Entry.Kind == "image"
                        ? m.Processor.ItmScores(m.Itm, ModelCommands.LoadImage(r.Entry.Source), [q!])[0].MatchProbability
                        : m.Processor.ItmScores(m.Itm, queryImage!, [r.Entry.Source])[0].MatchProbability;
                    return (r.Entry, r.Score, Itm: (float?)p);
                }).OrderByDescending(r => r.Itm).ToList();
            }
            if (pr.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(rows.Select(r => new { id = r.Entry.Id, source = r.Entry.Source, kind = r.Entry.Kind, score = r.Score, itm = r.Itm })));
            else
                foreach (var r in rows) Console.WriteLine($"{r.Score,8:F4} {(r.Itm is float p ? $"itm {p:F4} " : "")} {r.Entry.Source}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Images of a folder (sorted, recursive) or the captions of a file, as (id, source, kind).</summary>
    private static List<(string id, string source, string kind)> ReadSource(string source)
    {
        if (Directory.Exists(source))
        {
            var files = Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories)
                .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .OrderBy(f => f, StringComparer.Ordinal).ToList();
            if (files.Count == 0) throw new InvalidDataException($"{source}: no image files ({string.Join(", ", ImageExtensions)})");
            return files.Select(f => (Path.GetRelativePath(source, f), Path.GetFullPath(f), "image")).ToList();
        }
        if (!File.Exists(source)) throw new FileNotFoundException($"no such folder or captions file: {source}", source);
        var caps = new List<(string, string, string)>();
        int line = 0;
        foreach (var l in File.ReadLines(source))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            string cap = l;
            if (source.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            {
                using var d = JsonDocument.Parse(l);
                cap = d.RootElement.TryGetProperty("caption", out var c) && c.ValueKind == JsonValueKind.String
                    ? c.GetString()! : throw new InvalidDataException($"{source}:{line}: no \"caption\" field");
            }
            caps.Add(($"{Path.GetFileName(source)}:{line}", cap.Trim(), "text"));
        }
        if (caps.Count == 0) throw new InvalidDataException($"{source}: no captions");
        return caps;
    }

    /// <summary>Embeds items in batches; image decoding and preprocessing of the next batches runs in the background.</summary>
    private static void Append(BridgeTowerFolder m, VectorIndex idx, List<(string id, string source, string kind)> items, int batch)
    {
        var batches = Enumerable.Range(0, (items.Count + batch - 1) / batch).Select(b => items.Skip(b * batch).Take(batch).ToList()).ToList();
        using var bar = new ProgressBar("embedding", items.Count, items[0].kind + "s");
        int done = 0;
        var prepared = new Prefetcher<List<(string id, string source, string kind)>, (List<(string id, string source, string kind)> items, object input)>(batches,
            b => (b, b[0].kind == "image"
                ? m.Processor.EncodeImages(b.Select(x => ModelCommands.LoadImage(x.source)).ToList())
                : m.Processor.EncodeTexts(b.Select(x => x.source).ToList())), workers: 1, depth: 2);
        foreach (var (b, input) in prepared)
        {
            var emb = input is Vlm.Core.Tensor px ? m.Contrastive.EmbedImages(px)
                : m.Contrastive.EmbedTexts((((Vlm.Core.Tensor, Vlm.Core.Tensor))input).Item1, (((Vlm.Core.Tensor, Vlm.Core.Tensor))input).Item2);
            for (int i = 0; i < b.Count; i++) idx.Add(new IndexEntry(b[i].id, b[i].source, b[i].kind), emb.Select(0, i).ToArray());
            bar.Report(done += b.Count);
        }
    }
}
