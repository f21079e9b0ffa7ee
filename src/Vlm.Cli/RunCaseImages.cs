using Vlm.Vision.Processing;

namespace Vlm.Cli;

/// <summary>CLI glue for `run-case` on image-preprocessing fixture folders (the command itself is registered elsewhere).</summary>
public static class RunCaseImages
{
    /// <summary>Runs the image fixture in <paramref name="folder"/> into <paramref name="outDir"/>; false when the folder is
    /// not an image_preprocessing case (so the caller can try other kinds).</summary>
    public static bool TryRun(string folder, string outDir)
    {
        if (!ImageCases.IsImageCase(folder)) return false;
        var runs = ImageCases.Run(folder, outDir);
        Console.WriteLine($"image_preprocessing: wrote {runs.Count} runs ({string.Join(", ", runs)}) to {outDir}");
        return true;
    }
}
