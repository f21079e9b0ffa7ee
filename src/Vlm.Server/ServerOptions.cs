namespace Vlm.Server;

/// <summary>What <c>vlm serve</c> is started with: model folders, where to listen, batching and request limits.</summary>
public sealed record ServerOptions
{
    /// <summary>HF BridgeTower folder (config.json, weights, tokenizer, preprocessor_config.json).</summary>
    public required string ModelPath { get; init; }
    /// <summary>Index file written by <c>vlm index build</c> (enables /v1/retrieve and /v1/index-image).</summary>
    public string? IndexPath { get; init; }
    /// <summary>HF BLIP captioning folder (enables /v1/caption).</summary>
    public string? BlipModelPath { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests); the bound address is <see cref="VlmServer.Address"/>.</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Most requests one forward pass serves.</summary>
    public int MaxBatch { get; init; } = 8;
    /// <summary>How long a worker waits for more requests once it holds one (milliseconds).</summary>
    public int BatchWindowMs { get; init; } = 2;
    /// <summary>Requests waiting per task kind before new ones get 503.</summary>
    public int QueueCapacity { get; init; } = 64;
    /// <summary>Per-request limit from enqueue to result; past it the client gets 504.</summary>
    public int TimeoutMs { get; init; } = 30_000;
    public int MaxBodyMb { get; init; } = 16;
    /// <summary>Largest decoded image (width × height) accepted.</summary>
    public long MaxPixels { get; init; } = 40_000_000;
    public int MaxTextChars { get; init; } = 2_000;
    /// <summary>Log requests and lifetime events to the console.</summary>
    public bool Verbose { get; init; }

    public long MaxBodyBytes => (long)MaxBodyMb * 1024 * 1024;

    /// <summary>Rejects nonsense before anything loads, naming the option.</summary>
    public void Validate()
    {
        static void Need(bool ok, string what) { if (!ok) throw new ArgumentException(what); }
        Need(!string.IsNullOrWhiteSpace(ModelPath), "--model is required");
        Need(Port is >= 0 and <= 65535, $"--port must be in 0..65535, got {Port}");
        Need(MaxBatch is >= 1 and <= 256, $"--max-batch must be in 1..256, got {MaxBatch}");
        Need(BatchWindowMs is >= 0 and <= 10_000, $"--batch-window-ms must be in 0..10000, got {BatchWindowMs}");
        Need(QueueCapacity is >= 1 and <= 100_000, $"--queue must be in 1..100000, got {QueueCapacity}");
        Need(TimeoutMs >= 1, $"--timeout-ms must be positive, got {TimeoutMs}");
        Need(MaxBodyMb is >= 1 and <= 1024, $"--max-body-mb must be in 1..1024, got {MaxBodyMb}");
        Need(MaxPixels >= 1, $"--max-pixels must be positive, got {MaxPixels}");
        Need(MaxTextChars >= 1, $"--max-text-chars must be positive, got {MaxTextChars}");
    }
}
