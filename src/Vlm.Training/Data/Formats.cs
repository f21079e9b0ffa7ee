using System.Text.Json;

namespace Vlm.Training.Data;

public sealed record ImageCaption(int ImageId, string ImagePath, string Caption);

public sealed record VqaItem(int QuestionId, int ImageId, string ImagePath, string Question, string QuestionType, string AnswerType, IReadOnlyList<string> Answers);

public sealed record KarpathyImage(int ImageId, string ImagePath, string Split, IReadOnlyList<string> Captions);

public sealed record Nlvr2Item(string Identifier, string LeftPath, string RightPath, string Sentence, bool Label);

/// <summary>
/// Readers for the datasets' own formats (COCO captions, VQAv2, Karpathy splits, JSONL pairs, NLVR2 JSONL):
/// the synthetic world is written in them, and users point the same readers at COCO / VQAv2 / Flickr30K.
/// Image paths are resolved against <c>imageRoot</c>. Malformed files fail with the file and the entry named.
/// </summary>
public static class DatasetFormats
{
    public static List<ImageCaption> ReadCocoCaptions(string path, string imageRoot)
    {
        using var doc = Parse(path);
        var files = new Dictionary<int, string>();
        foreach (var img in Array(doc.RootElement, "images", path))
            files[Int(img, "id", path)] = Path.Combine(imageRoot, Str(img, "file_name", path));
        var list = new List<ImageCaption>();
        foreach (var a in Array(doc.RootElement, "annotations", path))
        {
            int id = Int(a, "image_id", path);
            if (!files.TryGetValue(id, out var f)) throw new InvalidDataException($"{path}: annotation refers to unknown image_id {id}");
            list.Add(new ImageCaption(id, f, Str(a, "caption", path)));
        }
        return list;
    }

    /// <summary>VQAv2: questions file + annotations file. <paramref name="imagePath"/> maps an image id to its file
    /// (COCO names them COCO_train2014_000000xxxxxx.jpg; the world by a captions file).</summary>
    public static List<VqaItem> ReadVqa(string questionsPath, string? annotationsPath, Func<int, string> imagePath)
    {
        using var q = Parse(questionsPath);
        var anns = new Dictionary<int, JsonElement>();
        JsonDocument? a = annotationsPath is null ? null : Parse(annotationsPath);
        try
        {
            if (a != null)
                foreach (var e in Array(a.RootElement, "annotations", annotationsPath!))
                    anns[Int(e, "question_id", annotationsPath!)] = e;
            var list = new List<VqaItem>();
            foreach (var e in Array(q.RootElement, "questions", questionsPath))
            {
                int qid = Int(e, "question_id", questionsPath), img = Int(e, "image_id", questionsPath);
                var answers = new List<string>();
                string qtype = "", atype = "";
                if (anns.TryGetValue(qid, out var an))
                {
                    foreach (var x in Array(an, "answers", annotationsPath!)) answers.Add(Str(x, "answer", annotationsPath!));
                    qtype = an.TryGetProperty("question_type", out var qt) ? qt.GetString() ?? "" : "";
                    atype = an.TryGetProperty("answer_type", out var at) ? at.GetString() ?? "" : "";
                }
                else if (a != null) throw new InvalidDataException($"{annotationsPath}: no annotation for question_id {qid}");
                list.Add(new VqaItem(qid, img, imagePath(img), Str(e, "question", questionsPath), qtype, atype, answers));
            }
            return list;
        }
        finally { a?.Dispose(); }
    }

    public static List<KarpathyImage> ReadKarpathy(string path, string imageRoot, string? split = null)
    {
        using var doc = Parse(path);
        var list = new List<KarpathyImage>();
        foreach (var img in Array(doc.RootElement, "images", path))
        {
            string s = Str(img, "split", path);
            if (split != null && s != split && !(split == "train" && s == "restval")) continue;
            string file = Path.Combine(imageRoot, img.TryGetProperty("filepath", out var fp) ? fp.GetString() ?? "" : "", Str(img, "filename", path));
            int id = img.TryGetProperty("cocoid", out var cid) && cid.ValueKind == JsonValueKind.Number ? cid.GetInt32() : Int(img, "imgid", path);
            var caps = Array(img, "sentences", path).Select(x => Str(x, "raw", path)).ToList();
            list.Add(new KarpathyImage(id, file, s, caps));
        }
        return list;
    }

    public static List<ImageCaption> ReadPairsJsonl(string path, string imageRoot) =>
        ReadJsonl(path, (e, line) =>
        {
            int id = e.TryGetProperty("image_id", out var iid) && iid.ValueKind == JsonValueKind.Number ? iid.GetInt32() : line;
            return new ImageCaption(id, Path.Combine(imageRoot, Str(e, "image", path)), Str(e, "caption", path));
        });

    public static List<Nlvr2Item> ReadNlvr2Jsonl(string path, string imageRoot) =>
        ReadJsonl(path, (e, line) =>
        {
            string label = Str(e, "label", path);
            if (label is not ("True" or "False")) throw new InvalidDataException($"{path}:{line}: label must be \"True\" or \"False\", got \"{label}\"");
            return new Nlvr2Item(Str(e, "identifier", path), Path.Combine(imageRoot, Str(e, "left", path)), Path.Combine(imageRoot, Str(e, "right", path)),
                Str(e, "sentence", path), label == "True");
        });

    /// <summary>One item per non-blank line of a JSON-lines file; <paramref name="read"/> gets the object and its 1-based line.</summary>
    private static List<T> ReadJsonl<T>(string path, Func<JsonElement, int, T> read)
    {
        var list = new List<T>();
        int line = 0;
        foreach (var l in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(l)) continue;
            using var d = ParseLine(l, path, line);
            list.Add(read(d.RootElement, line));
        }
        return list;
    }

    private static JsonDocument Parse(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"dataset file not found: {path}", path);
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
    }

    private static JsonDocument ParseLine(string l, string path, int line)
    {
        try { return JsonDocument.Parse(l); }
        catch (JsonException e) { throw new InvalidDataException($"{path}:{line}: not valid JSON ({e.Message})"); }
    }

    private static IEnumerable<JsonElement> Array(JsonElement e, string name, string path) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array
            ? v.EnumerateArray()
            : throw new InvalidDataException($"{path}: expected an array \"{name}\"");

    private static string Str(JsonElement e, string name, string path) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new InvalidDataException($"{path}: entry lacks string field \"{name}\": {Trim(e.GetRawText())}");

    private static int Int(JsonElement e, string name, string path) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)
            ? i
            : throw new InvalidDataException($"{path}: entry lacks integer field \"{name}\": {Trim(e.GetRawText())}");

    private static string Trim(string s) => s.Length > 120 ? s[..120] + "…" : s;
}
