namespace Vlm.Core.Autograd;

/// <summary>Per-thread switch for recording ops. Kernels running on pool threads never record.</summary>
public static class GradMode
{
    [ThreadStatic] private static bool _disabled;

    public static bool IsEnabled => !_disabled;

    public static IDisposable Disable() => new Scope(false);

    public static IDisposable Enable() => new Scope(true);

    private sealed class Scope : IDisposable
    {
        private readonly bool _prevDisabled;
        private bool _done;

        public Scope(bool enabled)
        {
            _prevDisabled = _disabled;
            _disabled = !enabled;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _disabled = _prevDisabled;
        }
    }
}
