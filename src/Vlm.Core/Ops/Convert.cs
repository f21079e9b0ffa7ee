namespace Vlm.Core;

public sealed partial class Tensor
{
    /// <summary>Converts element type (a copy; float→int truncates toward zero like torch's .long()).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType) return this;
        var src = Contiguous();
        var r = NewResult(ShapeArray(), dtype);
        int n = Numel;
        switch (dtype)
        {
            case DType.Float32:
                { var d = r.Span; for (int i = 0; i < n; i++) d[i] = src.GetFlat(i); break; }
            case DType.Int64:
                { var d = r.SpanI64; for (int i = 0; i < n; i++) d[i] = (long)src.GetFlat(i); break; }
            case DType.Int32:
                { var d = r.SpanI32; for (int i = 0; i < n; i++) d[i] = (int)src.GetFlat(i); break; }
            case DType.Bool:
                { var d = r.SpanU8; for (int i = 0; i < n; i++) d[i] = src.GetFlat(i) != 0 ? (byte)1 : (byte)0; break; }
            case DType.UInt8:
                { var d = r.SpanU8; for (int i = 0; i < n; i++) d[i] = (byte)(int)src.GetFlat(i); break; }
        }
        DropCopy(src, this);
        return r;
    }
}
