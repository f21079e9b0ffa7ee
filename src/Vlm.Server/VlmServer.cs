using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Vlm.Server;

/// <summary>
/// The Vlm HTTP service: an ASP.NET Core minimal API on Kestrel over one <see cref="InferenceEngine"/>. Routes are
/// listed in <see cref="OpenApi"/> (served at /openapi.json); errors are always JSON {"error": "..."} with 400
/// (bad field), 413 (body too large), 415, 501 (head/index/captioner absent), 503 (queue full), 504 (timeout).
/// </summary>
public sealed class VlmServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    public InferenceEngine Engine { get; }
    public ServerOptions Options { get; }
    /// <summary>The bound base address (e.g. http://127.0.0.1:8080), known after <see cref="StartAsync"/>.</summary>
    public Uri Address { get; private set; } = null!;

    private VlmServer(WebApplication app, InferenceEngine engine, ServerOptions options)
    {
        _app = app; Engine = engine; Options = options;
    }

    /// <summary>Loads the models and builds the app; call <see cref="StartAsync"/> to listen.</summary>
    public static VlmServer Create(ServerOptions options)
    {
        options.Validate();
        if (!IPAddress.TryParse(options.Host, out var ip) && options.Host != "localhost")
            throw new ArgumentException($"--host must be an IP address or localhost, got '{options.Host}'");
        var metrics = new Metrics();
        var engine = new InferenceEngine(options, metrics);
        try
        {
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
            builder.Logging.ClearProviders();
            if (options.Verbose) builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Information);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
                k.AddServerHeader = false;
                if (ip != null) k.Listen(ip, options.Port);
                else k.ListenLocalhost(options.Port);
            });
            builder.Services.Configure<FormOptions>(f =>
            {
                f.MultipartBodyLengthLimit = options.MaxBodyBytes;
                f.ValueLengthLimit = (int)Math.Min(int.MaxValue, options.MaxBodyBytes);
                f.ValueCountLimit = 64;
            });
            var app = builder.Build();
            var server = new VlmServer(app, engine, options);
            server.Configure();
            return server;
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        await _app.StartAsync(ct);
        var addr = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Address = new Uri(addr.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
    }

    /// <summary>Runs until <paramref name="ct"/> fires (Ctrl+C in the CLI).</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        await StartAsync(ct);
        try { await Task.Delay(Timeout.Infinite, ct); }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        try { await _app.StopAsync(); } catch (OperationCanceledException) { }
        await _app.DisposeAsync();
        Engine.Dispose();
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    private static IResult Ok(object o) => Results.Json(o, Json);

    private static async Task WriteError(HttpContext ctx, int status, string message)
    {
        if (ctx.Response.HasStarted) { ctx.Abort(); return; }
        ctx.Response.Clear();
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(new { error = message }));
    }

    private void Configure()
    {
        var app = _app;
        var metrics = Engine.Metrics;
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Vlm.Server");
        app.UseRouting();
        // Metrics outermost, so they see the status the error handler chose.
        app.Use(async (ctx, next) =>
        {
            long t0 = Stopwatch.GetTimestamp();
            try { await next(ctx); }
            finally
            {
                var route = (ctx.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                metrics.Request(route, ctx.Response.StatusCode, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
        });
        app.Use(async (ctx, next) =>
        {
            try { await next(ctx); }
            catch (ApiException e) { await WriteError(ctx, e.Status, e.Message); }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
            {
                var msg = e.StatusCode == 413
                    ? $"the request body is larger than the limit of {Options.MaxBodyBytes} bytes (--max-body-mb {Options.MaxBodyMb})"
                    : $"bad request: {e.Message}";
                await WriteError(ctx, e.StatusCode, msg);
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { /* the client went away */ }
            catch (Exception e)
            {
                log.LogError(e, "request {Path} failed", ctx.Request.Path);
                await WriteError(ctx, 500, $"internal error: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            }
        });

        var o = Options;
        var eng = Engine;
        MicroBatcher<TI, TO> Need<TI, TO>(MicroBatcher<TI, TO>? b, string what) => b ?? throw ApiException.NotImplemented(what);

        app.MapGet("/healthz", () => Ok(new
        {
            status = "ok",
            model = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(eng.Folder.Path))),
            heads = eng.Folder.Heads().ToArray(),
            index = eng.Index is null ? null : new { count = eng.Index.Count, dim = eng.Index.Dim },
            caption = eng.Captioner != null,
            mask_token = eng.Folder.Processor.Tokenizer.MaskToken,
            max_batch = o.MaxBatch,
        }));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        app.MapGet("/openapi.json", () => Results.Text(OpenApi.Document, "application/json; charset=utf-8"));

        app.MapPost("/v1/itm", async (HttpRequest req, CancellationToken ct) =>
        {
            var b = Need(eng.Itm, "the model folder has no ITM head (itm_score.*)");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var image = (await f.ImageAsync("image", ct))!;
            var text = f.Text("text")!;
            var r = await b.SubmitAsync(new TextImage(text, eng.Preprocess(image)), eng.Timeout, ct);
            return Ok(new { score = r.Probability, logits = new[] { r.NoMatchLogit, r.MatchLogit } });
        });

        app.MapPost("/v1/vqa", async (HttpRequest req, CancellationToken ct) =>
        {
            var b = Need(eng.Vqa, "the model folder has no VQA head (vqa_classifier.*); use a VQA fine-tuned BridgeTower folder");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var image = (await f.ImageAsync("image", ct))!;
            var question = f.Text("question")!;
            int k = f.Int("top_k", 5, 1, 1000);
            var logits = await b.SubmitAsync(new TextImage(question, eng.Preprocess(image)), eng.Timeout, ct);
            var labels = eng.Folder.Config.Id2Label;
            var answers = logits.Select((v, i) => (i, p: 1f / (1f + MathF.Exp(-v))))
                .OrderByDescending(a => a.p).ThenBy(a => a.i).Take(k)
                .Select(a => new { answer = labels != null && a.i < labels.Count ? labels[a.i] : a.i.ToString(CultureInfo.InvariantCulture), probability = a.p });
            return Ok(new { answers });
        });

        app.MapPost("/v1/embed", async (HttpRequest req, CancellationToken ct) =>
        {
            var bt = Need(eng.EmbedText, "the model folder has no contrastive heads (itc_*)");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var image = await f.ImageAsync("image", ct, optional: true);
            var text = f.Text("text", optional: true);
            if (image is null && text is null) throw ApiException.BadRequest("give 'image', 'text' or both");
            var ti = text is null ? null : bt.SubmitAsync(text, eng.Timeout, ct);
            var ii = image is null ? null : eng.EmbedImage!.SubmitAsync(eng.Preprocess(image), eng.Timeout, ct);
            var res = new Dictionary<string, float[]>();
            if (ii != null) res["image_embedding"] = await ii;
            if (ti != null) res["text_embedding"] = await ti;
            return Ok(res);
        });

        app.MapPost("/v1/retrieve", async (HttpRequest req, CancellationToken ct) =>
        {
            if (eng.Index is null) throw ApiException.NotImplemented("no index is loaded; start the server with --index <file from 'vlm index build'>");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var text = f.Text("text", optional: true);
            var image = await f.ImageAsync("image", ct, optional: true);
            if ((text is null) == (image is null)) throw ApiException.BadRequest("give exactly one of 'text' or 'image'");
            int k = f.Int("top_k", 5, 1, 1000);
            bool rerank = f.Bool("rerank", true);
            var rows = await eng.RetrieveAsync(text, image is null ? null : eng.Preprocess(image), k, rerank, ct);
            return Ok(new
            {
                results = rows.Select(r => new
                {
                    id = r.Entry.Id,
                    path = r.Entry.Source,
                    kind = r.Entry.Kind,
                    score = r.Score,
                    itm_score = r.ItmScore,
                    image_url = r.Entry.Kind == "image" ? IndexImageUrl(r.Entry.Id) : null,
                }),
            });
        });

        app.MapGet("/v1/index-image/{**id}", (string id) =>
        {
            if (eng.Index is null) throw ApiException.NotImplemented("no index is loaded; start the server with --index");
            var key = Uri.UnescapeDataString(id);
            var entry = eng.Index.Entries.FirstOrDefault(e => e.Id == key && e.Kind == "image");
            if (entry is null) return Results.Json(new { error = $"no image entry '{key}' in the index" }, statusCode: 404);
            // Only paths the index names are served (no path from the request reaches the file system); a relative
            // source resolves against the working directory, as `vlm index` wrote it.
            var file = Path.GetFullPath(entry.Source);
            if (!File.Exists(file)) return Results.Json(new { error = $"the indexed file of '{key}' is gone" }, statusCode: 404);
            return Results.File(file, ContentType(file));
        });

        app.MapPost("/v1/fill-mask", async (HttpRequest req, CancellationToken ct) =>
        {
            var b = Need(eng.FillMask, "the model folder has no MLM head (mlm_score.*)");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var text = f.Text("text")!;
            int k = f.Int("top_k", 5, 1, 1000);
            var image = await f.ImageAsync("image", ct, optional: true)
                ?? Vision.ImageDecoder.Decode(DemoImages.All[0].Png).ToRgb();   // BridgeTower's MLM is image-conditioned
            var tok = eng.Folder.Processor.Tokenizer;
            var maskToken = tok.MaskToken ?? throw ApiException.NotImplemented("the tokenizer has no mask token");
            if (!text.Contains(maskToken, StringComparison.Ordinal)) throw ApiException.BadRequest($"'text' has no mask token {maskToken}");
            var r = await b.SubmitAsync(new FillMaskInput(text, eng.Preprocess(image), k), eng.Timeout, ct);
            if (r.MaskPositions.Length == 0) throw ApiException.BadRequest($"'text' has no mask token {maskToken} within the first {eng.MaxTokens} tokens");
            object Preds(int m) => r.Predictions[m].Select(p =>
            {
                var ids = (long[])r.InputIds.Clone();
                ids[r.MaskPositions[m]] = p.TokenId;
                return new { token = tok.Decode([p.TokenId]), token_id = p.TokenId, score = p.Probability, sequence = tok.Decode(ids, skipSpecialTokens: true) };
            }).ToArray();
            return Ok(new { predictions = Preds(0), masks = Enumerable.Range(0, r.MaskPositions.Length).Select(Preds).ToArray() });
        });

        app.MapPost("/v1/caption", async (HttpRequest req, CancellationToken ct) =>
        {
            var b = Need(eng.Caption, "captioning is off: start the server with --blip-model <HF BLIP captioning folder>");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var image = (await f.ImageAsync("image", ct))!;
            var prompt = f.Text("prompt", optional: true);
            int max = f.Int("max_length", 30, 1, 128);
            var caption = await b.SubmitAsync(new CaptionInput(image, prompt, max), eng.Timeout, ct);
            return Ok(new { caption });
        });

        app.MapPost("/v1/attention", async (HttpRequest req, CancellationToken ct) =>
        {
            var b = Need(eng.Attention, "the model folder has no ITM head (itm_score.*), which attention maps run through");
            var f = await RequestFields.ReadAsync(req, o, ct);
            var image = (await f.ImageAsync("image", ct))!;
            var text = f.Text("text")!;
            var (px, region) = eng.PreprocessWithRegion(image);
            var r = await b.SubmitAsync(new TextImage(text, px), eng.Timeout, ct);
            return Ok(new
            {
                grid_w = r.GridW, grid_h = r.GridH, tokens = r.Tokens, heatmap = r.Cls, token_heatmaps = r.PerToken,
                region = new { x = region[0], y = region[1], w = region[2], h = region[3] },
            });
        });

        app.MapGet("/v1/demo-images", () => Ok(DemoImages.All.Select(d => new { name = d.Name, url = $"/demo/{d.Name}.png", caption = d.Caption })));
        app.MapGet("/demo/{name}.png", (string name) =>
            DemoImages.Find(name) is { } d ? Results.Bytes(d.Png, "image/png") : Results.Json(new { error = $"no demo image '{name}'" }, statusCode: 404));

        app.MapGet("/", () => StaticFile("index.html"));
        // A catch-all route rather than MapFallback, whose pattern skips paths that look like files (app.js).
        app.Map("/{**path}", (HttpContext ctx) =>
        {
            if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
                return Results.Json(new { error = $"no route {ctx.Request.Method} {ctx.Request.Path}" }, statusCode: 404);
            return StaticFile(ctx.Request.Path.Value!.TrimStart('/'));
        });
    }

    internal static string IndexImageUrl(string id) => "/v1/index-image/" + string.Join('/', id.Split('/').Select(Uri.EscapeDataString));

    private static readonly FileExtensionContentTypeProvider Types = new();

    private static string ContentType(string path) => Types.TryGetContentType(path, out var t) ? t : "application/octet-stream";

    private static readonly Lazy<Dictionary<string, byte[]>> Web = new(() =>
    {
        var asm = typeof(VlmServer).Assembly;
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var name in asm.GetManifestResourceNames())
        {
            var n = name.Replace('\\', '/');
            if (!n.StartsWith("wwwroot/", StringComparison.Ordinal)) continue;
            using var s = asm.GetManifestResourceStream(name)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            files[n["wwwroot/".Length..]] = ms.ToArray();
        }
        return files;
    });

    /// <summary>The embedded page's files (wwwroot/), by path relative to wwwroot.</summary>
    public static IReadOnlyCollection<string> WebFiles => Web.Value.Keys;

    private static IResult StaticFile(string path) =>
        Web.Value.TryGetValue(path, out var bytes)
            ? Results.Bytes(bytes, ContentType(path))
            : Results.Json(new { error = $"not found: /{path}" }, statusCode: 404);

    /// <summary>Every route the app maps, as "METHOD pattern" (for the OpenAPI completeness test).</summary>
    public IEnumerable<string> Routes() =>
        ((IEndpointRouteBuilder)_app).DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["*"]).Select(m => $"{m} {e.RoutePattern.RawText}"));
}
