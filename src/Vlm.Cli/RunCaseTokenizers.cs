using Vlm.Tokenizers;

namespace Vlm.Cli;

/// <summary>
/// <c>vlm run-case &lt;tokenizer-folder&gt; --out file.json</c> handler for tokenizer fixtures (registered by the
/// shared run-case command): writes <see cref="TokenizerCases.Run"/>'s JSON.
/// </summary>
public static class RunCaseTokenizers
{
    /// <summary>Returns false (and writes nothing) when <paramref name="folder"/> is not a tokenizer fixture.</summary>
    public static bool TryRun(string folder, string outPath)
    {
        if (!TokenizerCases.IsTokenizerFolder(folder)) return false;
        var json = TokenizerCases.Run(folder);
        var dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        File.WriteAllText(outPath, json);
        return true;
    }
}
