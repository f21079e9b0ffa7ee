using Vlm.Core;

namespace Vlm.Tokenizers;

/// <summary>HF truncation strategies (<c>truncation=True</c> is <see cref="LongestFirst"/>).</summary>
public enum Truncation { None, LongestFirst, OnlyFirst, OnlySecond }

/// <summary>HF padding strategies (<c>padding=True</c> is <see cref="Longest"/>); always on the right.</summary>
public enum Padding { None, Longest, MaxLength }

/// <summary>One token with its id and its UTF-16 character span [Start, End) in the ORIGINAL input string.</summary>
public readonly record struct Token(string Text, int Id, int Start, int End);

/// <summary>
/// A vocabulary entry matched before the model runs (HF <c>AddedToken</c>): <c>LStrip</c>/<c>RStrip</c> eat the
/// whitespace on that side, <c>SingleWord</c> only matches a whole word.
/// </summary>
public sealed record AddedToken(string Content, int Id, bool Special = true, bool LStrip = false, bool RStrip = false,
    bool SingleWord = false, bool Normalized = false);

/// <summary>The result of encoding one text (or pair): ids, tokens, masks and offsets, all the same length.</summary>
public sealed class Encoding
{
    public required long[] Ids { get; init; }
    public required string[] Tokens { get; init; }
    public required long[] AttentionMask { get; init; }
    /// <summary>Segment ids: 0 for the first sequence (and its special tokens), 1 for the pair (BERT); all 0 for RoBERTa.</summary>
    public required long[] TypeIds { get; init; }
    /// <summary>1 where a special token was added by the template (not for special tokens typed in the text).</summary>
    public required long[] SpecialTokensMask { get; init; }
    /// <summary>UTF-16 spans in the original text (first or pair text per <see cref="TypeIds"/>/<see cref="SequenceIds"/>); (0, 0) for added special tokens and padding.</summary>
    public required (int Start, int End)[] Offsets { get; init; }
    /// <summary>0 = first text, 1 = pair text, -1 = template special token or padding.</summary>
    public required int[] SequenceIds { get; init; }
    public int Length => Ids.Length;
}

/// <summary>A padded batch ready for a model: int64 tensors of shape (B, T).</summary>
public sealed class BatchEncoding
{
    public required Encoding[] Encodings { get; init; }
    public required Tensor InputIds { get; init; }       // (B, T) int64
    public required Tensor AttentionMask { get; init; }  // (B, T) int64
    public required Tensor TokenTypeIds { get; init; }   // (B, T) int64
}

/// <summary>Shared tokenizer API (HF slow-tokenizer semantics).</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int PadId { get; }
    int UnkId { get; }
    int? MaskId { get; }
    int? ClsId { get; }
    int? SepId { get; }
    int? BosId { get; }
    int? EosId { get; }
    string? PadToken { get; }
    string? MaskToken { get; }

    /// <summary>HF <c>tokenize()</c>: token strings without special tokens.</summary>
    IReadOnlyList<string> Tokenize(string text);

    /// <summary>Tokens with ids and offsets, without template special tokens.</summary>
    IReadOnlyList<Token> TokenizeWithOffsets(string text);

    Encoding Encode(string text, string? pair = null, bool addSpecialTokens = true, int? maxLength = null,
        Truncation truncation = Truncation.None, Padding padding = Padding.None);

    BatchEncoding EncodeBatch(IReadOnlyList<string> texts, IReadOnlyList<string>? pairs = null, bool addSpecialTokens = true,
        int? maxLength = null, Truncation truncation = Truncation.None, Padding padding = Padding.Longest);

    string Decode(IEnumerable<long> ids, bool skipSpecialTokens = false, bool? cleanUpTokenizationSpaces = null);

    int? TokenToId(string token);
    string? IdToToken(int id);
}

/// <summary>A vocabulary / merges / config file that cannot be read; names the file and, where known, the line.</summary>
public sealed class TokenizerFileException : Exception
{
    public TokenizerFileException(string file, int? line, string message, Exception? inner = null)
        : base($"{file}{(line is int l ? $":{l}" : "")}: {message}", inner)
    {
        File = file;
        Line = line;
    }

    public string File { get; }
    public int? Line { get; }
}
