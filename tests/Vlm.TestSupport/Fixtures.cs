using System.Text.Json;
using Vlm.Core;
using Vlm.Core.IO;

namespace Vlm.TestSupport;

/// <summary>Locates <c>../shared/fixtures</c> (beside the repository) or <c>VLM_FIXTURES</c>.</summary>
public static class Fixtures
{
    private static readonly Lazy<string> RootLazy = new(Find);

    public static string Root => RootLazy.Value;

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    public static Dictionary<string, Tensor> Load(string caseName, string file) => SafeTensors.Load(Path(caseName, file));

    public static JsonDocument CaseJson(string caseName) => JsonDocument.Parse(File.ReadAllText(Path(caseName, "case.json")));

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(System.IO.Path.Combine(dir.FullName, "Vlm.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root (Vlm.slnx) above " + AppContext.BaseDirectory);
    }

    private static string Find()
    {
        var env = Environment.GetEnvironmentVariable("VLM_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return env;
        var p = System.IO.Path.GetFullPath(System.IO.Path.Combine(RepoRoot, "..", "shared", "fixtures"));
        if (!Directory.Exists(p)) throw new DirectoryNotFoundException($"fixtures not found at {p}; set VLM_FIXTURES");
        return p;
    }
}
