using System.IO.MemoryMappedFiles;

namespace Vlm.Core.IO;

/// <summary>Random read access to a file's bytes: a read-only memory map, or an array in memory.</summary>
internal abstract class ByteSource : IDisposable
{
    public abstract long Length { get; }

    /// <summary>Bytes [offset, offset+count); the caller has checked the range. Valid until Dispose.</summary>
    public abstract ReadOnlySpan<byte> Slice(long offset, int count);

    public abstract void Dispose();

    public static ByteSource FromArray(byte[] bytes) => new ArraySource(bytes);

    /// <summary>Maps <paramref name="path"/> read-only. An empty file cannot be mapped, so it is kept as an empty array.</summary>
    public static ByteSource Map(string path)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.RandomAccess);
        try
        {
            if (fs.Length == 0) { fs.Dispose(); return new ArraySource([]); }
            var mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            return new MappedSource(mmf, fs.Length);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    private sealed class ArraySource(byte[] bytes) : ByteSource
    {
        public override long Length => bytes.Length;
        public override ReadOnlySpan<byte> Slice(long offset, int count) => bytes.AsSpan(checked((int)offset), count);
        public override void Dispose() { }
    }

    private sealed unsafe class MappedSource : ByteSource
    {
        private readonly MemoryMappedFile _mmf;
        private readonly MemoryMappedViewAccessor _view;
        private readonly long _length;
        private byte* _ptr;

        public MappedSource(MemoryMappedFile mmf, long length)
        {
            _mmf = mmf;
            _length = length;
            try
            {
                _view = mmf.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _ptr = p + _view.PointerOffset;
            }
            catch
            {
                _view?.Dispose();
                mmf.Dispose();
                throw;
            }
        }

        public override long Length => _length;

        public override ReadOnlySpan<byte> Slice(long offset, int count)
        {
            if (_ptr == null) throw new ObjectDisposedException("memory-mapped file");
            if (offset < 0 || count < 0 || offset + count > _length) throw new ArgumentOutOfRangeException(nameof(offset));
            return new ReadOnlySpan<byte>(_ptr + offset, count);
        }

        public override void Dispose()
        {
            if (_ptr == null) return;
            _ptr = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _mmf.Dispose();
        }
    }
}
