using System.Buffers.Binary;
using System.Text;

namespace Vlm.Core.IO;

/// <summary>A Python global (module.name) as a value: never imported or called, only compared against a whitelist.</summary>
public sealed record PyGlobal(string Module, string Name)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>A pickled dict or OrderedDict: insertion-ordered key/value pairs.</summary>
public sealed class PyDict
{
    public List<KeyValuePair<object, object?>> Items { get; } = [];
}

/// <summary>A torch storage referenced by a pickle: stored dtype (safetensors name), zip key, element count.</summary>
public sealed record TorchStorageRef(string DType, string Key, long Numel);

/// <summary>A tensor rebuilt by torch._utils._rebuild_tensor_v2: a strided view of a storage.</summary>
public sealed record TorchTensorRef(TorchStorageRef Storage, long Offset, int[] Size, long[] Stride);

/// <summary>
/// A restricted unpickler for the pickles inside torch.save zips (protocol 2; the protocol-4 framing opcodes are
/// accepted too). It is a stack machine over a whitelist: the only globals it resolves are the torch rebuild
/// functions, storage types and collections.OrderedDict, and "calling" one just builds a descriptor
/// (<see cref="TorchTensorRef"/>, <see cref="PyDict"/>); nothing is ever imported or executed. Any other global or
/// opcode is an <see cref="InvalidDataException"/> naming it. Every read is bounds-checked, and each opcode consumes
/// input, so a hostile pickle cannot hang it or read outside the buffer.
/// </summary>
public sealed class Unpickler
{
    private static readonly Dictionary<string, string> StorageDTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = "F32", ["HalfStorage"] = "F16", ["BFloat16Storage"] = "BF16", ["DoubleStorage"] = "F64",
        ["LongStorage"] = "I64", ["IntStorage"] = "I32", ["ShortStorage"] = "I16", ["CharStorage"] = "I8",
        ["ByteStorage"] = "U8", ["BoolStorage"] = "BOOL",
    };

    private static readonly HashSet<string> AllowedGlobals = new(StringComparer.Ordinal)
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter", "torch.Tensor",
    };

    private sealed class Mark
    {
        public static readonly Mark Instance = new();
    }

    private readonly byte[] _data;
    private readonly string _origin;
    private int _pos;
    private readonly List<object?> _stack = [];
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = [];
    private readonly Dictionary<string, TorchStorageRef> _storages = new(StringComparer.Ordinal);

    private Unpickler(byte[] data, string origin)
    {
        _data = data;
        _origin = origin;
    }

    /// <summary>Runs the pickle to its STOP and returns the top-of-stack object.</summary>
    public static object? Load(byte[] data, string origin) => new Unpickler(data, origin).Run();

    private InvalidDataException Bad(string what) => new($"{_origin}: pickle byte {_pos}: {what}");

    private object? Run()
    {
        while (true)
        {
            int at = _pos;
            byte op = ReadByte();
            switch (op)
            {
                case 0x80: ReadByte(); break; // PROTO n: any version; the opcodes themselves are checked
                case 0x95: ReadBytes(8); break; // FRAME: a length hint only
                case 0x2E: // STOP
                    if (_stack.Count != 1) throw Bad($"STOP with {_stack.Count} objects on the stack (expected 1)");
                    return _stack[0] is Mark ? throw Bad("STOP with a MARK on the stack") : _stack[0];
                case 0x7D: Push(new PyDict()); break; // EMPTY_DICT
                case 0x5D: Push(new List<object?>()); break; // EMPTY_LIST
                case 0x29: Push(Array.Empty<object?>()); break; // EMPTY_TUPLE
                case 0x28: _marks.Push(_stack.Count); Push(Mark.Instance); break; // MARK
                case 0x58: Push(ReadString(checked((int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)), int.MaxValue)))); break; // BINUNICODE
                case 0x8C: Push(ReadString(ReadByte())); break; // SHORT_BINUNICODE
                case 0x8D: // BINUNICODE8
                    {
                        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(8));
                        Push(ReadString(n > int.MaxValue ? int.MaxValue : (int)n));
                        break;
                    }
                case 0x4A: Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4))); break; // BININT
                case 0x4B: Push((long)ReadByte()); break; // BININT1
                case 0x4D: Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(2))); break; // BININT2
                case 0x8A: Push(ReadLong1()); break; // LONG1
                case 0x47: Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8))); break; // BINFLOAT
                case 0x4E: Push(null); break; // NONE
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case 0x74: Push(PopToMark().ToArray()); break; // TUPLE
                case 0x85: Push(new[] { Pop() }); break; // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; } // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; } // TUPLE3
                case 0x6C: Push(PopToMark()); break; // LIST
                case 0x64: // DICT
                    {
                        var items = PopToMark();
                        if (items.Count % 2 != 0) throw Bad("DICT with an odd number of items");
                        var d = new PyDict();
                        for (int i = 0; i < items.Count; i += 2) d.Items.Add(new(Key(items[i]), items[i + 1]));
                        Push(d);
                        break;
                    }
                case 0x61: { var v = Pop(); AsList(Peek()).Add(v); break; } // APPEND
                case 0x65: { var vs = PopToMark(); AsList(Peek()).AddRange(vs); break; } // APPENDS
                case 0x73: { var v = Pop(); var k = Pop(); AsDict(Peek()).Items.Add(new(Key(k), v)); break; } // SETITEM
                case 0x75: // SETITEMS
                    {
                        var items = PopToMark();
                        if (items.Count % 2 != 0) throw Bad("SETITEMS with an odd number of items");
                        var d = AsDict(Peek());
                        for (int i = 0; i < items.Count; i += 2) d.Items.Add(new(Key(items[i]), items[i + 1]));
                        break;
                    }
                case 0x71: _memo[ReadByte()] = Peek(); break; // BINPUT
                case 0x72: _memo[BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4))] = Peek(); break; // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Peek(); break; // MEMOIZE
                case 0x68: Push(Get(ReadByte())); break; // BINGET
                case 0x6A: Push(Get(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))); break; // LONG_BINGET
                case 0x63: Push(Global(ReadLine(), ReadLine())); break; // GLOBAL
                case 0x93: // STACK_GLOBAL
                    {
                        var name = Pop(); var module = Pop();
                        if (module is not string m || name is not string n) throw Bad("STACK_GLOBAL operands are not strings");
                        Push(Global(m, n));
                        break;
                    }
                case 0x52: { var args = Pop(); var f = Pop(); Push(Reduce(f, args)); break; } // REDUCE
                case 0x51: Push(PersistentLoad(Pop())); break; // BINPERSID
                case 0x62: // BUILD: only object states we can ignore (OrderedDict attributes such as _metadata, tensor state)
                    {
                        Pop();
                        var target = Peek();
                        if (target is not (PyDict or TorchTensorRef)) throw Bad($"BUILD on {Describe(target)} is not allowed");
                        break;
                    }
                default:
                    _pos = at;
                    throw Bad($"unsupported pickle opcode 0x{op:X2}{(OpNames.TryGetValue(op, out var nm) ? $" ({nm})" : "")}; refusing to load");
            }
        }
    }

    private static readonly Dictionary<byte, string> OpNames = new()
    {
        [0x81] = "NEWOBJ", [0x92] = "NEWOBJ_EX", [0x69] = "INST", [0x6F] = "OBJ", [0x50] = "PERSID", [0x49] = "INT",
        [0x4C] = "LONG", [0x8B] = "LONG4", [0x46] = "FLOAT", [0x53] = "STRING", [0x54] = "BINSTRING", [0x55] = "SHORT_BINSTRING",
        [0x56] = "UNICODE", [0x42] = "BINBYTES", [0x43] = "SHORT_BINBYTES", [0x8E] = "BINBYTES8", [0x96] = "BYTEARRAY8",
        [0x82] = "EXT1", [0x83] = "EXT2", [0x84] = "EXT4", [0x67] = "GET", [0x70] = "PUT", [0x30] = "POP", [0x31] = "POP_MARK",
        [0x32] = "DUP", [0x8F] = "EMPTY_SET", [0x90] = "ADDITEMS", [0x91] = "FROZENSET", [0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
    };

    private byte ReadByte() => _pos < _data.Length ? _data[_pos++] : throw Bad("unexpected end of pickle");

    private ReadOnlySpan<byte> ReadBytes(int n)
    {
        if (n < 0 || n > _data.Length - _pos) throw Bad($"needs {n} more bytes but only {_data.Length - _pos} remain");
        var s = _data.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    private string ReadString(int n)
    {
        try { return new UTF8Encoding(false, true).GetString(ReadBytes(n)); }
        catch (DecoderFallbackException) { throw Bad("string is not valid UTF-8"); }
    }

    private string ReadLine()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos, Math.Min(_data.Length - _pos, 512));
        if (end < 0) throw Bad("GLOBAL operand is not a newline-terminated line");
        string s = Encoding.ASCII.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return s;
    }

    private long ReadLong1()
    {
        int n = ReadByte();
        var b = ReadBytes(n);
        if (n == 0) return 0;
        if (n > 8) throw Bad($"LONG1 integer of {n} bytes does not fit in 64 bits");
        long v = (sbyte)b[n - 1]; // sign-extend from the most significant byte
        for (int i = n - 2; i >= 0; i--) v = (v << 8) | b[i];
        return v;
    }

    private void Push(object? o)
    {
        _stack.Add(o);
    }

    private object? Pop()
    {
        if (_stack.Count == 0) throw Bad("stack underflow");
        var o = _stack[^1];
        if (o is Mark) throw Bad("popped a MARK where a value was expected");
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object? Peek()
    {
        if (_stack.Count == 0 || _stack[^1] is Mark) throw Bad("stack underflow");
        return _stack[^1];
    }

    private List<object?> PopToMark()
    {
        if (_marks.Count == 0) throw Bad("no MARK to pop to");
        int m = _marks.Pop();
        if (m >= _stack.Count || _stack[m] is not Mark) throw Bad("corrupt MARK");
        var items = _stack.GetRange(m + 1, _stack.Count - m - 1);
        if (items.Any(i => i is Mark)) throw Bad("nested MARK inside a MARK group");
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private object? Get(long key) => _memo.TryGetValue(key, out var v) ? v : throw Bad($"memo key {key} was never stored");

    private object Key(object? k) => k switch
    {
        string or long or bool or double => k,
        object?[] => k,
        _ => throw Bad($"dict key {Describe(k)} is not allowed"),
    };

    private List<object?> AsList(object? o) => o as List<object?> ?? throw Bad($"append to {Describe(o)}");
    private PyDict AsDict(object? o) => o as PyDict ?? throw Bad($"set item on {Describe(o)}");

    private object Global(string module, string name)
    {
        string full = module + "." + name;
        if (module == "torch" && StorageDTypes.ContainsKey(name)) return new PyGlobal(module, name);
        if (AllowedGlobals.Contains(full)) return new PyGlobal(module, name);
        throw Bad($"refusing to execute pickle global {full} (only torch tensor rebuild functions, storage types and collections.OrderedDict are allowed)");
    }

    private object? Reduce(object? f, object? args, int depth = 0)
    {
        if (depth > 8) throw Bad("tensor rebuild calls nested too deeply");
        if (f is not PyGlobal g) throw Bad($"REDUCE on {Describe(f)}, which is not a callable");
        if (args is not object?[] a) throw Bad($"REDUCE arguments for {g} are not a tuple");
        switch (g.ToString())
        {
            case "collections.OrderedDict":
                if (a.Length != 0) throw Bad("collections.OrderedDict with arguments is not supported");
                return new PyDict();
            case "torch._utils._rebuild_tensor_v2": // (storage, offset, size, stride, requires_grad, hooks[, metadata])
                if (a.Length < 4) throw Bad($"{g} takes at least 4 arguments, got {a.Length}");
                return RebuildTensor(g, a);
            case "torch._utils._rebuild_tensor": // (storage, offset, size, stride)
                if (a.Length != 4) throw Bad($"{g} takes 4 arguments, got {a.Length}");
                return RebuildTensor(g, a);
            case "torch._utils._rebuild_parameter": // (data, requires_grad, hooks)
            case "torch._utils._rebuild_parameter_with_state":
                if (a.Length < 1 || a[0] is not TorchTensorRef p) throw Bad($"{g} needs a tensor as its first argument");
                return p;
            case "torch._tensor._rebuild_from_type_v2": // (func, type, args, state): a tensor subclass; keep the tensor
                if (a.Length != 4) throw Bad($"{g} takes 4 arguments, got {a.Length}");
                if (a[1] is not PyGlobal { Module: "torch.nn.parameter", Name: "Parameter" } and not PyGlobal { Module: "torch", Name: "Tensor" })
                    throw Bad($"{g} with type {Describe(a[1])} is not allowed");
                return Reduce(a[0], a[2], depth + 1);
            default:
                throw Bad($"refusing to call pickle global {g}");
        }
    }

    private TorchTensorRef RebuildTensor(PyGlobal g, object?[] a)
    {
        if (a[0] is not TorchStorageRef s) throw Bad($"{g}: first argument is {Describe(a[0])}, not a storage");
        if (a[1] is not long off || off < 0) throw Bad($"{g}: storage offset {Describe(a[1])} is not a non-negative integer");
        if (a[2] is not object?[] size || a[3] is not object?[] stride) throw Bad($"{g}: size and stride must be tuples");
        if (size.Length != stride.Length) throw Bad($"{g}: size has {size.Length} dims but stride has {stride.Length}");
        if (size.Length > 16) throw Bad($"{g}: {size.Length} dimensions (at most 16 supported)");
        var sz = new int[size.Length];
        var st = new long[size.Length];
        for (int i = 0; i < size.Length; i++)
        {
            if (size[i] is not long d || d < 0 || d > int.MaxValue) throw Bad($"{g}: size[{i}] = {Describe(size[i])} is not a valid dimension");
            if (stride[i] is not long t || t < 0 || t > int.MaxValue) throw Bad($"{g}: stride[{i}] = {Describe(stride[i])} is not a valid stride");
            sz[i] = (int)d;
            st[i] = t;
        }
        return new TorchTensorRef(s, off, sz, st);
    }

    private TorchStorageRef PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: 5 } t || t[0] is not "storage")
            throw Bad($"persistent id {Describe(pid)} is not a ('storage', type, key, location, numel) tuple");
        if (t[1] is not PyGlobal { Module: "torch" } g || !StorageDTypes.TryGetValue(g.Name, out var dtype))
            throw Bad($"persistent id storage type {Describe(t[1])} is not a known torch storage");
        if (t[2] is not string key || key.Length == 0 || key.Length > 64 || key.Any(c => !char.IsAsciiLetterOrDigit(c) && c != '_'))
            throw Bad($"persistent id storage key {Describe(t[2])} is not a plain name");
        if (t[4] is not long numel || numel < 0) throw Bad($"persistent id element count {Describe(t[4])} is invalid");
        if (_storages.TryGetValue(key, out var prev))
        {
            if (prev.DType != dtype || prev.Numel != numel) throw Bad($"storage '{key}' is referenced with different types or sizes");
            return prev;
        }
        var s = new TorchStorageRef(dtype, key, numel);
        _storages[key] = s;
        return s;
    }

    internal static string Describe(object? o) => o switch
    {
        null => "None",
        string s => $"'{(s.Length > 40 ? s[..40] + "…" : s)}'",
        long or double or bool => o.ToString()!,
        PyGlobal g => g.ToString(),
        object?[] t => $"a {t.Length}-tuple",
        List<object?> => "a list",
        PyDict => "a dict",
        TorchTensorRef => "a tensor",
        TorchStorageRef => "a storage",
        _ => o.GetType().Name,
    };
}
