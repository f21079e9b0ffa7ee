using System.Text.Json;

namespace Vlm.Models;

/// <summary>
/// Typed access to one object of an HF <c>config.json</c>: an absent or null key gives the caller's default (HF
/// writes only what differs from its defaults); a present key of the wrong type is an error naming the file and the
/// dotted field path. Shared by every model's config record.
/// </summary>
internal readonly struct ConfigReader(JsonElement obj, string origin, string path, IReadOnlyCollection<string> activations,
    bool integralFloatsAsInts = false)
{
    /// <summary>Parses a config.json text whose root must be an object with <c>model_type</c> = <paramref name="modelType"/>
    /// (absent means that type, as HF's own classes write it), then builds the record from the root.</summary>
    public static T ParseRoot<T>(string json, string origin, string modelType, Func<JsonElement, T> build)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new InvalidDataException($"{origin}: not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{origin}: config is not a JSON object");
            var mt = new ConfigReader(root, origin, "", []).Str("model_type", modelType);
            if (mt != modelType) throw new InvalidDataException($"{origin}: model_type is '{mt}', expected '{modelType}'");
            return build(root);
        }
    }

    public bool Has(string key) => obj.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null;

    private InvalidDataException Bad(string key, JsonElement v, string want) =>
        new($"{origin}: {path}{key} must be {want}, got {v.GetRawText()}");

    private bool TryGet(string key, out JsonElement v) =>
        obj.TryGetProperty(key, out v) && v.ValueKind != JsonValueKind.Null;

    public int Int(string key, int def)
    {
        if (!TryGet(key, out var v)) return def;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (integralFloatsAsInts && v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue)
            return (int)d;
        throw Bad(key, v, "an integer");
    }

    public float Float(string key, float def)
    {
        if (!TryGet(key, out var v)) return def;
        if (v.ValueKind == JsonValueKind.Number) return (float)v.GetDouble();
        throw Bad(key, v, "a number");
    }

    public bool Bool(string key, bool def)
    {
        if (!TryGet(key, out var v)) return def;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(key, v, "true or false"),
        };
    }

    public string Str(string key, string def)
    {
        if (!TryGet(key, out var v)) return def;
        if (v.ValueKind == JsonValueKind.String) return v.GetString()!;
        throw Bad(key, v, "a string");
    }

    /// <summary>An activation name, checked against the ones the model implements.</summary>
    public string Act(string key, string def)
    {
        var s = Str(key, def);
        if (!activations.Contains(s))
            throw new InvalidDataException($"{origin}: {path}{key} '{s}' is not a supported activation ({string.Join(", ", activations.Order(StringComparer.Ordinal))})");
        return s;
    }

    public JsonElement? Obj(string key)
    {
        if (!TryGet(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Object) throw Bad(key, v, "an object");
        return v;
    }
}
