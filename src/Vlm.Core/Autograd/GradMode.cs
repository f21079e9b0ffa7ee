namespace Vlm.Core.Autograd;

/// <summary>Per-thread switch for recording ops. Kernels running on pool threads never record.</summary>
public static class GradMode
{
    [ThreadStatic] private static bool _disabled;
    [ThreadStatic] private static bool _inference;

    public static bool IsEnabled => !_disabled;

    /// <summary>Inside <see cref="Inference"/> (and not re-enabled): weights are taken as fixed for the scope, so
    /// Linear layers may use their prepacked copies (see PackedWeights).</summary>
    public static bool IsInference => _inference && _disabled;

    public static IDisposable Disable() => new Scope(false, _inference);

    public static IDisposable Enable() => new Scope(true, _inference);

    /// <summary>No recording, as <see cref="Disable"/>, and the parameters are promised not to change while the scope
    /// is open (torch.inference_mode's contract): Linear weights are packed for the GEMM once and reused across calls
    /// and scopes until a write through the tensor APIs changes them.</summary>
    public static IDisposable Inference() => new Scope(false, true);

    private sealed class Scope : IDisposable
    {
        private readonly bool _prevDisabled, _prevInference;
        private bool _done;

        public Scope(bool enabled, bool inference)
        {
            _prevDisabled = _disabled;
            _prevInference = _inference;
            _disabled = !enabled;
            _inference = inference;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _disabled = _prevDisabled;
            _inference = _prevInference;
        }
    }
}
