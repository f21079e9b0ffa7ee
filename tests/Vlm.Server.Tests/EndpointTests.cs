using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Vlm.Cli.Tests;
using Vlm.Models.BridgeTower;
using Vlm.Vision;

namespace Vlm.Server.Tests;

/// <summary>Every endpoint end to end over real Kestrel on a loopback port, against the tiny random folder.</summary>
[Collection(ServerCollection.Name)]
public sealed class EndpointTests(ModelFixture fx)
{
    private byte[] Png(int i) => File.ReadAllBytes(fx.Tiny.ImagePath(i));
    private Image Rgb(int i) => ImageDecoder.Decode(fx.Tiny.ImagePath(i)).ToRgb();

    [Fact]
    public async Task Healthz_reports_the_model_and_heads()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, _) = await s.Get("/healthz");
        Assert.Equal(200, status);
        Assert.Equal("ok", (string?)body!["status"]);
        Assert.Equal("model", (string?)body["model"]);
        Assert.Equal(["itm", "mlm", "contrastive", "vqa"], body["heads"]!.AsArray().Select(h => (string)h!).ToArray());
        Assert.Equal(5, (int)body["index"]!["count"]!);
    }

    [Fact]
    public async Task Itm_json_and_multipart_agree_with_the_library()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var want = fx.Direct.Processor.ItmScores(fx.Direct.Itm, Rgb(1), ["two blue squares"])[0];
        var (status, body, raw) = await s.PostJson("/v1/itm", new { image = Running.B64(Png(1)), text = "two blue squares" });
        Assert.True(status == 200, raw);
        float score = (float)body!["score"]!;
        var logits = body["logits"]!.AsArray().Select(v => (float)v!).ToArray();
        Assert.Equal(want.MatchProbability, score, 1e-4f);
        Assert.Equal(want.NoMatchLogit, logits[0], 1e-4f);
        Assert.Equal(want.MatchLogit, logits[1], 1e-4f);
        Assert.Equal(1 / (1 + MathF.Exp(logits[0] - logits[1])), score, 1e-5f);

        using var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(Png(1));
        file.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        form.Add(file, "image", "scene1.png");
        form.Add(new StringContent("two blue squares"), "text");
        var (st2, body2, raw2) = await s.Send("/v1/itm", form);
        Assert.True(st2 == 200, raw2);
        Assert.Equal(score, (float)body2!["score"]!, 1e-6f);
    }

    [Fact]
    public async Task Vqa_returns_labelled_answers_best_first()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, raw) = await s.PostJson("/v1/vqa", new { image = Running.B64(Png(0)), question = "what colour is the circle?", top_k = 3 });
        Assert.True(status == 200, raw);
        var answers = body!["answers"]!.AsArray();
        Assert.Equal(3, answers.Count);
        var want = fx.Direct.Processor.AnswerQuestion(fx.Direct.Vqa, Rgb(0), "what colour is the circle?", 3);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(want[i].Answer, (string?)answers[i]!["answer"]);
            Assert.Equal(want[i].Score, (float)answers[i]!["probability"]!, 1e-4f);
        }
        Assert.Contains((string?)answers[0]!["answer"], TinyBridgeTowerFolder.Answers);
    }

    [Fact]
    public async Task Embed_returns_unit_vectors_equal_to_the_library()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, raw) = await s.PostJson("/v1/embed", new { image = Running.B64(Png(2)), text = "a red circle" });
        Assert.True(status == 200, raw);
        var img = body!["image_embedding"]!.AsArray().Select(v => (float)v!).ToArray();
        var txt = body["text_embedding"]!.AsArray().Select(v => (float)v!).ToArray();
        var wantImg = fx.Direct.Contrastive.EmbedImages(fx.Direct.Processor.EncodeImages([Rgb(2)])).ToArray();
        var (ids, mask) = fx.Direct.Processor.EncodeTexts(["a red circle"]);
        var wantTxt = fx.Direct.Contrastive.EmbedTexts(ids, mask).ToArray();
        Assert.Equal(wantImg.Length, img.Length);
        for (int i = 0; i < img.Length; i++) Assert.Equal(wantImg[i], img[i], 1e-4f);
        for (int i = 0; i < txt.Length; i++) Assert.Equal(wantTxt[i], txt[i], 1e-4f);
        Assert.Equal(1f, MathF.Sqrt(txt.Sum(v => v * v)), 1e-4f);

        var (st2, body2, _) = await s.PostJson("/v1/embed", new { text = "a red circle" });
        Assert.Equal(200, st2);
        Assert.Null(body2!["image_embedding"]);
        var (st3, body3, _) = await s.PostJson("/v1/embed", new { });
        Assert.Equal(400, st3);
        Assert.Contains("'image', 'text'", (string?)body3!["error"]);
    }

    [Fact]
    public async Task Retrieve_ranks_the_index_and_serves_result_images()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, raw) = await s.PostJson("/v1/retrieve", new { text = "a green cross", top_k = 4 });
        Assert.True(status == 200, raw);
        var results = body!["results"]!.AsArray();
        Assert.Equal(4, results.Count);
        var itm = results.Select(r => (float)r!["itm_score"]!).ToArray();
        Assert.Equal(itm.OrderByDescending(v => v).ToArray(), itm);
        // The ITM scores are the library's for the same pairs.
        foreach (var r in results)
        {
            var path = (string)r!["path"]!;
            var want = fx.Direct.Processor.ItmScores(fx.Direct.Itm, ImageDecoder.Decode(path).ToRgb(), ["a green cross"])[0].MatchProbability;
            Assert.Equal(want, (float)r["itm_score"]!, 1e-4f);
        }

        var (st2, body2, _) = await s.PostJson("/v1/retrieve", new { text = "a green cross", top_k = 5, rerank = false });
        Assert.Equal(200, st2);
        var res2 = body2!["results"]!.AsArray();
        var scores = res2.Select(r => (float)r!["score"]!).ToArray();
        Assert.Equal(scores.OrderByDescending(v => v).ToArray(), scores);
        Assert.All(res2, r => Assert.Null(r!["itm_score"]));
        // Every result image is fetchable, including the id with a folder and a space.
        var withSub = res2.Single(r => ((string)r!["id"]!).StartsWith("sub/", StringComparison.Ordinal))!;
        foreach (var r in res2)
        {
            using var resp = await s.Http.GetAsync((string)r!["image_url"]!);
            Assert.Equal(200, (int)resp.StatusCode);
            Assert.Equal(File.ReadAllBytes((string)r["path"]!), await resp.Content.ReadAsByteArrayAsync());
        }
        Assert.Equal("/v1/index-image/sub/scene4%20copy.png", (string?)withSub["image_url"]);

        Assert.Equal(404, (await s.Get("/v1/index-image/nope.png")).Status);
        Assert.Equal(404, (await s.Get("/v1/index-image/..%2F..%2Fetc%2Fpasswd")).Status);
        Assert.Equal(400, (await s.PostJson("/v1/retrieve", new { text = "x", image = Running.B64(Png(0)) })).Status);
        Assert.Equal(400, (await s.PostJson("/v1/retrieve", new { top_k = 3 })).Status);
        // An image query against an image index: contrastive order, no ITM pairing possible.
        var (st3, body3, raw3) = await s.PostJson("/v1/retrieve", new { image = Running.B64(Png(3)), top_k = 2 });
        Assert.True(st3 == 200, raw3);
        Assert.Equal("scene3.png", (string?)body3!["results"]![0]!["id"]);
    }

    [Fact]
    public async Task Retrieve_from_a_caption_index_reranks_with_the_query_image()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options(o => o with { IndexPath = fx.CaptionIndexPath }));
        var (status, body, raw) = await s.PostJson("/v1/retrieve", new { image = Running.B64(Png(1)), top_k = 3 });
        Assert.True(status == 200, raw);
        var results = body!["results"]!.AsArray();
        Assert.Equal(3, results.Count);
        var want = fx.Direct.Processor.ItmScores(fx.Direct.Itm, Rgb(1), ModelFixture.Captions);
        foreach (var r in results)
        {
            Assert.Equal("text", (string?)r!["kind"]);
            Assert.Null(r["image_url"]);
            int i = Array.IndexOf(ModelFixture.Captions, (string)r["path"]!);
            Assert.Equal(want[i].MatchProbability, (float)r["itm_score"]!, 1e-4f);
        }
        Assert.Equal(404, (await s.Get("/v1/index-image/captions.txt:1")).Status);
    }

    [Fact]
    public async Task Fill_mask_predicts_for_each_mask()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, raw) = await s.PostJson("/v1/fill-mask", new { text = "a <mask> circle", image = Running.B64(Png(0)), top_k = 4 });
        Assert.True(status == 200, raw);
        var preds = body!["predictions"]!.AsArray();
        Assert.Equal(4, preds.Count);
        var want = fx.Direct.Processor.FillMask(fx.Direct.Mlm, Rgb(0), "a <mask> circle", 4)[0];
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(want[i].Token, (string?)preds[i]!["token"]);
            Assert.Equal(want[i].Probability, (float)preds[i]!["score"]!, 1e-4f);
            var seq = (string)preds[i]!["sequence"]!;
            Assert.StartsWith("a", seq);
            Assert.EndsWith("circle", seq);
            Assert.DoesNotContain("<mask>", seq);
        }
        var (st2, body2, _) = await s.PostJson("/v1/fill-mask", new { text = "<mask> red <mask>" });
        Assert.Equal(200, st2);
        Assert.Equal(2, body2!["masks"]!.AsArray().Count);
        var (st3, body3, _) = await s.PostJson("/v1/fill-mask", new { text = "no mask here" });
        Assert.Equal(400, st3);
        Assert.Contains("<mask>", (string?)body3!["error"]);
    }

    [Fact]
    public async Task Attention_map_is_a_normalised_patch_grid()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, raw) = await s.PostJson("/v1/attention", new { image = Running.B64(Png(3)), text = "a red circle" });
        Assert.True(status == 200, raw);
        int gw = (int)body!["grid_w"]!, gh = (int)body["grid_h"]!;
        int patch = fx.Direct.Config.VisionConfig.PatchSize;
        Assert.Equal(32 / patch, gw);
        Assert.Equal(32 / patch, gh);
        var tokens = body["tokens"]!.AsArray().Select(t => (string)t!).ToArray();
        Assert.Equal(fx.Direct.Processor.Tokenizer.Encode("a red circle").Ids.Length, tokens.Length);
        Assert.Equal("<s>", tokens[0]);
        var heat = body["heatmap"]!.AsArray();
        Assert.Equal(gh, heat.Count);
        var flat = heat.SelectMany(r => r!.AsArray().Select(v => (float)v!)).ToArray();
        Assert.Equal(gh * gw, flat.Length);
        Assert.All(flat, v => Assert.InRange(v, 0f, 1f));
        Assert.Equal(1f, flat.Max());
        Assert.Equal(0f, flat.Min());
        Assert.Equal(tokens.Length, body["token_heatmaps"]!.AsArray().Count);
        // Where the grid lies on the source image: the tiny processor (shortest edge 32, longest ≤ 53, size_divisor
        // 32) turns every scene into 32 × 32 without cropping, so the grid covers the whole image.
        var src = Rgb(3);
        Assert.Equal(new[] { 0f, 0f, src.Width, src.Height }, new[] { "x", "y", "w", "h" }.Select(k => (float)body["region"]![k]!).ToArray());

        // The map is the head-mean of the library's last cross-modal text→image attention, row 0, CLS image token dropped.
        var (ids, mask) = fx.Direct.Processor.EncodeTexts(["a red circle"]);
        var px = fx.Direct.Processor.EncodeImages([Rgb(3)]);
        Core.Tensor probs;
        using (Core.Tensor.NoGrad())
            probs = fx.Direct.Itm.Forward(ids, mask, px, options: new BridgeTowerForwardOptions { OutputCrossAttentions = true }).Base.CrossAttentions![^1].TextToImage;
        int heads = probs.Size(1), n = probs.Size(3);
        var mean = new float[n - 1];
        for (int h = 0; h < heads; h++)
            for (int k = 1; k < n; k++) mean[k - 1] += probs[0, h, 0, k] / heads;
        var want = InferenceEngine.Normalise(mean);
        for (int i = 0; i < want.Length; i++) Assert.Equal(want[i], flat[i], 1e-4f);
    }

    [Fact]
    public async Task Caption_without_a_blip_folder_is_501()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (status, body, _) = await s.PostJson("/v1/caption", new { image = Running.B64(Png(0)) });
        Assert.Equal(501, status);
        Assert.Contains("--blip-model", (string?)body!["error"]);
    }

    [Fact]
    public async Task Caption_with_a_blip_folder_matches_direct_generation()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options(o => o with { BlipModelPath = fx.BlipPath }));
        var want = BlipCaptioner.Open(fx.BlipPath).Caption(Rgb(2), "a", 4);
        var (status, body, raw) = await s.PostJson("/v1/caption", new { image = Running.B64(Png(2)), prompt = "a", max_length = 4 });
        Assert.True(status == 200, raw);
        Assert.Equal(want, (string?)body!["caption"]);
        Assert.True((bool)(await s.Get("/healthz")).Body!["caption"]!);
        Assert.Equal(400, (await s.PostJson("/v1/caption", new { image = Running.B64(Png(2)), max_length = 0 })).Status);
    }

    [Fact]
    public async Task Demo_images_page_openapi_and_metrics_are_served()
    {
        await using var s = await ModelFixture.StartAsync(fx.Options());
        var (st, demos, _) = await s.Get("/v1/demo-images");
        Assert.Equal(200, st);
        Assert.True(demos!.AsArray().Count >= 4);
        foreach (var d in demos.AsArray())
        {
            var bytes = await s.Http.GetByteArrayAsync((string)d!["url"]!);
            var img = ImageDecoder.Decode(bytes);
            Assert.True(img.Width >= 64);
            Assert.False(string.IsNullOrEmpty((string?)d["caption"]));
        }
        Assert.Equal(404, (await s.Get("/demo/nope.png")).Status);

        using (var page = await s.Http.GetAsync("/"))
        {
            Assert.Equal(200, (int)page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
            Assert.Contains("<html", await page.Content.ReadAsStringAsync());
        }
        var (st404, body404, _) = await s.Get("/no/such/file.js");
        Assert.Equal(404, st404);
        Assert.NotNull(body404!["error"]);

        await s.PostJson("/v1/itm", new { image = Running.B64(Png(0)), text = "a red circle" });
        var metrics = await s.Http.GetStringAsync("/metrics");
        Assert.Contains("vlm_http_requests_total{endpoint=\"/v1/itm\",status=\"200\"} 1", metrics);
        Assert.Contains("vlm_http_request_duration_seconds_count{endpoint=\"/v1/itm\"} 1", metrics);
        Assert.Contains("vlm_batch_size_count{kind=\"itm\"} 1", metrics);
        Assert.Contains("vlm_queue_depth{kind=\"itm\"} 0", metrics);

        var (sto, doc, _) = await s.Get("/openapi.json");
        Assert.Equal(200, sto);
        Assert.Equal("3.0.3", (string?)doc!["openapi"]);
        var paths = doc["paths"]!.AsObject();
        // Every route the app maps is documented, with its method.
        foreach (var route in s.Server.Routes())
        {
            var parts = route.Split(' ', 2);
            if (parts[1].Contains("{*", StringComparison.Ordinal) && !parts[1].StartsWith("/v1/", StringComparison.Ordinal)) continue; // static fallback
            var path = parts[1].Replace("{**", "{", StringComparison.Ordinal);
            Assert.True(paths.ContainsKey(path), $"{route} is not in openapi.json");
            Assert.NotNull(paths[path]![parts[0].ToLowerInvariant()]);
        }
    }
}
