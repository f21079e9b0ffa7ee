namespace Vlm.Core;

/// <summary>
/// torch.nn.functional: fused neural-network ops (softmax, layer_norm, attention, losses, conv2d, ...).
/// Partial across Ops/Functional*.cs; each op keeps what its backward needs.
/// </summary>
public static partial class F
{
}
