using System.CommandLine;
using Vlm.Core.IO;

namespace Vlm.Cli;

/// <summary>
/// `vlm convert`: rewrites a checkpoint (pytorch_model.bin, a sharded index, safetensors, or an HF model folder)
/// as safetensors. The pickle is read by the restricted unpickler, so converting an untrusted .bin runs nothing.
/// Tensors are streamed one at a time; floating tensors are written as F32 (f16/bf16 are widened).
/// </summary>
public static class Convert
{
    public static Command Build()
    {
        var input = new Argument<string>("input") { Description = "pytorch_model.bin, *.safetensors, *.index.json, or a model folder" };
        var output = new Option<string?>("--out", "-o") { Description = "Output file (default: model.safetensors beside the input), or a folder with --max-shard-bytes" };
        var shard = new Option<long?>("--max-shard-bytes") { Description = "Write a sharded checkpoint (model-0000k-of-0000N.safetensors + index) with shards of at most this many bytes" };
        var force = new Option<bool>("--force", "-f") { Description = "Overwrite an existing output" };
        var cmd = new Command("convert", "Convert a checkpoint (pytorch_model.bin or an HF folder) to safetensors");
        cmd.Arguments.Add(input);
        cmd.Options.Add(output);
        cmd.Options.Add(shard);
        cmd.Options.Add(force);
        cmd.SetAction(parse =>
        {
            string src = parse.GetValue(input)!;
            try
            {
                return Run(src, parse.GetValue(output), parse.GetValue(shard), parse.GetValue(force));
            }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"vlm convert: {e.Message}");
                return 1;
            }
        });
        return cmd;
    }

    public static int Run(string src, string? outPath, long? maxShardBytes, bool force)
    {
        string baseDir = Directory.Exists(src) ? src : Path.GetDirectoryName(Path.GetFullPath(src))!;
        using var weights = CheckpointLoader.Open(src);
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["converted_from"] = Path.GetFileName(weights.Origin) };
        if (maxShardBytes is long max)
        {
            string dir = outPath ?? baseDir;
            string index = Path.Combine(dir, ShardedCheckpoint.SafeTensorsIndexName);
            if (File.Exists(index) && !force) { Console.Error.WriteLine($"vlm convert: {index} exists (use --force)"); return 1; }
            SafeTensors.SaveSharded(dir, weights, max, meta);
            Console.WriteLine($"wrote {weights.Names.Count} tensors from {weights.Origin} to {index}");
            return 0;
        }
        string dst = outPath ?? Path.Combine(baseDir, "model.safetensors");
        if (Path.GetFullPath(dst) == Path.GetFullPath(weights.Origin)) { Console.Error.WriteLine("vlm convert: output would overwrite the input"); return 1; }
        if (File.Exists(dst) && !force) { Console.Error.WriteLine($"vlm convert: {dst} exists (use --force)"); return 1; }
        SafeTensors.Save(dst, weights, meta);
        Console.WriteLine($"wrote {weights.Names.Count} tensors from {weights.Origin} to {dst}");
        return 0;
    }
}
