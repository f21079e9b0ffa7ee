using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vlm.Server;

/// <summary>
/// The OpenAPI 3.0 description of the service, written by hand (no Swashbuckle / Microsoft.AspNetCore.OpenApi
/// packages). Every POST takes JSON (images as base64 strings, a data: URL prefix allowed) or multipart/form-data
/// (the image as a file part, other fields as text parts of the same names). A test checks that every mapped route
/// is described here.
/// </summary>
public static class OpenApi
{
    private static JsonObject Str(string description) => new() { ["type"] = "string", ["description"] = description };
    private static JsonObject Img(string description) => new() { ["type"] = "string", ["format"] = "byte", ["description"] = description + " (base64 in JSON; a file part in multipart)" };
    private static JsonObject Int(string description, int dflt) => new() { ["type"] = "integer", ["default"] = dflt, ["description"] = description };
    private static JsonObject Num() => new() { ["type"] = "number" };
    private static JsonObject Arr(JsonNode items) => new() { ["type"] = "array", ["items"] = items };
    private static JsonObject Ref(string name) => new() { ["$ref"] = $"#/components/schemas/{name}" };

    private static JsonObject Obj(JsonObject props, params string[] required)
    {
        var o = new JsonObject { ["type"] = "object", ["properties"] = props };
        if (required.Length > 0) o["required"] = new JsonArray(required.Select(r => (JsonNode)JsonValue.Create(r)!).ToArray());
        return o;
    }

