using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Server;

/// <summary>
/// The fields of one API request, read either from a JSON object (images as base64, optionally a data: URL) or
/// from multipart/form-data (an <c>image</c> file part plus text fields of the same names). Every accessor checks
/// type and limits and throws <see cref="ApiException"/> 400 naming the field.
/// </summary>
public sealed class RequestFields
{
    private readonly Dictionary<string, JsonElement>? _json;
    private readonly IFormCollection? _form;
    private readonly ServerOptions _limits;

    private RequestFields(Dictionary<string, JsonElement>? json, IFormCollection? form, ServerOptions limits)
    {
        _json = json; _form = form; _limits = limits;
    }

    public static async Task<RequestFields> ReadAsync(HttpRequest req, ServerOptions limits, CancellationToken ct)
    {
        var type = req.ContentType ?? "";
        if (req.ContentLength > limits.MaxBodyBytes)
            throw new ApiException(413, $"the request body has {req.ContentLength} bytes, more than the limit of {limits.MaxBodyBytes} (--max-body-mb {limits.MaxBodyMb})");
        if (type.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                var form = await req.ReadFormAsync(ct);
                return new RequestFields(null, form, limits);
            }
            catch (InvalidDataException e) when (e.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
            {
                throw new ApiException(413, $"the multipart body is too large: {e.Message}");
            }
            catch (InvalidDataException e)
            {
                throw ApiException.BadRequest($"the multipart body is malformed: {e.Message}");
            }
            catch (IOException e) when (e is not Microsoft.AspNetCore.Http.BadHttpRequestException)
            {
                throw ApiException.BadRequest($"the multipart body is malformed: {e.Message}");
            }
        }
        if (type.Length > 0 && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) && !type.StartsWith("text/json", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"unsupported content type '{type}': send application/json or multipart/form-data");
        JsonDocument doc;
        try
        {
            doc = await JsonDocument.ParseAsync(req.Body, new JsonDocumentOptions { MaxDepth = 16 }, ct);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the body is not valid JSON: {e.Message}");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("the body must be a JSON object");
            var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            try
            {
                foreach (var p in doc.RootElement.EnumerateObject()) fields[p.Name] = p.Value.Clone();
            }
            catch (InvalidOperationException)
            {
                throw ApiException.BadRequest("a field name of the body is not valid UTF-8 text");
            }
            return new RequestFields(fields, null, limits);
        }
    }

    public bool Has(string name) =>
        _json != null ? _json.TryGetValue(name, out var v) && v.ValueKind != JsonValueKind.Null
            : _form!.ContainsKey(name) || _form.Files.GetFile(name) != null;

    /// <summary>A string field, or null when absent.</summary>
    public string? String(string name)
    {
        if (_json != null)
        {
            if (!_json.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != JsonValueKind.String) throw ApiException.BadRequest($"'{name}' must be a string");
            try { return v.GetString(); }
            catch (InvalidOperationException) { throw ApiException.BadRequest($"'{name}' is not valid UTF-8 / UTF-16 text"); }
        }
        return _form!.TryGetValue(name, out var s) ? s.ToString() : null;
    }

    /// <summary>A text field: required and non-empty unless <paramref name="optional"/>, at most --max-text-chars.</summary>
    public string? Text(string name, bool optional = false)
    {
        var s = String(name);
        if (s is null)
        {
            if (optional) return null;
            throw ApiException.BadRequest($"'{name}' is required");
        }
        if (string.IsNullOrWhiteSpace(s)) throw ApiException.BadRequest($"'{name}' is empty");
        if (s.Length > _limits.MaxTextChars)
            throw ApiException.BadRequest($"'{name}' has {s.Length} characters, more than the limit of {_limits.MaxTextChars}");
        return s;
    }

    public int Int(string name, int dflt, int min, int max)
    {
        int? v = null;
        if (_json != null)
        {
            if (_json.TryGetValue(name, out var e) && e.ValueKind != JsonValueKind.Null)
                v = e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i) ? i : throw ApiException.BadRequest($"'{name}' must be an integer");
        }
        else if (_form!.TryGetValue(name, out var s) && s.Count > 0 && !string.IsNullOrEmpty(s[0]))
            v = int.TryParse(s[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw ApiException.BadRequest($"'{name}' must be an integer");
        var r = v ?? dflt;
        if (r < min || r > max) throw ApiException.BadRequest($"'{name}' must be in {min}..{max}, got {r}");
        return r;
    }

    public bool Bool(string name, bool dflt)
    {
        if (_json != null)
        {
            if (!_json.TryGetValue(name, out var e) || e.ValueKind == JsonValueKind.Null) return dflt;
            return e.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw ApiException.BadRequest($"'{name}' must be true or false"),
            };
        }
        if (!_form!.TryGetValue(name, out var s) || s.Count == 0 || string.IsNullOrEmpty(s[0])) return dflt;
        return s[0]!.Trim().ToLowerInvariant() switch
        {
            "true" or "1" or "on" or "yes" => true,
            "false" or "0" or "off" or "no" => false,
            _ => throw ApiException.BadRequest($"'{name}' must be true or false"),
        };
    }

    /// <summary>The raw bytes of an image field: a multipart file part, or base64 text (a data: URL prefix is allowed).</summary>
    public async Task<byte[]?> ImageBytesAsync(string name, CancellationToken ct)
    {
        if (_form?.Files.GetFile(name) is { } file)
        {
            using var ms = new MemoryStream();
            await file.CopyToAsync(ms, ct);
            return ms.ToArray();
        }
        var s = String(name);
        if (s is null) return null;
        int comma = s.StartsWith("data:", StringComparison.Ordinal) ? s.IndexOf(',') : -1;
        var b64 = comma >= 0 ? s[(comma + 1)..] : s;
        var buf = new byte[b64.Length * 3 / 4 + 3];
        if (!Convert.TryFromBase64String(b64.Trim(), buf, out int n)) throw ApiException.BadRequest($"'{name}' is not valid base64");
        return buf[..n];
    }

    /// <summary>A decoded RGB image (limits: --max-pixels), or null when the field is absent and optional.</summary>
    public async Task<Image?> ImageAsync(string name, CancellationToken ct, bool optional = false)
    {
        var bytes = await ImageBytesAsync(name, ct);
        if (bytes is null)
        {
            if (optional) return null;
            throw ApiException.BadRequest($"'{name}' is required (base64 in JSON, or a multipart file part)");
        }
        if (bytes.Length == 0) throw ApiException.BadRequest($"'{name}' is empty");
        try
        {
            return ImageDecoder.Decode(bytes, name, new DecodeOptions { MaxPixels = _limits.MaxPixels }).ToRgb();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The decoders promise InvalidDataException / NotSupportedException for bad files; anything else a
            // hostile file provokes is still the client's bad image, not a reason to fail the process.
            throw ApiException.BadRequest($"'{name}' could not be decoded: {e.Message.Split('\n')[0]}");
        }
    }
}
