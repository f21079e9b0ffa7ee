namespace Vlm.Cli.Tests;

/// <summary>Runs <c>vlm</c> in-process and captures what it prints (the test assembly runs serially, so
/// swapping the console is safe).</summary>
internal static class CliRunner
{
    public static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        var (po, pe) = (Console.Out, Console.Error);
        Console.SetOut(o); Console.SetError(e);
        try { return (Program.Main(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(po); Console.SetError(pe); }
    }
}
