using Vlm.Core.IO;
using Vlm.Models.Blip;
using Vlm.Models.BridgeTower;

namespace Vlm.Cli;

/// <summary>
/// Model reference cases for `vlm run-case` (the command itself is registered elsewhere): runs a fixture folder
/// whose case.json names a model class this build implements and writes its outputs, under the fixture's names,
/// to a safetensors file.
/// </summary>
public static class RunCaseModels
{
    /// <summary>False when no model runner handles <paramref name="folder"/>; otherwise runs it and writes
    /// <paramref name="outPath"/> (plus, when the case stores gradients, them in `<outPath without extension>.grads.safetensors`).</summary>
    public static bool TryRun(string folder, string outPath)
    {
        if (BlipCases.Handles(folder))
        {
            SafeTensors.Save(outPath, BlipCases.Run(folder).OrderBy(kv => kv.Key, StringComparer.Ordinal));
            return true;
        }
        if (!BridgeTowerCases.Handles(folder)) return false;
        var outputs = BridgeTowerCases.Run(folder);
        SafeTensors.Save(outPath, outputs.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        if (File.Exists(Path.Combine(folder, "grads.safetensors")))
        {
            var grads = BridgeTowerCases.RunGradients(folder);
            var gradPath = Path.ChangeExtension(outPath, null) + ".grads.safetensors";
            SafeTensors.Save(gradPath, grads.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
        return true;
    }
}
