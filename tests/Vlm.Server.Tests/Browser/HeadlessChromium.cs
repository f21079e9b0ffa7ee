using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Vlm.Server.Tests.Browser;

/// <summary>
/// Debian's headless Chromium driven over the Chrome DevTools Protocol (CDP) with nothing but
/// <see cref="ClientWebSocket"/>: no Playwright / Selenium package is needed. The browser gets a throw-away profile
/// directory and a debugging port the OS picks (<c>--remote-debugging-port=0</c>; Chromium writes the port into
/// <c>DevToolsActivePort</c> in the profile). Disposing kills the browser's process tree and deletes the profile.
/// Protocol reference: https://chromedevtools.github.io/devtools-protocol/
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private ClientWebSocket? _ws;
    private Task? _receiver;
    private int _nextId;
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly CancellationTokenSource _stop = new();

    public string ProfileDir { get; }

    /// <summary>Uncaught page exceptions and console.error messages seen so far (the test fails on any).</summary>
    public ConcurrentQueue<string> PageErrors { get; } = new();

    /// <summary>
    /// The Chromium executable: <c>VLM_CHROMIUM</c> when set, else the first of chromium / chromium-browser /
    /// google-chrome on PATH; null when there is none.
    /// </summary>
    public static string? FindExecutable()
    {
        var env = Environment.GetEnvironmentVariable("VLM_CHROMIUM");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : null;
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var name in new[] { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" })
            foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                var f = Path.Combine(dir, name);
                if (File.Exists(f)) return f;
            }
        return null;
    }

    private HeadlessChromium(Process process, string profileDir)
    {
        _process = process;
        ProfileDir = profileDir;
    }

    public static async Task<HeadlessChromium> StartAsync(string executable, int width, int height, TimeSpan timeout)
    {
        var profile = Path.Combine(Path.GetTempPath(), "vlm-chromium-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        var psi = new ProcessStartInfo(executable)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        // --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        foreach (var a in new[]
                 {
                     "--headless=new", "--no-sandbox", "--remote-debugging-port=0", "--user-data-dir=" + profile,
                     "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--mute-audio", "--hide-scrollbars", $"--window-size={width},{height}",
                     "about:blank",
                 })
            psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {executable}");
        var browser = new HeadlessChromium(process, profile);
        process.ErrorDataReceived += (_, e) => { lock (browser._stderr) if (e.Data != null && browser._stderr.Length < 20000) browser._stderr.AppendLine(e.Data); };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            await browser.ConnectAsync(timeout);
            await browser.SendAsync("Emulation.setDeviceMetricsOverride",
                new JsonObject { ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false });
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    private string StderrTail()
    {
        lock (_stderr)
        {
            var s = _stderr.ToString().Trim();
            return s.Length > 2000 ? s[^2000..] : s;
        }
    }

    private async Task ConnectAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var portFile = Path.Combine(ProfileDir, "DevToolsActivePort");
        int port = 0;
        while (port == 0)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"chromium exited with code {_process.ExitCode} before opening its debugging port:\n{StderrTail()}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"chromium did not write {portFile} within {timeout.TotalSeconds:0} s:\n{StderrTail()}");
            if (File.Exists(portFile))
            {
                var lines = await File.ReadAllLinesAsync(portFile);
                if (lines.Length >= 1 && int.TryParse(lines[0], out var p)) port = p;
            }
            if (port == 0) await Task.Delay(50);
        }

        // The default about:blank tab is a "page" target; attach to it directly (no flattened sessions needed).
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        string? wsUrl = null;
        while (wsUrl == null)
        {
            var list = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list"))!.AsArray();
            wsUrl = list.FirstOrDefault(t => (string?)t!["type"] == "page")?["webSocketDebuggerUrl"]?.GetValue<string>();
            if (wsUrl == null)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("chromium has no page target");
                await Task.Delay(50);
            }
        }
        _ws = new ClientWebSocket();
        _ws.Options.KeepAliveInterval = TimeSpan.Zero;
        using var cts = new CancellationTokenSource(deadline - DateTime.UtcNow + TimeSpan.FromSeconds(1));
        await _ws.ConnectAsync(new Uri(wsUrl), cts.Token);
        _receiver = Task.Run(ReceiveLoop);
        await SendAsync("Runtime.enable");
        await SendAsync("Page.enable");
        await SendAsync("Log.enable");
    }

    private async Task ReceiveLoop()
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        try
        {
            while (_ws!.State == WebSocketState.Open && !_stop.IsCancellationRequested)
            {
                var r = await _ws.ReceiveAsync(buffer, _stop.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                using var doc = JsonDocument.Parse(message.ToArray());
                message.SetLength(0);
                var root = doc.RootElement;
                if (root.TryGetProperty("id", out var idEl))
                {
                    if (_pending.TryRemove(idEl.GetInt32(), out var tcs))
                    {
                        if (root.TryGetProperty("error", out var err))
                            tcs.TrySetException(new InvalidOperationException("CDP error: " + err.GetRawText()));
                        else
                            tcs.TrySetResult(root.GetProperty("result").Clone());
                    }
                }
                else OnEvent(root.GetProperty("method").GetString()!, root.TryGetProperty("params", out var p) ? p : default);
            }
        }
        catch (OperationCanceledException) { }
        catch (WebSocketException) { }
        finally
        {
            foreach (var (_, tcs) in _pending) tcs.TrySetException(new InvalidOperationException("the DevTools connection closed"));
        }
    }

    private void OnEvent(string method, JsonElement p)
    {
        switch (method)
        {
            case "Runtime.exceptionThrown":
                var d = p.GetProperty("exceptionDetails");
                var text = d.TryGetProperty("exception", out var ex) && ex.TryGetProperty("description", out var desc)
                    ? desc.GetString() : d.GetProperty("text").GetString();
                PageErrors.Enqueue("uncaught: " + text);
                break;
            case "Runtime.consoleAPICalled" when p.GetProperty("type").GetString() == "error":
                PageErrors.Enqueue("console.error: " + string.Join(" ", p.GetProperty("args").EnumerateArray()
                    .Select(a => a.TryGetProperty("value", out var v) ? v.ToString() : a.TryGetProperty("description", out var s) ? s.GetString() : "?")));
                break;
            case "Log.entryAdded" when p.GetProperty("entry").GetProperty("level").GetString() == "error":
                // Failed loads (a 404 script, a broken thumbnail) arrive here, not as exceptions.
                var e = p.GetProperty("entry");
                PageErrors.Enqueue($"log: {e.GetProperty("text").GetString()} {(e.TryGetProperty("url", out var u) ? u.GetString() : "")}");
                break;
        }
    }

    /// <summary>Sends one CDP command to the page and returns its <c>result</c>.</summary>
    public async Task<JsonElement> SendAsync(string method, JsonObject? parameters = null, TimeSpan? timeout = null)
    {
        var id = Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        var msg = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        await _ws!.SendAsync(Encoding.UTF8.GetBytes(msg.ToJsonString()), WebSocketMessageType.Text, true, _stop.Token);
        var t = timeout ?? TimeSpan.FromSeconds(30);
        if (await Task.WhenAny(tcs.Task, Task.Delay(t)) != tcs.Task)
        {
            _pending.TryRemove(id, out _);
            throw new TimeoutException($"CDP {method}: no answer within {t.TotalSeconds:0} s");
        }
        return await tcs.Task;
    }

    /// <summary>Evaluates a JavaScript expression in the page (promises awaited) and returns its JSON value.</summary>
    public async Task<JsonElement> EvalAsync(string expression)
    {
        var r = await SendAsync("Runtime.evaluate", new JsonObject
        {
            ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true,
        });
        if (r.TryGetProperty("exceptionDetails", out var ex))
            throw new InvalidOperationException($"page script failed: {expression}\n{ex.GetRawText()}");
        var result = r.GetProperty("result");
        return result.TryGetProperty("value", out var v) ? v.Clone() : default;
    }

    /// <summary>Polls a JavaScript condition until it is true; on timeout reports <paramref name="what"/> and a DOM probe.</summary>
    public async Task WaitForAsync(string condition, string what, TimeSpan timeout, string? probe = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var v = await EvalAsync($"Boolean({condition})");
            if (v.ValueKind == JsonValueKind.True) return;
            if (DateTime.UtcNow > deadline)
            {
                var seen = probe == null ? "" : "\npage state: " + (await EvalAsync(probe)).ToString();
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:0} s waiting for {what}{seen}" +
                                           (PageErrors.IsEmpty ? "" : "\npage errors:\n" + string.Join("\n", PageErrors)));
            }
            await Task.Delay(100);
        }
    }

    public async Task NavigateAsync(string url, TimeSpan timeout)
    {
        var r = await SendAsync("Page.navigate", new JsonObject { ["url"] = url });
        if (r.TryGetProperty("errorText", out var err)) throw new InvalidOperationException($"cannot open {url}: {err.GetString()}");
        await WaitForAsync("document.readyState === 'complete' && location.href !== 'about:blank'", $"{url} to load", timeout);
    }

    /// <summary>A real mouse click (pressed + released) at the centre of the first element matching
    /// <paramref name="selector"/>, once that point really is on the element (not covered, not moving away: a late
    /// layout change would otherwise send the click elsewhere).</summary>
    public async Task ClickAsync(string selector)
    {
        var sel = JsonSerializer.Serialize(selector);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        JsonElement box;
        while (true)
        {
            box = await EvalAsync($$"""
                (() => { const e = document.querySelector({{sel}}); if (!e) return null;
                         e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
                         const x = r.left + r.width / 2, y = r.top + r.height / 2, hit = document.elementFromPoint(x, y);
                         return {x, y, w: r.width, h: r.height, onTarget: hit !== null && (e === hit || e.contains(hit) || hit.contains(e) && hit.tagName === 'LABEL')}; })()
                """);
            if (box.ValueKind != JsonValueKind.Object) throw new InvalidOperationException($"no element matches {selector}");
            if (box.GetProperty("w").GetDouble() > 0 && box.GetProperty("h").GetDouble() > 0 && box.GetProperty("onTarget").GetBoolean())
            {
                // Same point twice, a frame apart: the layout has settled.
                await EvalAsync("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))");
                var again = await EvalAsync($"(() => {{ const r = document.querySelector({sel}).getBoundingClientRect(); return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()");
                if (Math.Abs(again.GetProperty("x").GetDouble() - box.GetProperty("x").GetDouble()) < 0.5 &&
                    Math.Abs(again.GetProperty("y").GetDouble() - box.GetProperty("y").GetDouble()) < 0.5) break;
            }
            if (DateTime.UtcNow > deadline) throw new InvalidOperationException($"{selector} is not visible and clickable: {box}");
            await Task.Delay(50);
        }
        double x = box.GetProperty("x").GetDouble(), y = box.GetProperty("y").GetDouble();
        foreach (var type in new[] { "mouseMoved", "mousePressed", "mouseReleased" })
            await SendAsync("Input.dispatchMouseEvent", new JsonObject
            {
                ["type"] = type, ["x"] = x, ["y"] = y, ["button"] = type == "mouseMoved" ? "none" : "left",
                ["clickCount"] = type == "mouseMoved" ? 0 : 1,
            });
    }

    /// <summary>Drags a file from "outside the browser" and drops it on the centre of <paramref name="selector"/>
    /// (dragenter, dragover, drop with a real <c>DataTransfer</c> holding the file).</summary>
    public async Task DropFileAsync(string selector, string path)
    {
        var box = await EvalAsync($$"""
            (() => { const e = document.querySelector({{JsonSerializer.Serialize(selector)}}); if (!e) return null;
                     e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();
                     return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()
            """);
        if (box.ValueKind != JsonValueKind.Object) throw new InvalidOperationException($"no element matches {selector}");
        foreach (var type in new[] { "dragEnter", "dragOver", "drop" })
            await SendAsync("Input.dispatchDragEvent", new JsonObject
            {
                ["type"] = type, ["x"] = box.GetProperty("x").GetDouble(), ["y"] = box.GetProperty("y").GetDouble(),
                ["data"] = new JsonObject { ["items"] = new JsonArray(), ["files"] = new JsonArray(path), ["dragOperationsMask"] = 1 },
            });
    }

    /// <summary>Focuses an input and types <paramref name="text"/> into it as keyboard input.</summary>
    public async Task TypeAsync(string selector, string text)
    {
        await ClickAsync(selector);
        var focused = await EvalAsync($"document.activeElement === document.querySelector({JsonSerializer.Serialize(selector)})");
        if (focused.ValueKind != JsonValueKind.True) throw new InvalidOperationException($"clicking {selector} did not focus it");
        await SendAsync("Input.insertText", new JsonObject { ["text"] = text });
    }

    /// <summary>A PNG of the whole page (beyond the viewport when the page is taller).</summary>
    public async Task<byte[]> ScreenshotAsync()
    {
        var m = await SendAsync("Page.getLayoutMetrics");
        var size = m.GetProperty("cssContentSize");
        var r = await SendAsync("Page.captureScreenshot", new JsonObject
        {
            ["format"] = "png", ["captureBeyondViewport"] = true,
            ["clip"] = new JsonObject
            {
                ["x"] = 0, ["y"] = 0, ["width"] = size.GetProperty("width").GetDouble(),
                ["height"] = size.GetProperty("height").GetDouble(), ["scale"] = 1,
            },
        });
        return Convert.FromBase64String(r.GetProperty("data").GetString()!);
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_ws != null)
        {
            try { _ws.Abort(); } catch (WebSocketException) { }
            _ws.Dispose();
        }
        if (_receiver != null) { try { await _receiver; } catch (Exception) { /* closing anyway */ } }
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(wait.Token);
        }
        catch (Exception) { /* already gone */ }
        _process.Dispose();
        // Chromium's helpers can still hold files for a moment after the kill.
        for (int i = 0; i < 20 && Directory.Exists(ProfileDir); i++)
        {
            try { Directory.Delete(ProfileDir, true); }
            catch (IOException) { await Task.Delay(100); }
            catch (UnauthorizedAccessException) { await Task.Delay(100); }
        }
        _stop.Dispose();
    }
}
