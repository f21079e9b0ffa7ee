using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Cli.Tests;

namespace Vlm.Server.Tests.Browser;

/// <summary>
/// A fact that is skipped, visibly, when <c>VLM_SKIP_BROWSER_TEST=1</c>. Otherwise a missing Chromium is a failure:
/// the page's only end-to-end test must not pass on a machine that cannot run it.
/// </summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("VLM_SKIP_BROWSER_TEST") == "1")
            Skip = "VLM_SKIP_BROWSER_TEST=1: the web page's browser test is skipped";
    }
}

/// <summary>
/// The web page end to end: a real server on a loopback port (tiny random BridgeTower with ITM/ITC/VQA heads and a
/// small index) and Debian's headless Chromium driven over the DevTools protocol — clicks and typing are real input
/// events, and what is asserted is what the page put in its DOM and on its canvas.
/// </summary>
public sealed class PageTests : IClassFixture<PageTests.Session>
{
    // Generous: this bounds a wait on a shared, possibly overloaded CI machine; a passing run takes a few seconds.
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private readonly Session _s;

    public PageTests(Session s) => _s = s;

    /// <summary>One model folder (with an index), one server and one browser for the class: starting Chromium is the
    /// slow part.</summary>
    public sealed class Session : IAsyncLifetime
    {
        public ModelFixture Model { get; } = new();
        public Running Server { get; private set; } = null!;
        public HeadlessChromium Browser { get; private set; } = null!;
        public string? StartError { get; private set; }

        public async Task InitializeAsync()
        {
            if (Environment.GetEnvironmentVariable("VLM_SKIP_BROWSER_TEST") == "1") return;
            var exe = HeadlessChromium.FindExecutable();
            if (exe == null)
            {
                var env = Environment.GetEnvironmentVariable("VLM_CHROMIUM");
                StartError = (string.IsNullOrEmpty(env)
                                 ? "Chromium was not found (no chromium / chromium-browser / google-chrome on PATH). "
                                 : $"VLM_CHROMIUM={env} does not exist. ") +
                             "Install Debian's 'chromium' package (./test.sh does so when run as root), point VLM_CHROMIUM at a " +
                             "Chromium or Chrome binary, or set VLM_SKIP_BROWSER_TEST=1 to skip the browser test.";
                return;
            }
            Server = await ModelFixture.StartAsync(Model.Options());
            Browser = await HeadlessChromium.StartAsync(exe, 1280, 900, Wait);
        }

        public async Task DisposeAsync()
        {
            if (Browser != null) await Browser.DisposeAsync();
            if (Server != null) await Server.DisposeAsync();
            Model.Dispose();
        }

        public HeadlessChromium Ready()
        {
            Assert.True(StartError == null, StartError);
            return Browser;
        }
    }

    private static string Url(Running r) => r.Server.Address.ToString();

    private const string Probe = """
        JSON.stringify({ error: document.getElementById('error').textContent, status: document.getElementById('status').textContent,
                         answers: document.querySelectorAll('#vqa-answers li').length, score: document.getElementById('itm-score').dataset.score,
                         heat: document.getElementById('heat').dataset.drawn })
        """;

