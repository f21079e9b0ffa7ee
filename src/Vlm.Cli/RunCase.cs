using System.CommandLine;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm run-case &lt;fixture-folder&gt; --out &lt;path&gt;</c>: recomputes a reference case with Vlm and writes the
/// results in the fixture's own format, so any case made by the reference code can be checked from the command line.
/// Each kind of fixture has a handler that recognises its folder; the first that does runs.
/// </summary>
public static class RunCase
{
    private static readonly (string kind, Func<string, string, bool> tryRun)[] Handlers =
    [
        ("tokenizers (cases.json)", RunCaseTokenizers.TryRun),
        ("image preprocessing (case.json with runs)", RunCaseImages.TryRun),
        ("models (case.json naming a transformers BridgeTower / BLIP class)", RunCaseModels.TryRun),
    ];

    public static Command Build()
    {
        var folder = new Argument<string>("folder") { Description = "A fixture folder (e.g. ../shared/fixtures/tokenizers/roberta)" };
        var outOpt = new Option<string>("--out", "-o") { Description = "Output file (JSON or safetensors) or folder, by fixture kind", Required = true };
        var cmd = new Command("run-case", "Run a reference fixture case with Vlm and write its outputs") { folder, outOpt };
        cmd.SetAction(parse =>
        {
            var dir = parse.GetValue(folder)!;
            var output = parse.GetValue(outOpt)!;
            if (!Directory.Exists(dir)) return Cli.Fail($"run-case: folder not found: {dir}");
            foreach (var (_, tryRun) in Handlers)
                if (tryRun(dir, output))
                    return 0;
            return Cli.Fail($"run-case: {dir} is not a fixture folder Vlm knows; supported: {string.Join("; ", Handlers.Select(h => h.kind))}");
        });
        return cmd;
    }
}

/// <summary>Shared CLI conventions: one-line errors on stderr and a non-zero exit code.</summary>
public static class Cli
{
    public static int Fail(string message, int code = 2)
    {
        Console.Error.WriteLine("error: " + message);
        return code;
    }
}
