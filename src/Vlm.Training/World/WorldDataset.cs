using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vlm.Training.World;

/// <summary>How many scenes each split gets; scene ids are consecutive across splits.</summary>
public sealed record WorldSplits(int Train, int Val, int Test, int PairsPerSplitFactor = 1)
{
    public IEnumerable<(string name, int first, int count)> Ranges()
    {
        yield return ("train", 0, Train);
        yield return ("val", Train, Val);
        yield return ("test", Train + Val, Test);
    }
}

/// <summary>
/// Writes the world in the formats real datasets use, so one set of loaders reads both:
/// COCO captions (<c>captions_{split}.json</c>), VQAv2 (<c>questions_{split}.json</c> + <c>annotations_{split}.json</c>),
/// the Karpathy retrieval split (<c>dataset_karpathy.json</c>), JSONL image–text pairs (<c>pairs_{split}.jsonl</c>),
/// ITM hard negatives (<c>itm_negatives_{split}.jsonl</c>), NLVR2 statements (<c>nlvr2_{split}.jsonl</c>),
/// and the images as PNG under <c>images/{split}/</c>.
/// </summary>
public static class WorldDataset
{
    /// <summary>Encodes 8-bit RGB pixels (row-major) as a PNG file at the given path.</summary>
    public delegate void PngWriter(string path, byte[] rgb, int width, int height);

    public static void Write(string dir, WorldGenerator gen, WorldSplits splits, PngWriter writePng, IProgress<int>? progress = null)
    {
        Directory.CreateDirectory(dir);
        var karpathy = new JsonArray();
        int done = 0;
        foreach (var (split, first, count) in splits.Ranges())
        {
            var imgDir = Path.Combine(dir, "images", split);
            Directory.CreateDirectory(imgDir);
            var cocoImages = new JsonArray(); var cocoAnns = new JsonArray();
            var questions = new JsonArray(); var answers = new JsonArray();
            var pairs = new List<string>(); var negatives = new List<string>();
            int annId = first * 16, qId = first * 16;
            var scenes = new List<Scene>();
            for (int id = first; id < first + count; id++)
            {
                var scene = gen.SampleScene(id);
                scenes.Add(scene);
                var text = gen.Describe(scene);
                string file = $"{id:D7}.png";
                string rel = $"images/{split}/{file}";
                writePng(Path.Combine(imgDir, file), Renderer.Render(scene), scene.Width, scene.Height);
                cocoImages.Add(new JsonObject { ["id"] = id, ["file_name"] = rel, ["width"] = scene.Width, ["height"] = scene.Height });
                var sentences = new JsonArray();
                foreach (var c in text.Captions)
                {
                    cocoAnns.Add(new JsonObject { ["id"] = annId++, ["image_id"] = id, ["caption"] = c });
                    sentences.Add(new JsonObject { ["raw"] = c, ["tokens"] = new JsonArray(c.Split(' ').Select(t => (JsonNode)t!).ToArray()) });
                    pairs.Add(JsonSerializer.Serialize(new { image = rel, caption = c, image_id = id }));
                }
                karpathy.Add(new JsonObject { ["filepath"] = $"images/{split}", ["filename"] = file, ["imgid"] = id, ["cocoid"] = id, ["split"] = split, ["sentences"] = sentences });
                foreach (var n in text.Negatives)
                    negatives.Add(JsonSerializer.Serialize(new { image = rel, image_id = id, caption = n.Caption, kind = KindName(n.Kind), label = 0 }));
                foreach (var q in text.Questions)
                {
                    int qid = qId++;
                    questions.Add(new JsonObject { ["image_id"] = id, ["question"] = q.Text, ["question_id"] = qid });
                    var ans = new JsonArray();
                    for (int k = 1; k <= 10; k++) ans.Add(new JsonObject { ["answer"] = q.Answer, ["answer_confidence"] = "yes", ["answer_id"] = k });
                    answers.Add(new JsonObject
                    {
                        ["question_id"] = qid, ["image_id"] = id, ["question_type"] = CategoryName(q.Category),
                        ["answer_type"] = q.Answer is "yes" or "no" ? "yes/no" : int.TryParse(q.Answer, out _) ? "number" : "other",
                        ["multiple_choice_answer"] = q.Answer, ["answers"] = ans,
                    });
                }
                progress?.Report(++done);
            }
            var nlvr = new List<string>();
            for (int k = 0; k + 1 < scenes.Count; k += 2)
            {
                var st = gen.Compare(scenes[k], scenes[k + 1], scenes[k].Id);
                nlvr.Add(JsonSerializer.Serialize(new
                {
                    identifier = $"{split}-{scenes[k].Id}-{scenes[k + 1].Id}",
                    left = $"images/{split}/{scenes[k].Id:D7}.png", right = $"images/{split}/{scenes[k + 1].Id:D7}.png",
                    sentence = st.Sentence, label = st.Label ? "True" : "False",
                }));
            }
            WriteJson(Path.Combine(dir, $"captions_{split}.json"), new JsonObject { ["images"] = cocoImages, ["annotations"] = cocoAnns });
            WriteJson(Path.Combine(dir, $"questions_{split}.json"), new JsonObject { ["questions"] = questions });
            WriteJson(Path.Combine(dir, $"annotations_{split}.json"), new JsonObject { ["annotations"] = answers });
            WriteLines(Path.Combine(dir, $"pairs_{split}.jsonl"), pairs);
            WriteLines(Path.Combine(dir, $"itm_negatives_{split}.jsonl"), negatives);
            WriteLines(Path.Combine(dir, $"nlvr2_{split}.jsonl"), nlvr);
        }
        WriteJson(Path.Combine(dir, "dataset_karpathy.json"), new JsonObject { ["dataset"] = "world", ["images"] = karpathy });
    }

    public static string KindName(NegativeKind k) => k switch
    {
        NegativeKind.ColourSwap => "colour_swap",
        NegativeKind.RelationReversed => "relation_reversed",
        NegativeKind.CountChanged => "count_changed",
        _ => "absent_object",
    };

    public static string CategoryName(QuestionCategory c) => c.ToString().ToLowerInvariant();

    private static void WriteJson(string path, JsonNode node) =>
        AtomicFile.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));

    private static void WriteLines(string path, IEnumerable<string> lines) => AtomicFile.WriteAllText(path, string.Join('\n', lines) + "\n");
}

/// <summary>Writes a file through a temp file and a rename, so readers never see half a file.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
