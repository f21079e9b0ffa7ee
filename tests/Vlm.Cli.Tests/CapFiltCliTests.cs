using System.Text.Json;
using Vlm.Training.Data;

namespace Vlm.Cli.Tests;

public class CapFiltCliTests
{
    private static readonly string[] Tiny = ["--batch", "4", "--hidden", "32", "--layers", "1", "--captioner-steps", "2", "--filter-steps", "2"];

    [Fact]
    public void Experiment_then_capfilt_on_its_world_end_to_end()
    {
        var dir = Directory.CreateTempSubdirectory("vlm-capfilt-").FullName;
        try
        {
            var (code, stdout, stderr) = CliRunner.Run([.. new[] { "experiment", "capfilt", "--seeds", "1", "--train-scenes", "16", "--test-scenes", "6", "--retrieval-steps", "2",
                "--max-objects", "2", "--plain", "--out", dir, "--json" }, .. Tiny]);
            Assert.True(code == 0, stderr);
            using (var doc = JsonDocument.Parse(stdout))
            {
                var seed = doc.RootElement.GetProperty("seeds")[0];
                Assert.Equal(0.3, doc.RootElement.GetProperty("noise").GetDouble());
                Assert.True(seed.GetProperty("corrupted").GetInt32() > 0);
                foreach (var arm in new[] { "noisy", "bootstrapped" })
                    Assert.Equal(6, seed.GetProperty("retrieval").GetProperty(arm).GetProperty("images").GetInt32());
                Assert.True(doc.RootElement.GetProperty("summary").TryGetProperty("diff_t2i_r1", out _));
            }
            var world = Path.Combine(dir, "seed-0", "world");

            // The standalone command on the experiment's clean / noisy files.
            var outDir = Path.Combine(dir, "cf");
            (code, stdout, stderr) = CliRunner.Run([.. new[] { "capfilt", "--data", world, "--clean", "clean_train.jsonl", "--noisy", "noisy_train.jsonl", "--out", outDir, "--seed", "3" }, .. Tiny]);
            Assert.True(code == 0, stderr);
            Assert.Contains("precision", stdout);
            var noisy = DatasetFormats.ReadPairsJsonl(Path.Combine(world, "noisy_train.jsonl"), world);
            var clean = DatasetFormats.ReadPairsJsonl(Path.Combine(world, "clean_train.jsonl"), world);
            var cands = File.ReadAllLines(Path.Combine(outDir, "candidates.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.Equal(noisy.Count + noisy.Select(p => p.ImageId).Distinct().Count(), cands.Count);
            int kept = cands.Count(c => c.GetProperty("kept").GetBoolean());
            var boot = DatasetFormats.ReadPairsJsonl(Path.Combine(outDir, "pairs_train.jsonl"), outDir);
            Assert.Equal(clean.Count + kept, boot.Count);
            Assert.All(boot, p => Assert.True(File.Exists(p.ImagePath), p.ImagePath));
            Assert.Equal(boot.Count, DatasetFormats.ReadCocoCaptions(Path.Combine(outDir, "captions_train.json"), outDir).Count);
            Assert.All(cands.Where(c => c.GetProperty("source").GetString() == "synthetic"), c => Assert.False(string.IsNullOrWhiteSpace(c.GetProperty("caption").GetString())));

            // Seeded: the same run again decides the same, caption for caption.
            var again = Path.Combine(dir, "cf2");
            Assert.Equal(0, CliRunner.Run([.. new[] { "capfilt", "--data", world, "--clean", "clean_train.jsonl", "--noisy", "noisy_train.jsonl", "--out", again, "--seed", "3" }, .. Tiny]).code);
            Assert.Equal(File.ReadAllText(Path.Combine(outDir, "candidates.jsonl")), File.ReadAllText(Path.Combine(again, "candidates.jsonl")));

            // The captioner folder is an HF BLIP captioning folder `vlm caption` loads.
            (code, stdout, stderr) = CliRunner.Run("caption", noisy[0].ImagePath, "--model", Path.Combine(outDir, "models", "captioner"), "--top-p", "0.9", "--seed", "1");
            Assert.True(code == 0, stderr);
            Assert.False(string.IsNullOrWhiteSpace(stdout));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Bad_input_is_one_line_and_nonzero()
    {
        var (code, _, stderr) = CliRunner.Run("capfilt", "--data", "/nonexistent-vlm-dir", "--clean", "c.jsonl", "--noisy", "n.jsonl", "--out", Path.GetTempPath());
        Assert.NotEqual(0, code);
        Assert.Contains("data folder not found", stderr);
        (code, _, stderr) = CliRunner.Run("experiment", "capfilt", "--noise", "1.5");
        Assert.NotEqual(0, code);
        Assert.Contains("--noise", stderr);
    }
}
