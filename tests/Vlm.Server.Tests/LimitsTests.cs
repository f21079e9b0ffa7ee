using System.Net.Http.Headers;
using System.Text;
using Vlm.Core;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Server.Tests;

/// <summary>Request limits and malformed input: each gets its status and a JSON error naming the field; none
/// takes the process down (the server still answers afterwards).</summary>
[Collection(ServerCollection.Name)]
public sealed class LimitsTests(ModelFixture fx)
{
    private string Png(int i) => Running.B64(File.ReadAllBytes(fx.Tiny.ImagePath(i)));

    private ServerOptions Tight() => fx.Options(o => o with { MaxBodyMb = 1, MaxPixels = 100 * 100, MaxTextChars = 40 });

    private static void AssertError(int want, (int Status, System.Text.Json.Nodes.JsonNode? Body, string Raw) got, string mentions)
    {
        Assert.True(want == got.Status, $"expected {want}, got {got.Status}: {got.Raw}");
        var msg = (string?)got.Body?["error"];
        Assert.NotNull(msg);
        Assert.Contains(mentions, msg);
    }

    [Fact]
    public async Task Limits_give_413_and_400_naming_the_field()
    {
        await using var s = await ModelFixture.StartAsync(Tight());
        // Body over 1 MB: refused before it is read (Content-Length) ...
        var big = new byte[(1 << 20) + 10];
        AssertError(413, await s.PostRaw("/v1/itm", big, "application/json"), "--max-body-mb");
        // ... and while reading when the length is not declared up front (chunked).
        using (var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("{\"text\": \"" + new string('a', (1 << 20) + 10) + "\"}"))))
        {
            chunked.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var req = new HttpRequestMessage(HttpMethod.Post, "/v1/itm") { Content = chunked };
            req.Headers.TransferEncodingChunked = true;
            using var resp = await s.Http.SendAsync(req);
            Assert.Equal(413, (int)resp.StatusCode);
        }
        // Too many pixels (200 × 200 > 100 × 100).
        var huge = PngEncoder.Encode(new Image(200, 200, PixelMode.RGB, new byte[200 * 200 * 3]));
        AssertError(400, await s.PostJson("/v1/itm", new { image = Running.B64(huge), text = "a red circle" }), "'image'");
        AssertError(400, await s.PostJson("/v1/itm", new { image = Running.B64(huge), text = "a red circle" }), "pixels");
        // Text too long, empty, missing, wrong type.
        AssertError(400, await s.PostJson("/v1/itm", new { image = Png(0), text = new string('x', 41) }), "'text' has 41 characters");
        AssertError(400, await s.PostJson("/v1/itm", new { image = Png(0), text = "   " }), "'text' is empty");
        AssertError(400, await s.PostJson("/v1/itm", new { image = Png(0) }), "'text' is required");
        AssertError(400, await s.PostJson("/v1/itm", new { image = Png(0), text = 5 }), "'text' must be a string");
        AssertError(400, await s.PostJson("/v1/vqa", new { image = Png(0), question = "" }), "'question' is empty");
        // Images: missing, not base64, not an image, truncated PNG.
        AssertError(400, await s.PostJson("/v1/itm", new { text = "a" }), "'image' is required");
        AssertError(400, await s.PostJson("/v1/itm", new { image = "@@not base64@@", text = "a" }), "'image' is not valid base64");
        AssertError(400, await s.PostJson("/v1/itm", new { image = Running.B64(Encoding.UTF8.GetBytes("hello world, not an image")), text = "a" }), "'image' could not be decoded");
        var png = File.ReadAllBytes(fx.Tiny.ImagePath(0));
        AssertError(400, await s.PostJson("/v1/itm", new { image = Running.B64(png[..(png.Length / 2)]), text = "a" }), "'image'");
        // Decodable but too elongated for the processor's resize.
        var sliver = PngEncoder.Encode(new Image(90, 1, PixelMode.RGB, new byte[90 * 3]));
        AssertError(400, await s.PostJson("/v1/itm", new { image = Running.B64(sliver), text = "a" }), "'image' cannot be preprocessed");
        // Other fields and bodies.
        AssertError(400, await s.PostJson("/v1/vqa", new { image = Png(0), question = "what?", top_k = 0 }), "'top_k' must be in 1..");
        AssertError(400, await s.PostJson("/v1/vqa", new { image = Png(0), question = "what?", top_k = "three" }), "'top_k' must be an integer");
        AssertError(400, await s.PostJson("/v1/retrieve", new { text = "a", rerank = "maybe" }), "'rerank'");
        AssertError(400, await s.PostRaw("/v1/itm", Encoding.UTF8.GetBytes("{\"text\": "), "application/json"), "not valid JSON");
        AssertError(400, await s.PostRaw("/v1/itm", Encoding.UTF8.GetBytes("[1, 2]"), "application/json"), "JSON object");
        AssertError(415, await s.PostRaw("/v1/itm", Encoding.UTF8.GetBytes("text=a"), "application/x-www-form-urlencoded"), "multipart/form-data");
        AssertError(400, await s.PostRaw("/v1/itm", Encoding.UTF8.GetBytes("--xyz\r\nbroken"), "multipart/form-data; boundary=xyz"), "multipart");
        // Still healthy.
        Assert.Equal(200, (await s.Get("/healthz")).Status);
        var metrics = await s.Http.GetStringAsync("/metrics");
        Assert.Contains("vlm_http_requests_total{endpoint=\"/v1/itm\",status=\"413\"}", metrics);
        Assert.Contains("vlm_http_requests_total{endpoint=\"/v1/itm\",status=\"400\"}", metrics);
    }

    [Fact]
    public async Task A_request_past_the_timeout_gets_504()
    {
        // The worker waits its 200 ms batch window for company before running a lone request, so a 20 ms limit
        // always passes first.
        await using var s = await ModelFixture.StartAsync(fx.Options(o => o with { TimeoutMs = 20, BatchWindowMs = 200 }));
        AssertError(504, await s.PostJson("/v1/itm", new { image = Png(0), text = "a red circle" }), "20 ms");
        Assert.Contains("vlm_request_timeouts_total{kind=\"itm\"} 1", await s.Http.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task Fuzzed_bodies_never_crash_the_server()
    {
        await using var s = await ModelFixture.StartAsync(Tight());
        var rng = new Rng(42);
        var png = File.ReadAllBytes(fx.Tiny.ImagePath(1));
        string[] paths = ["/v1/itm", "/v1/vqa", "/v1/embed", "/v1/retrieve", "/v1/fill-mask", "/v1/caption", "/v1/attention"];
        string[] seeds =
        [
            "{\"image\": \"" + Running.B64(png) + "\", \"text\": \"a red circle\", \"question\": \"what?\"}",
            "{\"text\": \"a <mask> b\", \"top_k\": 3}",
            "{\"image\": null, \"text\": [1,2,{\"a\":{}}], \"top_k\": 1e309}",
            "{\"text\": \"\\ud800\", \"question\": \"\\u0000\"}",
        ];
        for (int i = 0; i < 60; i++)
        {
            var body = Encoding.UTF8.GetBytes(seeds[i % seeds.Length]);
            // Flip, drop or duplicate a few random bytes: JSON that is almost right, base64 that is almost an image.
            int edits = 1 + (int)(rng.NextUInt64() % 4);
            var list = body.ToList();
            for (int e = 0; e < edits && list.Count > 1; e++)
            {
                int at = (int)(rng.NextUInt64() % (ulong)list.Count);
                switch (rng.NextUInt64() % 3)
                {
                    case 0: list[at] = (byte)rng.NextUInt64(); break;
                    case 1: list.RemoveAt(at); break;
                    default: list.Insert(at, list[at]); break;
                }
            }
            var path = paths[i % paths.Length];
            var r = await s.PostRaw(path, list.ToArray(), i % 5 == 0 ? "multipart/form-data; boundary=b" : "application/json");
            Assert.True(r.Status is 200 or 400 or 413 or 415 or 501, $"{path} answered {r.Status}: {r.Raw}");
            if (r.Status != 200) Assert.NotNull((string?)r.Body?["error"]);
        }
        // Random binary garbage, including to GET routes' neighbours.
        for (int i = 0; i < 10; i++)
        {
            var junk = new byte[1 + (int)(rng.NextUInt64() % 4096)];
            for (int j = 0; j < junk.Length; j++) junk[j] = (byte)rng.NextUInt64();
            var path = paths[i % paths.Length];
            var r = await s.PostRaw(path, junk, "application/json");
            Assert.True(r.Status == (path == "/v1/caption" ? 501 : 400), $"{path} answered {r.Status}: {r.Raw}");
        }
        Assert.Equal(200, (await s.PostJson("/v1/itm", new { image = Running.B64(png), text = "still alive" })).Status);
    }
}
