using System.CommandLine;
using Vlm.Server;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm serve --model &lt;BridgeTower folder&gt; [--index file] [--blip-model folder] ...</c>: the HTTP service
/// (Vlm.Server) on 127.0.0.1:8080 until Ctrl+C. With <c>--load-test SECONDS</c> it instead starts on a free loopback
/// port, drives <c>--clients</c> concurrent closed-loop clients against /v1/itm on a demo image, prints
/// p50/p99 latency and throughput, and exits (the reproducible figure in docs/performance.md).
/// </summary>
public static class Serve
{
    public static Command Build()
    {
        var d = new ServerOptions { ModelPath = "" };
        var model = ModelCommands.ModelOption();
        var index = new Option<string?>("--index") { Description = "Retrieval index from 'vlm index build' (enables /v1/retrieve)" };
        var blip = new Option<string?>("--blip-model") { Description = "HF BLIP captioning folder (enables /v1/caption)" };
        var host = new Option<string>("--host") { Description = "Address to listen on (loopback by default)", DefaultValueFactory = _ => d.Host };
        var port = new Option<int>("--port") { Description = "Port (0 = any free port)", DefaultValueFactory = _ => d.Port };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most requests per batched forward", DefaultValueFactory = _ => d.MaxBatch };
        var window = new Option<int>("--batch-window-ms") { Description = "How long a worker waits to fill a batch", DefaultValueFactory = _ => d.BatchWindowMs };
        var queue = new Option<int>("--queue") { Description = "Waiting requests per task before 503", DefaultValueFactory = _ => d.QueueCapacity };
        var timeout = new Option<int>("--timeout-ms") { Description = "Per-request time limit before 504", DefaultValueFactory = _ => d.TimeoutMs };
        var maxBody = new Option<int>("--max-body-mb") { Description = "Largest request body (413 above)", DefaultValueFactory = _ => d.MaxBodyMb };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest decoded image, width × height (400 above)", DefaultValueFactory = _ => d.MaxPixels };
        var maxText = new Option<int>("--max-text-chars") { Description = "Longest text field (400 above)", DefaultValueFactory = _ => d.MaxTextChars };
        var verbose = new Option<bool>("--verbose") { Description = "Log every request" };
        var load = new Option<double?>("--load-test") { Description = "Run a closed-loop load test for this many seconds against /v1/itm, print latency and throughput, exit" };
        var clients = new Option<int>("--clients") { Description = "Concurrent clients of --load-test", DefaultValueFactory = _ => 8 };
        var cmd = new Command("serve", "Serve the model over HTTP (JSON API, web page, metrics)")
            { model, index, blip, host, port, maxBatch, window, queue, timeout, maxBody, maxPixels, maxText, verbose, load, clients };
        cmd.SetAction(pr => ModelCommands.Guard("serve", () =>
        {
            var loadSecs = pr.GetValue(load);
            var opts = new ServerOptions
            {
                ModelPath = pr.GetValue(model)!, IndexPath = pr.GetValue(index), BlipModelPath = pr.GetValue(blip),
                Host = pr.GetValue(host)!, Port = loadSecs is null ? pr.GetValue(port) : 0,
                MaxBatch = pr.GetValue(maxBatch), BatchWindowMs = pr.GetValue(window), QueueCapacity = pr.GetValue(queue),
                TimeoutMs = pr.GetValue(timeout), MaxBodyMb = pr.GetValue(maxBody), MaxPixels = pr.GetValue(maxPixels),
                MaxTextChars = pr.GetValue(maxText), Verbose = pr.GetValue(verbose),
            };
            if (loadSecs is <= 0) return Cli.Fail("serve: --load-test must be a positive number of seconds");
            if (pr.GetValue(clients) < 1) return Cli.Fail("serve: --clients must be ≥ 1");
            return loadSecs is double secs ? LoadTestRun(opts, secs, pr.GetValue(clients)) : Run(opts);
        }));
        return cmd;
    }

    private static int Run(ServerOptions opts)
    {
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var server = VlmServer.Create(opts);
        try
        {
            server.StartAsync().GetAwaiter().GetResult();
            Console.WriteLine($"vlm serve: {opts.ModelPath} ({string.Join(", ", server.Engine.Folder.Heads())}) on {server.Address}  (Ctrl+C stops)");
            try { Task.Delay(Timeout.Infinite, stop.Token).GetAwaiter().GetResult(); }
            catch (OperationCanceledException) { }
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return 0;
    }

    private static int LoadTestRun(ServerOptions opts, double seconds, int clients)
    {
        var server = VlmServer.Create(opts);
        try
        {
            server.StartAsync().GetAwaiter().GetResult();
            if (server.Engine.Itm is null) return Cli.Fail("serve: --load-test drives /v1/itm, and the model folder has no ITM head");
            var body = LoadTest.DemoItmBody();
            // Warm-up: the first forwards JIT the kernels and fill the buffer pool.
            LoadTest.RunAsync(server.Address, "/v1/itm", body, clients, TimeSpan.FromSeconds(Math.Min(2, seconds / 2))).GetAwaiter().GetResult();
            var r = LoadTest.RunAsync(server.Address, "/v1/itm", body, clients, TimeSpan.FromSeconds(seconds)).GetAwaiter().GetResult();
            var (batches, reqs) = server.Engine.Metrics.BatchTotals("itm");
            Console.WriteLine($"POST /v1/itm, {clients} clients, --max-batch {opts.MaxBatch}: {r}");
            Console.WriteLine($"mean batch size {(batches == 0 ? 0 : reqs / batches):F2} (warm-up included), {Environment.ProcessorCount} cores, load average {LoadAverage()}");
            return r.Errors == 0 ? 0 : 1;
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
    }
}
