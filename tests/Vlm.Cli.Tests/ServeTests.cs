namespace Vlm.Cli.Tests;

/// <summary><c>vlm serve</c>: option checking and the self-contained load test (the HTTP API itself is tested in
/// Vlm.Server.Tests).</summary>
public class ServeTests
{
    [Fact]
    public void Load_test_serves_itm_and_reports_latency()
    {
        using var tiny = new TinyBridgeTowerFolder();
        var (code, stdout, stderr) = CliRunner.Run("serve", "--model", tiny.Model, "--load-test", "1", "--clients", "2", "--max-batch", "4");
        Assert.True(code == 0, stderr);
        Assert.Contains("POST /v1/itm, 2 clients, --max-batch 4", stdout);
        Assert.Contains("p50", stdout);
        Assert.Contains(" 0 errors", stdout);
    }

    [Fact]
    public void Bad_options_fail_with_a_message()
    {
        using var tiny = new TinyBridgeTowerFolder();
        var (code, _, stderr) = CliRunner.Run("serve", "--model", tiny.Model, "--max-batch", "0");
        Assert.NotEqual(0, code);
        Assert.Contains("--max-batch", stderr);
        (code, _, stderr) = CliRunner.Run("serve", "--model", "/nonexistent-model-folder");
        Assert.NotEqual(0, code);
        Assert.Contains("/nonexistent-model-folder", stderr);
        (code, _, stderr) = CliRunner.Run("serve", "--model", tiny.Model, "--index", "/nonexistent.vlmindex", "--load-test", "1");
        Assert.NotEqual(0, code);
        Assert.Contains("/nonexistent.vlmindex", stderr);
    }
}