    [BrowserFact]
    public async Task Demo_image_and_question_show_answers_match_score_and_heat_map()
    {
        var b = _s.Ready();
        await b.NavigateAsync(Url(_s.Server), Wait);
        await b.WaitForAsync("document.querySelectorAll('#demo-strip button').length > 0", "the demo image strip", Wait);

        await b.ClickAsync("#demo-strip li:first-child button");
        await b.WaitForAsync("!document.getElementById('stage').hidden && document.getElementById('preview').naturalWidth > 0",
            "the demo image to show", Wait);
        const string question = "what color is the circle?";
        await b.TypeAsync("#text", question);
        await b.ClickAsync("#submit");
        await b.WaitForAsync("""
            document.querySelectorAll('#vqa-answers li').length > 0 && document.getElementById('itm-score').dataset.score !== ''
              && document.getElementById('heat').dataset.drawn === 'true' && !document.getElementById('submit').disabled
            """, "VQA answers, the ITM score and the heat map", Wait, Probe);

        Assert.Equal("", (await b.EvalAsync("document.getElementById('error').textContent")).GetString());
        Assert.Equal(JsonValueKind.True, (await b.EvalAsync("document.getElementById('error').hidden")).ValueKind);

        // Answers: labels of the model's id2label, probabilities that are probabilities, best first.
        var answers = (await b.EvalAsync("""
            [...document.querySelectorAll('#vqa-answers li')].map(li => ({ a: li.dataset.answer, p: Number(li.dataset.probability),
                                                                           text: li.textContent }))
            """)).EnumerateArray().ToList();
        Assert.InRange(answers.Count, 1, TinyBridgeTowerFolder.Answers.Length);
        // VQA scores are per-answer sigmoids (multi-label, as the paper trains them), so they need not sum to 1.
        double prev = 1;
        foreach (var a in answers)
        {
            var label = a.GetProperty("a").GetString()!;
            var p = a.GetProperty("p").GetDouble();
            Assert.Contains(label, TinyBridgeTowerFolder.Answers);
            Assert.Contains(label, a.GetProperty("text").GetString()!);   // shown, not only stored
            Assert.InRange(p, 0, prev);
            prev = p;
        }

        // The page sent the demo image and the typed text: the server, asked directly, gives the same numbers.
        var demoBytes = await _s.Server.Http.GetByteArrayAsync(
            (await b.EvalAsync("document.querySelector('#demo-strip button img').getAttribute('src')")).GetString());
        var direct = await PostAsync("/v1/itm", new JsonObject { ["image"] = Convert.ToBase64String(demoBytes), ["text"] = question });
        var shown = double.Parse((await b.EvalAsync("document.getElementById('itm-score').dataset.score")).GetString()!,
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(shown, 0, 1);
        // Not bit-equal: the service may micro-batch the page's request with others (e.g. the retrieval re-rank's ITM
        // calls), and a padded batch rounds differently in the last bits.
        Assert.True(Math.Abs(direct["score"]!.GetValue<double>() - shown) < 1e-4, $"page shows {shown}, /v1/itm says {direct["score"]}");
        var vqa = await PostAsync("/v1/vqa", new JsonObject { ["image"] = Convert.ToBase64String(demoBytes), ["question"] = question, ["top_k"] = 5 });
        var directAnswers = vqa["answers"]!.AsArray().ToDictionary(x => x!["answer"]!.GetValue<string>(), x => x!["probability"]!.GetValue<double>());
        Assert.Equal(directAnswers.Count, answers.Count);
        foreach (var a in answers)
        {
            var label = a.GetProperty("a").GetString()!;
            Assert.True(directAnswers.TryGetValue(label, out var q), $"the page shows '{label}', /v1/vqa does not");
            Assert.True(Math.Abs(q - a.GetProperty("p").GetDouble()) < 1e-4, $"'{label}': page {a.GetProperty("p")}, /v1/vqa {q}");
        }

        // The heat map was painted over the picture: a canvas as large as the image, opaque colour over at least the
        // centre square the model saw (BridgeTower centre-crops), more than one colour.
        var heat = await b.EvalAsync("""
            (() => { const c = document.getElementById('heat'), img = document.getElementById('preview');
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let painted = 0, distinct = new Set();
                     for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) painted++; distinct.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); }
                     return { w: c.width, h: c.height, cw: c.clientWidth, ch: c.clientHeight, iw: img.clientWidth, ih: img.clientHeight,
                              painted, total: d.length / 4, distinct: distinct.size }; })()
            """);
        Assert.True(heat.GetProperty("w").GetInt32() > 0, heat.ToString());
        Assert.Equal(heat.GetProperty("iw").GetInt32(), heat.GetProperty("cw").GetInt32());
        Assert.Equal(heat.GetProperty("ih").GetInt32(), heat.GetProperty("ch").GetInt32());
        double iw = heat.GetProperty("iw").GetInt32(), ih = heat.GetProperty("ih").GetInt32();
        Assert.InRange(heat.GetProperty("painted").GetInt32() / (double)heat.GetProperty("total").GetInt32(),
            Math.Min(iw, ih) / Math.Max(iw, ih) - 0.02, 1);
        Assert.True(heat.GetProperty("distinct").GetInt32() > 1, "the heat map is one flat colour: " + heat);

        // One token chip per text token (plus "whole text"), as the service tokenised the question; picking one redraws.
        var att = await PostAsync("/v1/attention", new JsonObject { ["image"] = Convert.ToBase64String(demoBytes), ["text"] = question });
        var tokens = att["tokens"]!.AsArray().Select(t => t!.GetValue<string>()).ToList();
        Assert.Equal(tokens.Count + 1, (await b.EvalAsync("document.querySelectorAll('#heat-tokens input').length")).GetInt32());
        await b.ClickAsync("#heat-tokens label:nth-of-type(3)");
        await b.WaitForAsync("document.querySelector('#heat-tokens input[value=\"1\"]').checked && document.getElementById('heat').dataset.drawn === 'true'",
            "the second token's heat map", Wait, Probe);

        // The session's server has an index: the text's nearest images come back as loaded thumbnails.
        await b.WaitForAsync("""
            document.querySelectorAll('#ret-grid img').length > 0 && !document.getElementById('retrieval').hidden
              && [...document.querySelectorAll('#ret-grid img')].every(i => i.complete && i.naturalWidth > 0)
            """, "retrieval thumbnails", Wait, Probe);
        await b.EvalAsync("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))");
        var png = await b.ScreenshotAsync();
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        var shotPath = Environment.GetEnvironmentVariable("VLM_WEB_SCREENSHOT");
        if (!string.IsNullOrEmpty(shotPath)) await File.WriteAllBytesAsync(shotPath, png);

        AssertNoPageErrors(b);
    }

    [BrowserFact]
    public async Task Server_errors_are_shown_to_the_user()
    {
        var b = _s.Ready();
        // A server without an index (the page must not offer retrieval at all) but with a BLIP captioner.
        await using var server = await ModelFixture.StartAsync(_s.Model.Options(o => o with { IndexPath = null, BlipModelPath = _s.Model.BlipPath }));
        await b.NavigateAsync(Url(server), Wait);
        await b.WaitForAsync("document.getElementById('model-info').textContent.includes('no index')", "the page to read /healthz", Wait);

        // Drag and drop: a scene PNG dropped on the drop zone becomes the image.
        await b.DropFileAsync("#drop", _s.Model.Tiny.ImagePath(1));
        await b.WaitForAsync("document.getElementById('preview').alt.endsWith('scene1.png') && document.getElementById('preview').naturalWidth > 0",
            "the dropped image to show", Wait, "document.getElementById('preview').alt + ' | ' + document.getElementById('error').textContent");
        // With a captioner, a chosen image gets its caption: the one /v1/caption gives for the same file.
        await b.WaitForAsync("!document.getElementById('caption-card').hidden", "the BLIP caption", Wait, Probe);
        var capDirect = await PostAsync(server, "/v1/caption", new JsonObject { ["image"] = Convert.ToBase64String(File.ReadAllBytes(_s.Model.Tiny.ImagePath(1))) });
        Assert.Equal(capDirect["caption"]!.GetValue<string>(), (await b.EvalAsync("document.getElementById('caption').textContent")).GetString());

        // A file that claims to be a PNG but is not: picked through the real <input type=file>.
        var bad = Path.Combine(_s.Model.Tiny.Dir, "broken.png");
        await File.WriteAllBytesAsync(bad, "not an image at all"u8.ToArray());
        var doc = await b.SendAsync("DOM.getDocument");
        var node = await b.SendAsync("DOM.querySelector", new JsonObject
        {
            ["nodeId"] = doc.GetProperty("root").GetProperty("nodeId").GetInt32(), ["selector"] = "#file",
        });
        await b.SendAsync("DOM.setFileInputFiles", new JsonObject
        {
            ["files"] = new JsonArray(bad), ["nodeId"] = node.GetProperty("nodeId").GetInt32(),
        });
        // Taken, and found unviewable by the browser (the page then hides the preview: the layout settles).
        await b.WaitForAsync("document.getElementById('preview').alt.endsWith('broken.png') && document.getElementById('stage').hidden",
            "the picked file to be taken", Wait);
        await b.TypeAsync("#text", "is there a circle?");
        await b.ClickAsync("#submit");
        await b.WaitForAsync("!document.getElementById('error').hidden && !document.getElementById('submit').disabled",
            "an error message", Wait, Probe);

        Assert.Equal(JsonValueKind.True, (await b.EvalAsync("document.getElementById('retrieval').hidden")).ValueKind);
        var direct = await server.Http.PostAsJsonAsync("/v1/vqa", new { image = Convert.ToBase64String(File.ReadAllBytes(bad)), question = "x" });
        Assert.False(direct.IsSuccessStatusCode);
        var serverMessage = JsonNode.Parse(await direct.Content.ReadAsStringAsync())!["error"]!.GetValue<string>();
        var shown = (await b.EvalAsync("document.getElementById('error').textContent")).GetString()!;
        Assert.Contains("Answers: " + serverMessage, shown);
        Assert.Equal(0, (await b.EvalAsync("document.querySelectorAll('#vqa-answers li').length")).GetInt32());
        Assert.Contains("error", (await b.EvalAsync("document.getElementById('status').textContent")).GetString()!);
    }

    private void AssertNoPageErrors(HeadlessChromium b)
    {
        // Failed fetches of optional parts (no BLIP model → 501, no index → 404/503) are logged by Chromium as
        // resource errors; they are expected. Anything else (a script error, a missing asset) is a failure.
        var unexpected = b.PageErrors.Where(e => !(e.Contains("Failed to load resource") &&
                                                   (e.Contains("/v1/caption") || e.Contains("/v1/retrieve")))).ToList();
        Assert.True(unexpected.Count == 0, "page errors:\n" + string.Join("\n", unexpected));
    }

    private Task<JsonNode> PostAsync(string path, JsonObject body) => PostAsync(_s.Server, path, body);

    private static async Task<JsonNode> PostAsync(Running server, string path, JsonObject body)
    {
        var r = await server.Http.PostAsync(path, new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"{path}: {(int)r.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }
}
