using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Vlm.Cli.Tests;
using Vlm.Models.BridgeTower;
using Vlm.Models.Retrieval;
using Vlm.TestSupport;
using Vlm.Vision;

namespace Vlm.Server.Tests;

/// <summary>
/// A tiny random BridgeTower folder (ITM, MLM, contrastive, VQA heads), an image index over its five scenes, and
/// helpers to start a <see cref="VlmServer"/> on a free loopback port with chosen options.
/// </summary>
public sealed class ModelFixture : IDisposable
{
    public TinyBridgeTowerFolder Tiny { get; } = new();
    public string IndexPath => Path.Combine(Tiny.Dir, "images.vlmindex");
    public string CaptionIndexPath => Path.Combine(Tiny.Dir, "captions.vlmindex");
    public static readonly string[] Captions = ["a red circle", "two blue squares", "a green cross above a white diamond"];
    /// <summary>The tiny BLIP captioning fixture with a BERT vocabulary (as the CLI caption tests build it).</summary>
    public string BlipPath => Path.Combine(Tiny.Dir, "blip");
    /// <summary>The same folder opened directly: the unbatched reference the service must agree with.</summary>
    public BridgeTowerFolder Direct { get; }

    public ModelFixture()
    {
        Direct = BridgeTowerFolder.Open(Tiny.Model);
        var idx = new VectorIndex(Direct.Config.ContrastiveHiddenSize!.Value);
        Directory.CreateDirectory(Path.Combine(Tiny.Images, "sub"));
        File.Copy(Tiny.ImagePath(4), Path.Combine(Tiny.Images, "sub", "scene4 copy.png"));
        var files = Enumerable.Range(0, 4).Select(Tiny.ImagePath).Append(Path.Combine(Tiny.Images, "sub", "scene4 copy.png")).ToList();
        var e = Direct.Contrastive.EmbedImages(Direct.Processor.EncodeImages(files.Select(f => ImageDecoder.Decode(f).ToRgb()).ToList()));
        for (int i = 0; i < files.Count; i++)
            idx.Add(new IndexEntry(Path.GetRelativePath(Tiny.Images, files[i]), files[i], "image"), e.Select(0, i).ToArray());
        idx.Save(IndexPath);
        var (ids, mask) = Direct.Processor.EncodeTexts(Captions);
        var te = Direct.Contrastive.EmbedTexts(ids, mask);
        var cidx = new VectorIndex(idx.Dim);
        for (int i = 0; i < Captions.Length; i++) cidx.Add(new IndexEntry($"captions.txt:{i + 1}", Captions[i], "text"), te.Select(0, i).ToArray());
        cidx.Save(CaptionIndexPath);

        Directory.CreateDirectory(BlipPath);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.Path("blip_caption", f), Path.Combine(BlipPath, f));
        foreach (var f in new[] { "vocab.txt", "tokenizer_config.json", "special_tokens_map.json" })
            File.Copy(Fixtures.Path("tokenizers", "bert_uncased", f), Path.Combine(BlipPath, f));
    }

    public ServerOptions Options(Func<ServerOptions, ServerOptions>? edit = null)
    {
        var o = new ServerOptions { ModelPath = Tiny.Model, IndexPath = IndexPath, Port = 0 };
        return edit is null ? o : edit(o);
    }

    public static async Task<Running> StartAsync(ServerOptions options)
    {
        var server = VlmServer.Create(options);
        await server.StartAsync();
        return new Running(server);
    }

    public void Dispose()
    {
        Direct.Dispose();
        Tiny.Dispose();
    }
}

/// <summary>A started server and an HttpClient pointed at it.</summary>
public sealed class Running(VlmServer server) : IAsyncDisposable
{
    public VlmServer Server { get; } = server;
    public HttpClient Http { get; } = new() { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };

    public static string B64(byte[] bytes) => Convert.ToBase64String(bytes);

    public async Task<(int Status, JsonNode? Body, string Raw)> PostJson(string path, object body)
    {
        using var content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        return await Send(path, content);
    }

    public async Task<(int Status, JsonNode? Body, string Raw)> PostRaw(string path, byte[] body, string contentType)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return await Send(path, content);
    }

    public async Task<(int Status, JsonNode? Body, string Raw)> Send(string path, HttpContent content)
    {
        using var resp = await Http.PostAsync(path, content);
        var raw = await resp.Content.ReadAsStringAsync();
        JsonNode? node = null;
        try { node = JsonNode.Parse(raw); } catch (JsonException) { }
        return ((int)resp.StatusCode, node, raw);
    }

    public async Task<(int Status, JsonNode? Body, string Raw)> Get(string path)
    {
        using var resp = await Http.GetAsync(path);
        var raw = await resp.Content.ReadAsStringAsync();
        JsonNode? node = null;
        try { node = JsonNode.Parse(raw); } catch (JsonException) { }
        return ((int)resp.StatusCode, node, raw);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}

/// <summary>One tiny folder and index for every server test class (building them is most of the suite's time).</summary>
[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ModelFixture>
{
    public const string Name = "server";
}