    private static JsonObject Errors(params int[] codes)
    {
        var why = new Dictionary<int, string>
        {
            [400] = "A field is missing, empty, too long, of the wrong type, or the image cannot be decoded or has too many pixels",
            [404] = "Not found",
            [413] = "The body exceeds --max-body-mb",
            [415] = "Neither JSON nor multipart/form-data",
            [501] = "The model folder lacks the head this needs (or no --index / --blip-model was given)",
            [503] = "The task's queue is full (--queue)",
            [504] = "The request did not finish within --timeout-ms",
        };
        var r = new JsonObject();
        foreach (var c in codes)
            r[c.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["description"] = why[c],
                ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = Ref("Error") } },
            };
        return r;
    }

    private static JsonObject Post(string summary, JsonObject request, JsonObject response, params int[] extra)
    {
        var responses = Errors([400, 413, 415, 501, 503, 504, .. extra]);
        responses["200"] = new JsonObject { ["description"] = "OK", ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = response } } };
        return new JsonObject
        {
            ["post"] = new JsonObject
            {
                ["summary"] = summary,
                ["requestBody"] = new JsonObject
                {
                    ["required"] = true,
                    ["content"] = new JsonObject
                    {
                        ["application/json"] = new JsonObject { ["schema"] = request },
                        ["multipart/form-data"] = new JsonObject { ["schema"] = request.DeepClone() },
                    },
                },
                ["responses"] = responses,
            },
        };
    }

    private static JsonObject Get(string summary, string contentType, JsonObject? schema = null, JsonArray? parameters = null)
    {
        var content = new JsonObject { [contentType] = schema is null ? new JsonObject() : new JsonObject { ["schema"] = schema } };
        var op = new JsonObject
        {
            ["summary"] = summary,
            ["responses"] = new JsonObject { ["200"] = new JsonObject { ["description"] = "OK", ["content"] = content } },
        };
        if (parameters != null)
        {
            op["parameters"] = parameters;
            op["responses"]!["404"] = new JsonObject { ["description"] = "Not found", ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = Ref("Error") } } };
        }
        return new JsonObject { ["get"] = op };
    }

    private static JsonArray PathParam(string name, string description) =>
        [new JsonObject { ["name"] = name, ["in"] = "path", ["required"] = true, ["schema"] = new JsonObject { ["type"] = "string" }, ["description"] = description }];

    private static string Build()
    {
        var heat = Arr(Arr(Num()));
        var doc = new JsonObject
        {
            ["openapi"] = "3.0.3",
            ["info"] = new JsonObject
            {
                ["title"] = "Vlm",
                ["version"] = "1.0",
                ["description"] = "BridgeTower inference over HTTP: image-text matching, VQA, embeddings, retrieval, fill-mask, attention maps, BLIP captions. Requests are micro-batched per task.",
            },
            ["paths"] = new JsonObject
            {
                ["/v1/itm"] = Post("Image-text matching: probability that the text describes the image",
                    Obj(new JsonObject { ["image"] = Img("The image"), ["text"] = Str("The caption") }, "image", "text"),
                    Obj(new JsonObject { ["score"] = Num().Also("softmax probability of 'match'"), ["logits"] = Arr(Num()).Also("[no-match, match]") }, "score", "logits")),
                ["/v1/vqa"] = Post("Visual question answering: top answers by sigmoid score",
                    Obj(new JsonObject { ["image"] = Img("The image"), ["question"] = Str("The question"), ["top_k"] = Int("Answers to return", 5) }, "image", "question"),
                    Obj(new JsonObject { ["answers"] = Arr(Obj(new JsonObject { ["answer"] = Str("Answer label"), ["probability"] = Num() }, "answer", "probability")) }, "answers")),
                ["/v1/embed"] = Post("L2-normalised contrastive embeddings of an image, a text, or both",
                    Obj(new JsonObject { ["image"] = Img("Image to embed"), ["text"] = Str("Text to embed") }),
                    Obj(new JsonObject { ["image_embedding"] = Arr(Num()), ["text_embedding"] = Arr(Num()) })),
                ["/v1/retrieve"] = Post("Rank the --index against a text (image index) or image (caption index) query; contrastive top-k, re-ranked by ITM",
                    Obj(new JsonObject { ["text"] = Str("Text query"), ["image"] = Img("Image query"), ["top_k"] = Int("Results", 5), ["rerank"] = new JsonObject { ["type"] = "boolean", ["default"] = true } }),
                    Obj(new JsonObject
                    {
                        ["results"] = Arr(Obj(new JsonObject
                        {
                            ["id"] = Str("Entry id"), ["path"] = Str("Indexed image path (or caption text)"), ["kind"] = Str("image or text"),
                            ["score"] = Num().Also("contrastive cosine"), ["itm_score"] = Num().Also("ITM match probability (when re-ranked)"),
                            ["image_url"] = Str("Where to fetch the image (image entries)"),
                        }, "id", "path", "score")),
                    }, "results")),
                ["/v1/fill-mask"] = Post("Predict the masked token(s); the mask token is the tokenizer's (see /healthz mask_token). The image is optional (a demo image is used without one)",
                    Obj(new JsonObject { ["text"] = Str("Text with the mask token, e.g. 'a <mask> circle'"), ["image"] = Img("Conditioning image (optional)"), ["top_k"] = Int("Predictions per mask", 5) }, "text"),
                    Obj(new JsonObject
                    {
                        ["predictions"] = Arr(Ref("MaskPrediction")).Also("for the first mask"),
                        ["masks"] = Arr(Arr(Ref("MaskPrediction"))).Also("for every mask, in text order"),
                    }, "predictions")),
                ["/v1/caption"] = Post("Caption an image with the --blip-model folder (501 without one)",
                    Obj(new JsonObject { ["image"] = Img("The image"), ["prompt"] = Str("Text the caption continues"), ["max_length"] = Int("Most new tokens", 30) }, "image"),
                    Obj(new JsonObject { ["caption"] = Str("The caption") }, "caption")),
                ["/v1/attention"] = Post("Cross-modal attention from the text's first token to the image patches (last cross-modal layer, mean over heads, scaled to [0, 1])",
                    Obj(new JsonObject { ["image"] = Img("The image"), ["text"] = Str("The text") }, "image", "text"),
                    Obj(new JsonObject
                    {
                        ["grid_w"] = Int("Patch columns", 0), ["grid_h"] = Int("Patch rows", 0), ["tokens"] = Arr(Str("token")),
                        ["heatmap"] = heat.Also("grid_h × grid_w, first token"),
                        ["token_heatmaps"] = Arr(Arr(Arr(Num()))).Also("one grid_h × grid_w map per token"),
                        ["region"] = Obj(new JsonObject { ["x"] = Num(), ["y"] = Num(), ["w"] = Num(), ["h"] = Num() })
                            .Also("the part of the source image the grid covers (the processor's centre crop), in source pixels"),
                    }, "grid_w", "grid_h", "tokens", "heatmap")),
                ["/v1/index-image/{id}"] = Get("An indexed image file, by entry id", "image/*", parameters: PathParam("id", "Entry id (may contain '/')")),
                ["/v1/demo-images"] = Get("Built-in demo images", "application/json",
                    Arr(Obj(new JsonObject { ["name"] = Str("Name"), ["url"] = Str("PNG URL"), ["caption"] = Str("A true caption") }, "name", "url"))),
                ["/demo/{name}.png"] = Get("A demo image", "image/png", parameters: PathParam("name", "Demo image name")),
                ["/healthz"] = Get("Liveness and what is loaded", "application/json",
                    Obj(new JsonObject { ["status"] = Str("ok"), ["model"] = Str("Model folder name"), ["heads"] = Arr(Str("head")) }, "status", "model")),
                ["/metrics"] = Get("Prometheus metrics", "text/plain"),
                ["/openapi.json"] = Get("This document", "application/json"),
                ["/"] = Get("The web page", "text/html"),
            },
            ["components"] = new JsonObject
            {
                ["schemas"] = new JsonObject
                {
                    ["Error"] = Obj(new JsonObject { ["error"] = Str("What was wrong") }, "error"),
                    ["MaskPrediction"] = Obj(new JsonObject { ["token"] = Str("Predicted token"), ["token_id"] = Int("Vocabulary id", 0), ["score"] = Num(), ["sequence"] = Str("Text with the mask filled") }, "token", "score", "sequence"),
                },
            },
        };
        return doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static JsonObject Also(this JsonObject o, string description)
    {
        o["description"] = description;
        return o;
    }

    private static readonly Lazy<string> Doc = new(Build);

    public static string Document => Doc.Value;
}
