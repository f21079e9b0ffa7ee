namespace Vlm.Server;

/// <summary>A request the service refuses: the HTTP status and the message that goes back as {"error": ...}.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;

    public static ApiException BadRequest(string message) => new(400, message);
    public static ApiException NotImplemented(string message) => new(501, message);
}
